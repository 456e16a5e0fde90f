//! How a [`World`](super::World)'s simulated network treats datagrams, and what it counted.

/// A receive socket with finite room, read at a finite rate.
#[derive(Clone, Debug)]
pub struct ReceiveLimit {
    /// Room in the socket buffer (Linux's `rmem_default` is 212,992 bytes).
    pub buffer_bytes: usize,
    /// What each queued datagram costs beyond its length (the kernel's bookkeeping).
    pub overhead_bytes: usize,
    /// Datagrams a node handles per virtual millisecond.
    pub per_ms: usize,
}

/// How the simulated network treats datagrams. Links are indexed `[from][to]`.
#[derive(Clone, Debug)]
pub struct Network {
    /// Probability that a datagram on the link is lost.
    pub loss: Vec<Vec<f64>>,
    /// Links that deliver nothing (a partition; one-way when only one direction is set).
    pub blocked: Vec<Vec<bool>>,
    /// Probability that a datagram arrives twice.
    pub duplication: f64,
    /// Shortest one-way delay.
    pub min_delay_ms: u64,
    /// Longest one-way delay; each copy's delay is drawn between the two.
    pub max_delay_ms: u64,
    /// The receive socket model; `None`: every datagram is handled the moment it arrives.
    pub receive_limit: Option<ReceiveLimit>,
}

impl Network {
    /// No loss, no duplication, no partitions, 1 ms one way, unlimited receive sockets: a
    /// quiet LAN.
    pub fn lan() -> Network {
        Network {
            loss: Vec::new(),
            blocked: Vec::new(),
            duplication: 0.0,
            min_delay_ms: 1,
            max_delay_ms: 1,
            receive_limit: None,
        }
    }

    /// Every link loses `probability` of its datagrams.
    pub fn set_loss_everywhere(&mut self, probability: f64) {
        for row in &mut self.loss {
            row.fill(probability);
        }
    }

    /// Unblocks every link.
    pub fn heal(&mut self) {
        for row in &mut self.blocked {
            row.fill(false);
        }
    }

    /// Makes room for one more node, its links lossless and open.
    pub(super) fn add_node(&mut self) {
        for row in &mut self.loss {
            row.push(0.0);
        }
        for row in &mut self.blocked {
            row.push(false);
        }
        let n = self.loss.len() + 1;
        self.loss.push(vec![0.0; n]);
        self.blocked.push(vec![false; n]);
    }
}

/// What happened on the network so far.
#[derive(Clone, Debug, Default)]
pub struct NetCounters {
    /// Datagrams the peers handed over to send (a multicast counts once).
    pub sent: u64,
    /// Of those, multicasts.
    pub sent_group: u64,
    /// Of those, whisper datagrams.
    pub sent_to: u64,
    /// Whisper datagrams addressed to each node.
    pub sent_to_node: Vec<u64>,
    /// Datagrams handed to a peer.
    pub delivered: u64,
    /// Bytes in those datagrams.
    pub bytes_delivered: u64,
    /// When the last datagram was handed to a peer (virtual ms).
    pub last_delivery_ms: u64,
    /// Datagrams lost on a lossy link.
    pub lost: u64,
    /// Datagrams on a blocked link.
    pub blocked: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Datagrams dropped at a full receive buffer.
    pub overflow: u64,
    /// Datagrams that reached a node whose peer was down.
    pub to_down: u64,
    /// Whisper datagrams to an address no node has.
    pub unknown_dest: u64,
    /// Times `poll_timeout` was still due right after `handle_timeout` ran (a daemon would
    /// spin).
    pub timer_spins: u64,
    /// Entries the peers asked to persist.
    pub persisted: u64,
}
