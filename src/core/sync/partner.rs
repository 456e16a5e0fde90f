//! Who reconciles with whom. A peer that hears fingerprints different from its own starts a
//! session with one peer holding the most widely held other set, unless its own set is the
//! majority view (then the minority comes to it): so 40 raiders never all stream at one
//! joiner; the joiner pulls from one of them.
//!
//! # Some side always starts: the stalemate rule
//! The majority rule needs both sides to see the same peers, which stops being true beyond
//! one LAN: a spoke that hears only its hub sees a tie, and as the bigger set waits for the
//! hub to pull, while the hub, agreeing with its other spokes, is the majority and waits for
//! the spoke. One-way multicast is the same deadlock: the peer that is not heard waits for a
//! pull that never comes, or pushes what it holds to a group that does not hear it.
//!
//! So a difference that persists is reconciled anyway: when the *difference* between a
//! peer's reported fingerprint and ours (count and digest sum, which subtract) stays the
//! same for [`STALEMATE_HEARTBEATS`] heartbeats while nobody reconciles it, we pull from
//! that peer, and what it lacks goes to it straight by whisper as well as to the group. The
//! difference (not the fingerprints) is what must stay put, so entries both sides keep
//! receiving from elsewhere do not hide a stalemate; a peer catching up from someone else
//! changes the difference every heartbeat, so it is left alone, and so is a peer that
//! stopped reporting (it may have crashed). The side holding the smaller set acts first and
//! the bigger side waits twice as long, so usually one side moves; a peer reconciling with
//! us (it sent us a range request) resets the wait.
//!
//! # Entries in flight are no difference: the settling rule
//! While an officer adjusts, entries are on their way to every peer when HELLOs are heard,
//! so fingerprints differ for a moment all over the group; a session for each such moment
//! would cost far more than the entries themselves. So when either side's newest entry is
//! younger than [`settle_ms`] by the wall clock (entries may still be in flight), the
//! majority rule only picks a partner whose difference from us has stayed the same over
//! two of its reports at least [`settle_ms`] apart: a lost entry keeps the difference put,
//! entries in flight change it at every report. So does a partner whose last report is
//! older than our set's last change: it may lack only what we just received, which it has
//! probably received too (its next HELLO will say). Otherwise (both newest entries older,
//! a report newer than our change) a difference is acted on at once, as before: a late
//! joiner does not wait.

use super::peer_table::{PeerInfo, PeerTable};
use super::{Now, Peer};
use crate::proto::digest::Key;
use crate::proto::fingerprint::Fingerprint;
use crate::proto::wire::NodeId;
use ::core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap};
use tracing::info;

/// Heartbeats a difference must stay unchanged, with nobody reconciling it, before the side
/// holding the smaller set pulls regardless of the majority rule (the bigger side: twice
/// this).
pub(super) const STALEMATE_HEARTBEATS: u64 = 3;

/// The differences we are watching, by peer.
#[derive(Debug, Default)]
pub(super) struct Stalemates {
    by_peer: BTreeMap<NodeId, Stalemate>,
}

/// One peer's difference from us and since when it has not changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stalemate {
    /// Their fingerprint minus ours: count and digest sum, both wrapping.
    delta: (u64, u128),
    since_ms: u64,
    /// When the peer last reported it: a peer that went quiet (crashed, say) is not pulled
    /// from on an old report.
    seen_ms: u64,
}

/// How long a difference must hold before it counts while entries may be in flight, and
/// how young a newest entry must be to make that so: half a heartbeat (two reports of one
/// peer are a heartbeat apart, so a lost entry is still pulled at its second report).
pub(super) fn settle_ms(heartbeat_ms: u64) -> u64 {
    heartbeat_ms / 2
}

impl Stalemates {
    /// Stops watching `node` (it left, or a session with it started).
    pub(super) fn forget(&mut self, node: NodeId) {
        self.by_peer.remove(&node);
    }

    /// Stops watching everyone (sync switched off).
    pub(super) fn clear(&mut self) {
        self.by_peer.clear();
    }
}

impl Peer {
    /// Notes the fingerprint `node` just reported against ours.
    pub(super) fn observe_difference(&mut self, now: Now, node: NodeId) {
        let mine = self.ledger.fingerprint();
        let Some(theirs) = self.peers.get(node).and_then(|p| p.fingerprint) else {
            return;
        };
        if theirs == mine {
            self.stalemates.forget(node);
            return;
        }
        let delta = (
            theirs.count.wrapping_sub(mine.count),
            theirs.sum.wrapping_sub(mine.sum),
        );
        match self.stalemates.by_peer.get_mut(&node) {
            Some(watched) if watched.delta == delta => watched.seen_ms = now.mono_ms,
            _ => {
                self.stalemates.by_peer.insert(
                    node,
                    Stalemate {
                        delta,
                        since_ms: now.mono_ms,
                        seen_ms: now.mono_ms,
                    },
                );
            }
        }
    }

    /// Starts a session if we should pull from someone and a partner is free.
    pub(super) fn maybe_start_session(&mut self, now: Now) {
        if !self.sync_enabled || self.requester.in_session() {
            return;
        }
        if !self.maybe_pull_from_majority(now) {
            self.maybe_break_stalemate(now);
        }
    }

