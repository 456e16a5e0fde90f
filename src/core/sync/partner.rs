//! Who reconciles with whom. A peer that hears fingerprints different from its own starts a
//! session with one peer holding the most widely held other set, unless its own set is the
//! majority view (then the minority comes to it): so 40 raiders never all stream at one
//! joiner; the joiner pulls from one of them.

use super::peer_table::PeerTable;
use super::{Now, Peer};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::wire::NodeId;
use ::core::net::SocketAddr;
use std::collections::HashMap;
use tracing::info;

impl Peer {
    /// Starts a session if we should pull from someone and a partner is free.
    pub(super) fn maybe_start_session(&mut self, now: Now) {
        if !self.sync_enabled || self.requester.in_session() {
            return;
        }
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
            return;
        };
        if my_holders > target_holders {
            // We hold the majority view: the minority will come to us.
            return;
        }
        if my_holders == target_holders && (mine.count, mine.sum) > (target_fp.count, target_fp.sum)
        {
            // No majority either way (two peers, say): the smaller set pulls, so a late
            // joiner fetches the log over whisper, paced by its own requests, instead of us
            // multicasting all of it. Both sides compare the same two fingerprints, so
            // exactly one of them starts.
            return;
        }
        let holdoff = self.cfg.tuning.serving_holdoff_ms;
        let candidates: Vec<(NodeId, SocketAddr, String)> = self
            .peers
            .iter()
            .filter(|p| PeerTable::live(p, now, timeout) && p.fingerprint == Some(target_fp))
            .filter(|p| !self.peers.held_off(p.node, now, holdoff))
            .map(|p| (p.node, p.whisper, p.label()))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let pick = self.rng.below(candidates.len() as u64) as usize;
        let (partner, addr, label) = candidates[pick].clone();
        info!(
            target: "sync",
            "SYNC reconciling with {label} (theirs {}, ours {})",
            target_fp.short(),
            mine.short()
        );
        self.start_session(now, partner, addr, label, mine);
    }
}
