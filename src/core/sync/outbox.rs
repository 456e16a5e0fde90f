//! Everything a peer sends leaves through here: messages are put in our envelope, encoded,
//! sealed, counted and queued as [`Action`]s for the driver.

use super::peer_table::PeerTable;
use super::{Action, Stats};
use crate::proto::batch::EncodedBatch;
use crate::proto::seal::{DatagramSealError, Sealer};
use crate::proto::wire::{
    self, Body, EncodedEntries, Envelope, NodeId, RangesResponse, SyncResponse,
};
use ::core::net::SocketAddr;
use tracing::{debug, warn};

/// The actions waiting for the driver, and how datagrams are stamped and sealed.
pub(super) struct Outbox {
    actions: Vec<Action>,
    sealer: Sealer,
    /// Our group, node id and whisper port, stamped on every envelope.
    group: String,
    from: NodeId,
    whisper_port: u16,
}

impl Outbox {
    /// An empty outbox that sends as node `from` of `group`, answering on `whisper_port`,
    /// in the clear until [`Outbox::set_sealer`].
    pub(super) fn new(group: String, from: NodeId, whisper_port: u16) -> Outbox {
        Outbox {
            actions: Vec::new(),
            sealer: Sealer::clear(),
            group,
            from,
            whisper_port,
        }
    }

    /// Seals (and opens) with `sealer` from now on.
    pub(super) fn set_sealer(&mut self, sealer: Sealer) {
        self.sealer = sealer;
    }

    /// The sealer, which also opens what arrives.
    pub(super) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Bytes sealing adds to each datagram.
    pub(super) fn seal_overhead(&self) -> usize {
        self.sealer.overhead()
    }

    /// Takes the actions queued so far.
    pub(super) fn drain(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// `body` in our envelope.
    pub(super) fn envelope(&self, body: Body) -> Envelope {
        Envelope {
            group: self.group.clone(),
            from: self.from,
            whisper_port: self.whisper_port,
            body,
        }
    }

    /// Asks the driver to store entries learned from peers.
    pub(super) fn persist(&mut self, batch: EncodedBatch) {
        self.actions.push(Action::Persist(batch));
    }

    /// Encodes a message in our envelope; a failure is counted and logged, never sent.
    pub(super) fn encode_body(&mut self, stats: &mut Stats, body: Body) -> Option<Vec<u8>> {
        let kind = body.kind();
        Self::encoded(stats, kind, wire::encode(&self.envelope(body)))
    }

    /// Encodes a range answer in our envelope with `entries` (already encoded) spliced in
    /// as its entries; a failure is counted and logged, never sent.
    pub(super) fn encode_answer(
        &mut self,
        stats: &mut Stats,
        answer: RangesResponse,
        entries: &EncodedEntries,
    ) -> Option<Vec<u8>> {
        let envelope = self.envelope(Body::SyncResponse(SyncResponse::Ranges(answer)));
        let kind = envelope.body.kind();
        Self::encoded(stats, kind, wire::encode_with_entries(&envelope, entries))
    }

    fn encoded(
        stats: &mut Stats,
        kind: &str,
        encoded: Result<Vec<u8>, wire::WireError>,
    ) -> Option<Vec<u8>> {
        match encoded {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                stats.encode_failures += 1;
                warn!(target: "sync", "SYNC could not encode {kind}: {err}");
                None
            }
        }
    }

    /// Sends one message over whisper to `node` at `addr` (`peers` names it in the log);
    /// returns the bytes put on the wire (0 if none).
    pub(super) fn send_to(
        &mut self,
        stats: &mut Stats,
        peers: &PeerTable,
        node: NodeId,
        addr: SocketAddr,
        body: Body,
    ) -> usize {
        let kind = body.kind();
        let count = body.entry_count();
        match self.encode_body(stats, body) {
            Some(bytes) => self.send_encoded_to(stats, peers, node, addr, (kind, count), bytes),
            None => 0,
        }
    }

    /// Sends an encoded message of `kind` carrying `count` entries over whisper to `node`
    /// at `addr`; returns the bytes put on the wire.
    pub(super) fn send_encoded_to(
        &mut self,
        stats: &mut Stats,
        peers: &PeerTable,
        node: NodeId,
        addr: SocketAddr,
        (kind, count): (&str, usize),
        clear: Vec<u8>,
    ) -> usize {
        debug!(
            target: "sync",
            "SYNC send {kind} to {} ({addr}) entries={count}",
            peers.label(node)
        );
        self.send_to_addr(stats, addr, clear)
    }

    /// Seals an encoded message; a failure is counted and logged, never sent.
    pub(super) fn seal(&mut self, stats: &mut Stats, clear: Vec<u8>) -> Option<Vec<u8>> {
        match self.sealer.seal(clear) {
            Ok(sealed) => Some(sealed),
            Err(err) => {
                Self::seal_failed(stats, err);
                None
            }
        }
    }

    /// Queues a sealed datagram for the group.
    pub(super) fn queue_group(&mut self, stats: &mut Stats, sealed: Vec<u8>) {
        self.queue(stats, Action::SendGroup(sealed));
    }

    /// Queues a sealed datagram for `addr`.
    pub(super) fn queue_to(&mut self, stats: &mut Stats, addr: SocketAddr, sealed: Vec<u8>) {
        self.queue(stats, Action::SendTo(addr, sealed));
    }

    /// Seals and queues an encoded message for `addr`; returns the bytes that go on the
    /// wire.
    pub(super) fn send_to_addr(
        &mut self,
        stats: &mut Stats,
        addr: SocketAddr,
        clear: Vec<u8>,
    ) -> usize {
        match self.sealer.seal(clear) {
            Ok(sealed) => self.queue(stats, Action::SendTo(addr, sealed)),
            Err(err) => Self::seal_failed(stats, err),
        }
    }

    fn queue(&mut self, stats: &mut Stats, action: Action) -> usize {
        let mut len = 0;
        if let Action::SendGroup(bytes) | Action::SendTo(_, bytes) = &action {
            len = bytes.len();
            stats.datagrams_sent += 1;
            stats.bytes_sent += len as u64;
        }
        self.actions.push(action);
        len
    }

    fn seal_failed(stats: &mut Stats, err: DatagramSealError) -> usize {
        stats.encode_failures += 1;
        warn!(target: "sync", "SYNC could not seal a datagram: {err}");
        0
    }
}