    /// The majority rule; true when it started a session.
    fn maybe_pull_from_majority(&mut self, now: Now) -> bool {
        let timeout = self.cfg.peer_timeout_ms;
        let mine = self.ledger.fingerprint();
        let mut holders: HashMap<Fingerprint, usize> = HashMap::new();
        for peer in self
            .peers
            .iter()
            .filter(|p| PeerTable::live(p, now, timeout))
        {
            if let Some(fp) = peer.fingerprint {
                *holders.entry(fp).or_insert(0) += 1;
            }
        }
        let my_holders = 1 + holders.get(&mine).copied().unwrap_or(0);
        // The most widely held other fingerprint; ties prefer the bigger set.
        let Some((target_fp, target_holders)) = holders
            .iter()
            .filter(|(fp, _)| **fp != mine)
            .max_by_key(|(fp, n)| (**n, fp.count, fp.sum))
            .map(|(fp, n)| (*fp, *n))
        else {
            return false;
        };
        if my_holders > target_holders {
            // We hold the majority view: the minority will come to us.
            return false;
        }
        if my_holders == target_holders && (mine.count, mine.sum) > (target_fp.count, target_fp.sum)
        {
            // No majority either way (two peers, say): the smaller set pulls, so a late
            // joiner fetches the log over whisper, paced by its own requests, instead of us
            // multicasting all of it. Both sides compare the same two fingerprints, so
            // exactly one of them starts.
            return false;
        }
        let holdoff = self.cfg.tuning.serving_holdoff_ms;
        let candidates: Vec<(NodeId, SocketAddr, String)> = self
            .peers
            .iter()
            .filter(|p| PeerTable::live(p, now, timeout) && p.fingerprint == Some(target_fp))
            .filter(|p| !self.peers.held_off(p.node, now, holdoff))
            .filter(|p| self.settled(now, p))
            .map(|p| (p.node, p.whisper, p.label()))
            .collect();
        // Prefer a partner whose address we may send to freely (heard on the group, listed
        // or proven): a session with one we merely got a summary from over whisper would be
        // given up at its first request (see `request_allowance`), and a joiner hears the
        // summary and the HELLO of each member that answers its probe.
        let trusted: Vec<_> = candidates
            .iter()
            .filter(|(node, addr, _)| self.request_allowance(now, *node, *addr).is_none())
            .cloned()
            .collect();
        let candidates = if trusted.is_empty() {
            candidates
        } else {
            trusted
        };
        if candidates.is_empty() {
            return false;
        }
        let pick = self.rng.below(candidates.len() as u64) as usize;
        let (partner, addr, label) = candidates[pick].clone();
        info!(
            target: "sync",
            "SYNC reconciling with {label} (theirs {}, ours {})",
            target_fp.short(),
            mine.short()
        );
        // What the partner lacks goes to the group, which includes the unicast peers: a
        // partner beyond the LAN is one of them.
        self.start_session(now, partner, addr, label, mine, false);
        true
    }

    /// Whether our difference from `peer` is not just entries in flight (the settling
    /// rule, see the module docs).
    fn settled(&self, now: Now, peer: &PeerInfo) -> bool {
        let settle = settle_ms(self.cfg.heartbeat_ms);
        let fresh = |key: Option<Key>| {
            key.is_some_and(|k| k.at.unix_ms().saturating_add(settle) > now.unix_ms)
        };
        // A report from before our set last changed may differ only by what we just
        // received (and so, probably, did they).
        let current = peer.reported_ms.is_some_and(|at| at >= self.changed_ms);
        if current && !fresh(self.ledger.newest()) && !fresh(peer.newest) {
            return true;
        }
        self.stalemates
            .by_peer
            .get(&peer.node)
            .is_some_and(|watched| watched.seen_ms >= watched.since_ms + settle)
    }

    /// The stalemate rule (see the module docs): pulls from the peer whose difference has
    /// stood longest, once it has stood long enough.
    fn maybe_break_stalemate(&mut self, now: Now) {
        let timeout = self.cfg.peer_timeout_ms;
        let holdoff = self.cfg.tuning.serving_holdoff_ms;
        let heartbeat = self.cfg.heartbeat_ms.max(1);
        let mine = self.ledger.fingerprint();
        let due = self
            .stalemates
            .by_peer
            .iter()
            .filter_map(|(node, stalemate)| {
                let peer = self.peers.get(*node)?;
                let theirs = peer.fingerprint?;
                if theirs == mine
                    || !PeerTable::live(peer, now, timeout)
                    || self.peers.held_off(*node, now, holdoff)
                {
                    return None;
                }
                let smaller = (mine.count, mine.sum) < (theirs.count, theirs.sum);
                let wait = STALEMATE_HEARTBEATS * heartbeat * if smaller { 1 } else { 2 };
                // Still reported after the wait, and lately.
                let stood = stalemate.since_ms + wait <= stalemate.seen_ms
                    && stalemate.seen_ms + 2 * heartbeat > now.mono_ms;
                stood.then_some((stalemate.since_ms, *node))
            })
            .min();
        let Some((_, partner)) = due else {
            return;
        };
        let Some(peer) = self.peers.get(partner) else {
            return;
        };
        let (addr, label) = (peer.whisper, peer.label());
        let theirs = peer.fingerprint.unwrap_or_default();
        self.stats.stalemates_broken += 1;
        info!(
            target: "sync",
            "SYNC reconciling with {label}: our sets have differed the same way for {} heartbeats \
             (theirs {}, ours {})",
            STALEMATE_HEARTBEATS,
            theirs.short(),
            mine.short()
        );
        self.start_session(now, partner, addr, label, mine, true);
    }
}
