//! The peers we hear: who they are, where they listen, how we reach them, what they hold,
//! and which of them are asking us for entries right now. Bounded, so a flood of made-up node
//! ids cannot grow it. A peer is its node id: heard on the group channel and over whisper it
//! is one peer, not two.

use super::{Channel, Now, Peer};
use crate::proto::digest::Key;
use crate::proto::fingerprint::Fingerprint;
use crate::proto::wire::NodeId;
use ::core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tracing::{debug, info, warn};

/// How a peer reaches us, for status output and for choosing where group-bound messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// Heard on the multicast group channel within the peer timeout: it gets our multicast,
    /// so it needs no unicast copies.
    Multicast,
    /// Not heard on the group lately; its address is one of our listed peer addresses.
    Listed,
    /// Neither: it reached us over whisper (a peer that lists us, or one answering us).
    Learned,
}

/// What we know about another peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id.
    pub node: NodeId,
    /// Its name, once heard in a HELLO or summary.
    pub name: Option<String>,
    /// The address we send to: for a peer heard over whisper, the actual source address of
    /// its datagrams (behind NAT the advertised whisper port is not the visible one); for a
    /// peer heard only on the group, its source IP with its advertised whisper port.
    pub whisper: SocketAddr,
    /// Its whole-set fingerprint, as last reported.
    pub fingerprint: Option<Fingerprint>,
    /// The newest key of its set, as its last HELLO reported it (`None`: empty, or only
    /// heard in a summary).
    pub newest: Option<Key>,
    /// When it last reported its fingerprint (monotonic ms).
    pub reported_ms: Option<u64>,
    /// When we last heard anything from it (monotonic ms).
    pub last_heard_ms: u64,
    /// How it reaches us (kept current as time passes and as the listed addresses change).
    pub reached: Reach,
    /// When we last heard it on the group channel (monotonic ms).
    pub last_group_ms: Option<u64>,
    /// When we last heard it over whisper (monotonic ms).
    pub last_whisper_ms: Option<u64>,
}

impl PeerInfo {
    /// "name" or the node id in hex, for logs.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{:016x}", self.node),
        }
    }

    /// Whether it was heard on the group channel within `peer_timeout_ms` of `now`.
    pub(super) fn heard_on_group(&self, now: Now, peer_timeout_ms: u64) -> bool {
        self.last_group_ms
            .is_some_and(|at| at + peer_timeout_ms > now.mono_ms)
    }

    /// Whether it was heard over whisper within `peer_timeout_ms` of `now`.
    fn heard_over_whisper(&self, now: Now, peer_timeout_ms: u64) -> bool {
        self.last_whisper_ms
            .is_some_and(|at| at + peer_timeout_ms > now.mono_ms)
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
    /// Peers already warned about for using our node name (kept when sync is switched off,
    /// so a switch does not repeat the warning; bounded like the table).
    name_clashes: BTreeSet<NodeId>,
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

    /// The known peer `node`.
    pub(super) fn get(&self, node: NodeId) -> Option<&PeerInfo> {
        self.peers.get(&node)
    }

    /// Whether `node` is live and heard on the group channel: it gets our multicast.
    pub(super) fn multicast_reached(&self, node: NodeId, now: Now, peer_timeout_ms: u64) -> bool {
        self.peers
            .get(&node)
            .is_some_and(|p| p.heard_on_group(now, peer_timeout_ms))
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
    /// How `peer` reaches us at `now`.
    fn reach_of(&self, peer: &PeerInfo, now: Now) -> Reach {
        if peer.heard_on_group(now, self.cfg.peer_timeout_ms) {
            Reach::Multicast
        } else if self.unicast.is_listed(peer.whisper) {
            Reach::Listed
        } else {
            Reach::Learned
        }
    }

    /// Brings every peer's [`PeerInfo::reached`] up to date (time passed, or the listed
    /// addresses changed).
    pub(super) fn refresh_reach(&mut self, now: Now) {
        let reaches: Vec<(NodeId, Reach)> = self
            .peers
            .iter()
            .map(|p| (p.node, self.reach_of(p, now)))
            .collect();
        for (node, reach) in reaches {
            if let Some(peer) = self.peers.get_mut(node) {
                peer.reached = reach;
            }
        }
    }

    /// Records the name `node` gave itself, and warns (once per peer) when it is our own
    /// node name: two daemons left on the default name (the hostname) otherwise look like
    /// one in every log line, and nothing but the CLI's `peers` would say so.
    pub(super) fn learn_name(&mut self, node: NodeId, name: String) {
        let Some(peer) = self.peers.get_mut(node) else {
            return;
        };
        let clash = name == self.cfg.node_name && node != self.node_id;
        peer.name = Some(name);
        let whisper = peer.whisper;
        if !clash || self.peers.name_clashes.contains(&node) {
            return;
        }
        if self.peers.name_clashes.len() >= self.cfg.tuning.max_peers {
            // Made-up node ids must not grow it without bound: warning again is the lesser harm.
            self.peers.name_clashes.clear();
        }
        self.peers.name_clashes.insert(node);
        self.stats.name_clashes += 1;
        warn!(
            target: "sync",
            "SYNC peer {node:016x} at {whisper} uses our node name {:?}: give every daemon its own `node` in its config",
            self.cfg.node_name
        );
    }

    /// Records that `node` was heard at `now` on `channel`, answerable at `reply`; a peer
    /// heard for the first time replaces any earlier process at the same address.
    pub(super) fn touch_peer(
        &mut self,
        now: Now,
        node: NodeId,
        reply: SocketAddr,
        channel: Channel,
    ) {
        let timeout = self.cfg.peer_timeout_ms;
        let was_solo = !self.peers.iter().any(|p| PeerTable::live(p, now, timeout));
        let whisper = reply;
        let known = match self.peers.get_mut(node) {
            Some(peer) => {
                peer.last_heard_ms = now.mono_ms;
                match channel {
                    Channel::Whisper => {
                        peer.whisper = reply;
                        peer.last_whisper_ms = Some(now.mono_ms);
                    }
                    Channel::Group => {
                        // The address its whisper datagrams come from is the one that works
                        // through NAT: a group datagram does not replace it while it is
                        // fresh (on one LAN the two are the same address anyway).
                        if !peer.heard_over_whisper(now, timeout) {
                            peer.whisper = reply;
                        }
                        peer.last_group_ms = Some(now.mono_ms);
                    }
                }
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
                    self.stalemates.forget(old);
                    if self.requester.partner() == Some(old) {
                        self.abort_session("partner restarted");
                    }
                }
                if self.peers.len() >= self.cfg.tuning.max_peers.max(1) {
                    self.evict_stalest_peer();
                }
                let on_group = channel == Channel::Group;
                self.peers.add(PeerInfo {
                    node,
                    name: None,
                    whisper,
                    fingerprint: None,
                    newest: None,
                    reported_ms: None,
                    last_heard_ms: now.mono_ms,
                    reached: Reach::Learned,
                    last_group_ms: on_group.then_some(now.mono_ms),
                    last_whisper_ms: (!on_group).then_some(now.mono_ms),
                });
                false
            }
        };
        if let Some(peer) = self.peers.get(node) {
            let reach = self.reach_of(peer, now);
            if let Some(peer) = self.peers.get_mut(node) {
                peer.reached = reach;
            }
        }
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
            self.stalemates.forget(node);
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
            self.stalemates.forget(node);
        }
    }
}
