//! The peers we hear: who they are, where they listen, what they hold, and which of them are
//! asking us for entries right now. Bounded, so a flood of made-up node ids cannot grow it.

use super::{Now, Peer};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::wire::NodeId;
use ::core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap};
use tracing::{debug, info};

/// What we know about another peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id.
    pub node: NodeId,
    /// Its name, once heard in a HELLO or summary.
    pub name: Option<String>,
    /// Its whisper address.
    pub whisper: SocketAddr,
    /// Its whole-set fingerprint, as last reported.
    pub fingerprint: Option<Fingerprint>,
    /// When we last heard anything from it (monotonic ms).
    pub last_heard_ms: u64,
    /// How it reaches us.
    pub reached: Reach,
}

/// How a peer reaches us (stub: replaced by lan-core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Heard on the multicast group channel.
    Multicast,
    /// Its address is a listed address.
    Listed,
    /// It contacted us over whisper.
    Learned,
}

/// A listed unicast address and what answered there (stub: replaced by lan-core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPeer {
    /// The listed address.
    pub address: SocketAddr,
    /// The node that answered from it, if any.
    pub node: Option<NodeId>,
    /// When it was last heard (monotonic ms).
    pub last_heard_ms: Option<u64>,
}

impl PeerInfo {
    /// "name" or the node id in hex, for logs.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{:016x}", self.node),
        }
    }
}

/// The peers heard recently, and when each last sent us a range request.
#[derive(Debug, Default)]
pub(super) struct PeerTable {
    /// Ordered by node id, so walking it (to pick a partner) is the same in every run.
    peers: BTreeMap<NodeId, PeerInfo>,
    /// When each peer last sent us a range request: it is reconciling with us, so it is not
    /// picked as our partner until [`super::Tuning::serving_holdoff_ms`] has passed.
    serving: HashMap<NodeId, u64>,
}

impl PeerTable {
    /// The known peers, in node id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.values()
    }

    /// The known peer `node`, to record what it told us.
    pub(super) fn get_mut(&mut self, node: NodeId) -> Option<&mut PeerInfo> {
        self.peers.get_mut(&node)
    }

    /// Forgets every peer (sync switched off: they are heard afresh when it is back on).
    pub(super) fn clear(&mut self) {
        self.peers.clear();
        self.serving.clear();
    }

    /// "name" or the node id in hex, for logs.
    pub(super) fn label(&self, node: NodeId) -> String {
        self.peers
            .get(&node)
            .map(PeerInfo::label)
            .unwrap_or_else(|| format!("{node:016x}"))
    }

    /// Whether `peer` was heard within `peer_timeout_ms` of `now`.
    pub(super) fn live(peer: &PeerInfo, now: Now, peer_timeout_ms: u64) -> bool {
        peer.last_heard_ms + peer_timeout_ms > now.mono_ms
    }

    /// Notes that `node` sent us a range request at `now`.
    pub(super) fn serving(&mut self, node: NodeId, now: Now) {
        self.serving.insert(node, now.mono_ms);
    }

    /// Whether `node` asked us for ranges less than `holdoff_ms` ago. Checks the age itself:
    /// expired hold-offs are only pruned when a timer runs.
    pub(super) fn held_off(&self, node: NodeId, now: Now, holdoff_ms: u64) -> bool {
        self.serving
            .get(&node)
            .is_some_and(|at| *at + holdoff_ms > now.mono_ms)
    }

    /// Drops the hold-offs that have run out.
    pub(super) fn prune_holdoffs(&mut self, now: Now, holdoff_ms: u64) {
        self.serving.retain(|_, at| *at + holdoff_ms > now.mono_ms);
    }

    /// When the first peer falls silent for `peer_timeout_ms` (monotonic ms).
    pub(super) fn next_expiry(&self, peer_timeout_ms: u64) -> Option<u64> {
        self.peers
            .values()
            .map(|peer| peer.last_heard_ms + peer_timeout_ms)
            .min()
    }

    fn len(&self) -> usize {
        self.peers.len()
    }

    fn add(&mut self, peer: PeerInfo) {
        self.peers.insert(peer.node, peer);
    }

    /// Drops `node` from the table; a hold-off it earned runs out on its own.
    fn remove(&mut self, node: NodeId) -> Option<PeerInfo> {
        self.peers.remove(&node)
    }

    /// Drops `node` and its hold-off.
    fn forget(&mut self, node: NodeId) {
        self.serving.remove(&node);
        self.peers.remove(&node);
    }
}

impl Peer {
    /// Records that `node` was heard from `whisper` at `now`; a peer heard for the first time
    /// replaces any earlier process at the same address.
    pub(super) fn touch_peer(&mut self, now: Now, node: NodeId, whisper: SocketAddr) {
        let timeout = self.cfg.peer_timeout_ms;
        let was_solo = !self.peers.iter().any(|p| PeerTable::live(p, now, timeout));
        let known = match self.peers.get_mut(node) {
            Some(peer) => {
                peer.last_heard_ms = now.mono_ms;
                peer.whisper = whisper;
                true
            }
            None => {
                // One process per whisper address: a new node id there is a restart. Forget
                // the old incarnation now, not after peer_timeout; else a session with it
                // drops every answer from the new one as stale, and the new one will not
                // start its own session with us while we keep asking it.
                let restarted: Vec<NodeId> = self
                    .peers
                    .iter()
                    .filter(|p| p.whisper == whisper)
                    .map(|p| p.node)
                    .collect();
                for old in restarted {
                    self.peers.forget(old);
                    if self.requester.partner() == Some(old) {
                        self.abort_session("partner restarted");
                    }
                }
                if self.peers.len() >= self.cfg.tuning.max_peers.max(1) {
                    self.evict_stalest_peer();
                }
                self.peers.add(PeerInfo {
                    node,
                    name: None,
                    whisper,
                    fingerprint: None,
                    last_heard_ms: now.mono_ms,
                    reached: Reach::Multicast,
                });
                false
            }
        };
        if !known {
            info!(target: "sync", "SYNC peer {node:016x} joined ({whisper})");
            if was_solo {
                // Solo -> grouped is the seed's "group join": ask who differs.
                self.send_probe(now);
            }
        }
    }

    /// Makes room in a full peer table (a flood of made-up node ids must not grow memory):
    /// forgets the peer heard from longest ago, never the current session partner.
    fn evict_stalest_peer(&mut self) {
        let partner = self.requester.partner();
        let stalest = self
            .peers
            .iter()
            .filter(|p| Some(p.node) != partner)
            .min_by_key(|p| (p.last_heard_ms, p.node))
            .map(|p| p.node);
        if let Some(node) = stalest {
            self.peers.forget(node);
            self.stats.peers_evicted += 1;
            debug!(target: "sync", "SYNC peer table full: forgot {node:016x}");
        }
    }

    /// Forgets the peers silent for `peer_timeout_ms`, and the session with one of them.
    pub(super) fn expire_peers(&mut self, now: Now) {
        let timeout = self.cfg.peer_timeout_ms;
        let gone: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|p| p.last_heard_ms + timeout <= now.mono_ms)
            .map(|p| p.node)
            .collect();
        for node in gone {
            if let Some(peer) = self.peers.remove(node) {
                info!(target: "sync", "SYNC peer {} left (silent for {timeout} ms)", peer.label());
            }
            if self.requester.partner() == Some(node) {
                self.abort_session("partner left");
            }
        }
    }
}
