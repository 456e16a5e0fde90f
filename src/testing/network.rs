//! How a [`World`](super::World)'s simulated network treats datagrams, and what it counted.
//!
//! Besides loss, duplication, delay and blocked links, the network models who can reach
//! whom beyond one LAN:
//! * multicast domains: a group datagram reaches only the nodes on the sender's LAN
//!   ([`Network::lan`]); a node on no LAN sends and hears no multicast;
//! * NAT ([`Nat`]): a node behind one reaches the outside from the NAT's public IP and a port
//!   the NAT picks (not its whisper port), and hears from outside only the addresses it has
//!   sent to within the NAT's timeout (unsolicited inbound is dropped, as a home router
//!   does). Its own address is private: only nodes behind the same NAT reach it there.

use ::core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, HashMap};

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

/// A NAT box: the nodes behind it share its public IP, each on a port it picks.
#[derive(Clone, Debug)]
pub struct Nat {
    /// The address the nodes behind it appear from.
    pub public_ip: IpAddr,
    /// How long a mapping, and the permission for answers through it, lasts without
    /// outbound traffic (UDP NAT timeouts are often 30 s). A node that sends again after it
    /// ran out gets a new public port.
    pub timeout_ms: u64,
    /// Each inside node's current mapping.
    mappings: BTreeMap<usize, Mapping>,
}

/// One inside node's public port and whom it has sent to.
#[derive(Clone, Debug)]
struct Mapping {
    port: u16,
    last_out_ms: u64,
    /// Outside addresses it sent to, and when: answers from them get in.
    sent_to: HashMap<SocketAddr, u64>,
}

/// What happens to one unicast datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Delivered to node `to`, which sees it come from `seen_from`.
    Deliver {
        /// The receiving node.
        to: usize,
        /// The source address the receiver sees (the sender's NAT mapping, if it crossed one).
        seen_from: SocketAddr,
    },
    /// To a private address behind another NAT, or a NAT's own mapping from inside it.
    Unreachable,
    /// To a NAT mapping that does not let this source in (never sent to, or timed out).
    NatDropped,
    /// To an address nobody has.
    Unknown,
}

/// How the simulated network treats datagrams. Links are indexed `[from][to]`.
#[derive(Clone, Debug)]
pub struct Network {
    /// Probability that a datagram on the link is lost.
    pub loss: Vec<Vec<f64>>,
    /// Links that deliver nothing (a partition; one-way when only one direction is set).
    pub blocked: Vec<Vec<bool>>,
    /// Links that lose every multicast datagram but carry whisper ones (one-way multicast:
    /// a switch that does not forward the group in one direction).
    pub group_blocked: Vec<Vec<bool>>,
    /// Probability that a datagram arrives twice.
    pub duplication: f64,
    /// Shortest one-way delay.
    pub min_delay_ms: u64,
    /// Longest one-way delay; each copy's delay is drawn between the two.
    pub max_delay_ms: u64,
    /// The receive socket model; `None`: every datagram is handled the moment it arrives.
    pub receive_limit: Option<ReceiveLimit>,
    /// Each node's multicast domain: a group datagram reaches the other nodes of the
    /// sender's domain. `None`: no multicast reaches or leaves the node. Nodes start on LAN
    /// 0 (one LAN for all).
    pub lan: Vec<Option<usize>>,
    /// The NAT each node sits behind (an index into [`Network::nats`]), if any.
    pub behind: Vec<Option<usize>>,
    /// The NAT boxes.
    pub nats: Vec<Nat>,
    /// The next public port a NAT hands out (unique across NATs, so a port names a mapping).
    next_public_port: u16,
    /// Each live public mapping's NAT and inside node.
    by_public: HashMap<SocketAddr, (usize, usize)>,
}

