//! Where a group-bound message goes. Everything a peer sends "to the group" (HELLO, probe,
//! LOG_ENTRY: local adjusts, pushes and forwards) is multicast when the peer uses the group,
//! and also sent by unicast to every listed peer that answers and every learned peer (see
//! `unicast`). Each datagram is sealed once; the same bytes go to every destination, as a
//! multicast would carry them.
//!
//! # Forwarding: an always-on hub is just a peer
//! Entries new to us are forwarded, so peers that never hear each other (spokes behind NAT
//! listing only a hub; officers never online at the same time) converge through any peer
//! they both reach:
//! * learned from a unicast peer: to the group (if a peer hears it) and to every other
//!   unicast peer;
//! * learned from a peer heard on the group: to the unicast peers only (the group heard it).
//!
//! Only entries new to us are forwarded and never back to where they came from, so nothing
//! loops: in a triangle each entry crosses each link at most once more. Entries that arrive
//! in a reconciliation answer are not forwarded to peers that reported the same
//! fingerprint as the peer that answered (they hold everything it holds): a hub that
//! restarts empty and refills from one spoke does not send the whole log to every other
//! spoke. Forwarding only speeds things up: reconciliation alone converges.

use super::unicast::Target;
use super::{Now, Peer};
use crate::proto::entry::Entry;
use crate::proto::fingerprint::Fingerprint;
use crate::proto::wire::{self, Body, NodeId};
use ::core::net::SocketAddr;
use tracing::debug;

/// How entries reached us, for forwarding.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin {
    /// The peer that sent them.
    pub(super) node: NodeId,
    /// Where its datagram came from (the address we answer).
    pub(super) addr: SocketAddr,
    /// In a reconciliation answer (rather than a LOG_ENTRY sent in real time).
    pub(super) answer: bool,
}

/// Where one batch of entries goes besides the group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Spread {
    /// Multicast it (when the peer uses the group).
    pub(super) group: bool,
    /// Not to this node (it sent them to us).
    pub(super) except: Option<(NodeId, SocketAddr)>,
    /// Not to unicast peers that reported this fingerprint (they hold these entries).
    pub(super) held_by: Option<Fingerprint>,
    /// Also straight to this peer by whisper, even if our multicast should reach it (a
    /// session partner whose set stayed different: it may not hear us).
    pub(super) direct: Option<(NodeId, SocketAddr)>,
}

impl Peer {
    /// Sends a group-bound message (HELLO, probe): multicast, and a copy to every unicast
    /// target.
    pub(super) fn send_group_bound(&mut self, now: Now, body: Body) {
        let kind = body.kind();
        let Some(clear) = self.outbox.encode_body(&mut self.stats, body) else {
            return;
        };
        let targets = self.unicast_targets(now);
        debug!(
            target: "sync",
            "SYNC send {kind} to group{}",
            if targets.is_empty() { String::new() } else { format!(" and {} unicast peers", targets.len()) }
        );
        self.send_sealed(clear, self.cfg.multicast, &targets);
    }

    /// Sends one message by multicast only (no copy to the unicast peers).
    pub(super) fn send_to_group(&mut self, body: Body) {
        let kind = body.kind();
        if let Some(clear) = self.outbox.encode_body(&mut self.stats, body) {
            debug!(target: "sync", "SYNC send {kind} to group");
            self.send_sealed(clear, self.cfg.multicast, &[]);
        }
    }

    /// Sends one message to `targets` only (a retry to a silent listed peer, a greeting).
    pub(super) fn send_to_targets(&mut self, body: Body, targets: &[Target]) {
        if let Some(clear) = self.outbox.encode_body(&mut self.stats, body) {
            self.send_sealed(clear, false, targets);
        }
    }

