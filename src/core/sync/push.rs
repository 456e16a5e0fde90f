//! Entries a reconciliation found the other side lacking are sent to the whole group as
//! LOG_ENTRY (the rest of the group probably lacks them too), a burst per push tick so a
//! large push does not flood the receivers' socket buffers. "The group" is the multicast
//! group and the unicast peers (see `fanout`); a unicast peer that reported the set we held
//! when the session started is skipped (it holds these entries), and the session partner
//! gets them straight by whisper when our multicast may not reach it.

use super::fanout::Spread;
use super::{Now, Peer};
use crate::proto::digest::{Digest, Key};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::limits::MAX_MESSAGE;
use crate::proto::wire::{self, NodeId};
use ::core::net::SocketAddr;
use std::collections::{HashSet, VecDeque};
use tracing::debug;

/// Where a queued entry goes besides the group, as its session decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PushVia {
    /// The session partner, when it gets the entries straight by whisper.
    pub(super) direct: Option<(NodeId, SocketAddr)>,
    /// Our fingerprint when the session started: unicast peers reporting it hold the entry.
    pub(super) held_by: Option<Fingerprint>,
}

/// Digests waiting to be sent, in the order they were found lacking.
#[derive(Debug)]
pub(super) struct PushQueue {
    queue: VecDeque<(Digest, PushVia)>,
    queued: HashSet<Digest>,
    next_push_ms: u64,
}

impl PushQueue {
    /// An empty queue whose first tick may run at once.
    pub(super) fn new(now: Now) -> PushQueue {
        PushQueue {
            queue: VecDeque::new(),
            queued: HashSet::new(),
            next_push_ms: now.mono_ms,
        }
    }

    /// Whether nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Forgets what was queued (sync switched off).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.queued.clear();
    }

    /// When the next push tick is due, if anything waits (monotonic ms).
    pub(super) fn next_due(&self) -> Option<u64> {
        (!self.queue.is_empty()).then_some(self.next_push_ms)
    }

    /// Whether something waits and its tick is due at `now`.
    pub(super) fn due(&self, now: Now) -> bool {
        !self.queue.is_empty() && now.mono_ms >= self.next_push_ms
    }
}

impl Peer {
    /// Queues one entry to be sent (once, however often it is found lacking).
    pub(super) fn queue_push(&mut self, id: Digest) {
        if self.push.queued.insert(id) {
            let via = self.requester.push_via();
            self.push.queue.push_back((id, via));
            self.requester.pushed_one();
        }
    }

    /// Queues our entries in `[lo, hi)` whose digests are not in `theirs`.
    pub(super) fn queue_range_push(&mut self, lo: Key, hi: Key, theirs: &HashSet<Digest>) {
        let ids: Vec<Digest> = self
            .ledger
            .range_keys(lo, hi)
            .map(|key| key.digest)
            .filter(|digest| !theirs.contains(digest))
            .collect();
        for id in ids {
            self.queue_push(id);
        }
    }

    /// One push tick: sends up to a burst of queued entries. A batch holds entries bound for
    /// the same session partner (the fingerprint that skips unicast peers is the first
    /// entry's: it only saves datagrams).
    pub(super) fn push_some(&mut self, now: Now) {
        let budget = self.cfg.tuning.push_burst.max(1) * (MAX_MESSAGE - 100);
        let mut used = 0;
        let mut batch = Vec::new();
        let mut via: Option<PushVia> = None;
        while let Some((id, item_via)) = self.push.queue.front().copied() {
            let Some(entry) = self.ledger.get(&id) else {
                self.push.queue.pop_front();
                self.push.queued.remove(&id);
                continue;
            };
            if via.is_some_and(|v| v.direct != item_via.direct) {
                break;
            }
            let size = wire::encoded_len(&entry);
            if !batch.is_empty() && used + size > budget {
                break;
            }
            via.get_or_insert(item_via);
            used += size;
            batch.push(entry);
            self.push.queue.pop_front();
            self.push.queued.remove(&id);
        }
        if !batch.is_empty() {
            self.stats.entries_pushed += batch.len() as u64;
            debug!(target: "sync", "SYNC pushing {} entries the group lacks", batch.len());
            let via = via.unwrap_or_default();
            let spread = Spread {
                group: true,
                except: None,
                held_by: via.held_by,
                direct: via.direct,
            };
            self.spread_entries(now, &batch, spread);
        }
        self.push.next_push_ms = now.mono_ms + self.cfg.tuning.push_interval_ms;
    }
}