impl Network {
    /// No loss, no duplication, no partitions, 1 ms one way, unlimited receive sockets, one
    /// LAN and no NAT: a quiet LAN.
    pub fn lan() -> Network {
        Network {
            loss: Vec::new(),
            blocked: Vec::new(),
            group_blocked: Vec::new(),
            duplication: 0.0,
            min_delay_ms: 1,
            max_delay_ms: 1,
            receive_limit: None,
            lan: Vec::new(),
            behind: Vec::new(),
            nats: Vec::new(),
            next_public_port: 40_000,
            by_public: HashMap::new(),
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
        for row in self.blocked.iter_mut().chain(self.group_blocked.iter_mut()) {
            row.fill(false);
        }
    }

    /// Adds a NAT box appearing from `public_ip` whose mappings last `timeout_ms` without
    /// outbound traffic; returns its index (for [`Network::behind`]).
    pub fn add_nat(&mut self, public_ip: IpAddr, timeout_ms: u64) -> usize {
        self.nats.push(Nat {
            public_ip,
            timeout_ms,
            mappings: BTreeMap::new(),
        });
        self.nats.len() - 1
    }

    /// Puts `node` behind NAT `nat` and off every LAN but its own home's (`lan`).
    pub fn put_behind_nat(&mut self, node: usize, nat: usize, lan: Option<usize>) {
        self.behind[node] = Some(nat);
        self.lan[node] = lan;
    }

    /// The address `node` appears from outside its NAT right now (`None`: not behind a NAT,
    /// or no live mapping).
    pub fn public_addr(&self, node: usize, now_ms: u64) -> Option<SocketAddr> {
        let nat = &self.nats[self.behind[node]?];
        let mapping = nat.mappings.get(&node)?;
        (mapping.last_out_ms + nat.timeout_ms > now_ms)
            .then(|| SocketAddr::new(nat.public_ip, mapping.port))
    }

    /// Whether a group datagram from `from` reaches `to` (loss and blocked links aside).
    pub(super) fn multicast_reaches(&self, from: usize, to: usize) -> bool {
        from != to && self.lan[from].is_some() && self.lan[from] == self.lan[to]
    }

    /// Makes room for one more node: its links lossless and open, on LAN 0, no NAT.
    pub(super) fn add_node(&mut self) {
        for row in &mut self.loss {
            row.push(0.0);
        }
        for row in &mut self.blocked {
            row.push(false);
        }
        for row in &mut self.group_blocked {
            row.push(false);
        }
        let n = self.loss.len() + 1;
        self.loss.push(vec![0.0; n]);
        self.blocked.push(vec![false; n]);
        self.group_blocked.push(vec![false; n]);
        self.lan.push(Some(0));
        self.behind.push(None);
    }

    /// Where a whisper datagram from node `from` (its own address `from_addr`) to `dest`
    /// goes at `now_ms`; `nodes` finds a node by its own address. Crossing the sender's NAT
    /// opens (or refreshes) its mapping, even when the datagram is then dropped.
    pub(super) fn route(
        &mut self,
        now_ms: u64,
        from: usize,
        from_addr: SocketAddr,
        dest: SocketAddr,
        nodes: &HashMap<SocketAddr, usize>,
    ) -> Route {
        if let Some(&to) = nodes.get(&dest) {
            if self.behind[to] == self.behind[from] {
                // Same home (or both on the public side): no NAT in between.
                return Route::Deliver {
                    to,
                    seen_from: from_addr,
                };
            }
            if self.behind[to].is_some() {
                // A private address behind another NAT.
                return Route::Unreachable;
            }
            let seen_from = self.outbound(now_ms, from, from_addr, dest);
            return Route::Deliver { to, seen_from };
        }
        let Some((nat, to)) = self.mapping_owner(dest) else {
            return Route::Unknown;
        };
        if self.behind[from] == Some(nat) {
            // Hairpinning through one's own NAT is not modelled.
            return Route::Unreachable;
        }
        let seen_from = self.outbound(now_ms, from, from_addr, dest);
        let box_ = &self.nats[nat];
        let let_in = box_.mappings.get(&to).is_some_and(|m| {
            m.last_out_ms + box_.timeout_ms > now_ms
                && m.sent_to
                    .get(&seen_from)
                    .is_some_and(|at| at + box_.timeout_ms > now_ms)
        });
        if let_in {
            Route::Deliver { to, seen_from }
        } else {
            Route::NatDropped
        }
    }

    /// The NAT and inside node whose public mapping is `addr`.
    fn mapping_owner(&self, addr: SocketAddr) -> Option<(usize, usize)> {
        self.by_public.get(&addr).copied()
    }

    /// The address a datagram from `from` to outside address `dest` is seen from: its own,
    /// or its NAT mapping (made, refreshed, or made anew after a timeout).
    fn outbound(
        &mut self,
        now_ms: u64,
        from: usize,
        from_addr: SocketAddr,
        dest: SocketAddr,
    ) -> SocketAddr {
        let Some(nat) = self.behind[from] else {
            return from_addr;
        };
        let next_port = &mut self.next_public_port;
        let box_ = &mut self.nats[nat];
        let timeout = box_.timeout_ms;
        let fresh = box_
            .mappings
            .get(&from)
            .is_some_and(|m| m.last_out_ms + timeout > now_ms);
        if !fresh {
            let port = *next_port;
            *next_port = if *next_port >= 60_000 {
                40_000
            } else {
                *next_port + 1
            };
            let old = box_.mappings.insert(
                from,
                Mapping {
                    port,
                    last_out_ms: now_ms,
                    sent_to: HashMap::new(),
                },
            );
            if let Some(old) = old {
                self.by_public
                    .remove(&SocketAddr::new(box_.public_ip, old.port));
            }
            self.by_public
                .insert(SocketAddr::new(box_.public_ip, port), (nat, from));
        }
        let mapping = box_.mappings.get_mut(&from).expect("made above");
        mapping.last_out_ms = now_ms;
        mapping.sent_to.insert(dest, now_ms);
        SocketAddr::new(box_.public_ip, mapping.port)
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
    /// Whisper datagrams to an address the sender cannot reach (private, behind another
    /// NAT).
    pub unreachable: u64,
    /// Whisper datagrams a NAT dropped (unsolicited, or its mapping timed out).
    pub nat_dropped: u64,
    /// Times `poll_timeout` was still due right after `handle_timeout` ran (a daemon would
    /// spin).
    pub timer_spins: u64,
    /// Entries the peers asked to persist.
    pub persisted: u64,
}