    /// Sends `entries` as LOG_ENTRY datagrams as `spread` says, to the group and to the
    /// unicast targets at `now`.
    pub(super) fn spread_entries(&mut self, now: Now, entries: &[Entry], spread: Spread) {
        let mut targets: Vec<Target> = self
            .unicast_targets(now)
            .into_iter()
            .filter(|t| !self.excluded(t, &spread))
            .collect();
        if let Some((node, addr)) = spread.direct {
            if !targets.iter().any(|t| t.addr == addr) {
                targets.push(Target {
                    addr,
                    node: Some(node),
                    // A session partner: it sent us requests or answers from this address.
                    limited: false,
                });
            }
        }
        let group = spread.group && self.cfg.multicast;
        if !group && targets.is_empty() {
            return;
        }
        let datagrams = wire::pack_log_entries(
            &self.cfg.group,
            self.node_id,
            self.cfg.whisper_port,
            entries,
        );
        for (count, clear) in datagrams {
            debug!(
                target: "sync",
                "SYNC send LOG_ENTRY to {}{} unicast peers entries={count}",
                if group { "group and " } else { "" },
                targets.len()
            );
            self.send_sealed(clear, group, &targets);
        }
    }

    /// Whether `target` is left out of `spread`.
    fn excluded(&self, target: &Target, spread: &Spread) -> bool {
        if let Some((node, addr)) = spread.except {
            if target.addr == addr || target.node == Some(node) {
                return true;
            }
        }
        match (spread.held_by, target.node) {
            (Some(held), Some(node)) => self
                .peers
                .get(node)
                .is_some_and(|p| p.fingerprint == Some(held)),
            _ => false,
        }
    }

    /// Forwards entries new to us (see the module docs).
    pub(super) fn forward(&mut self, now: Now, fresh: &[Entry], origin: Origin) {
        if fresh.is_empty() || self.unicast.is_empty() {
            return;
        }
        let timeout = self.cfg.peer_timeout_ms;
        let targets = self.unicast_targets(now);
        // From a unicast peer (one our multicast does not reach: so it is not on the LAN),
        // rather than from a peer on the LAN (heard on the group, or only met in a session).
        let from_unicast = targets
            .iter()
            .any(|t| t.addr == origin.addr || t.node == Some(origin.node));
        if !from_unicast && targets.is_empty() {
            return;
        }
        let sender_fp = self.peers.get(origin.node).and_then(|p| p.fingerprint);
        let held_by = if origin.answer { sender_fp } else { None };
        // The group only when it did not hear them, and some live peer hears the group
        // (and, for an answer, may lack them).
        let group = self.cfg.multicast
            && from_unicast
            && self.peers.iter().any(|p| {
                p.node != origin.node
                    && p.heard_on_group(now, timeout)
                    && (held_by.is_none() || p.fingerprint != held_by)
            });
        let spread = Spread {
            group,
            except: Some((origin.node, origin.addr)),
            held_by,
            direct: None,
        };
        let before = self.stats.datagrams_sent;
        self.spread_entries(now, fresh, spread);
        if self.stats.datagrams_sent > before {
            self.stats.entries_forwarded += fresh.len() as u64;
            debug!(target: "sync", "SYNC forwarded {} new entries", fresh.len());
        }
    }

    /// Seals `clear` once and queues it for the group (if `group`) and each target; a
    /// limited target gets it only within its allowance.
    fn send_sealed(&mut self, clear: Vec<u8>, group: bool, targets: &[Target]) {
        if !group && targets.is_empty() {
            return;
        }
        let Some(sealed) = self.outbox.seal(&mut self.stats, clear) else {
            return;
        };
        if group {
            self.outbox.queue_group(&mut self.stats, sealed.clone());
        }
        for target in targets {
            if target.limited {
                if (sealed.len() as u64) > self.allowance(target.addr) {
                    self.stats.unicast_withheld += 1;
                    debug!(target: "sync", "SYNC datagram to unproven {} withheld: over the 3x limit", target.addr);
                    continue;
                }
                self.admission.charge(target.addr, sealed.len());
            }
            self.outbox
                .queue_to(&mut self.stats, target.addr, sealed.clone());
        }
    }
}
