//! Entries a reconciliation found the other side lacking are multicast to the whole group as
//! LOG_ENTRY (the rest of the group probably lacks them too), a burst per push tick so a
//! large push does not flood the receivers' socket buffers.

use super::{Now, Peer};
use crate::proto::digest::{Digest, Key};
use crate::proto::limits::MAX_MESSAGE;
use crate::proto::wire;
use std::collections::{HashSet, VecDeque};
use tracing::debug;

/// Digests waiting to be multicast, in the order they were found lacking.
#[derive(Debug)]
pub(super) struct PushQueue {
    queue: VecDeque<Digest>,
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

    /// Whether nothing waits to be multicast.
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
    /// Queues one entry for multicast (once, however often it is found lacking).
    pub(super) fn queue_push(&mut self, id: Digest) {
        if self.push.queued.insert(id) {
            self.push.queue.push_back(id);
            self.requester.pushed_one();
        }
    }

    /// Queues for multicast our entries in `[lo, hi)` whose digests are not in `theirs`.
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

    /// One push tick: multicasts up to a burst of queued entries.
    pub(super) fn push_some(&mut self, now: Now) {
        let budget = self.cfg.tuning.push_burst.max(1) * (MAX_MESSAGE - 100);
        let mut used = 0;
        let mut batch = Vec::new();
        while let Some(id) = self.push.queue.front().copied() {
            let Some(entry) = self.ledger.get(&id) else {
                self.push.queue.pop_front();
                self.push.queued.remove(&id);
                continue;
            };
            let size = wire::encoded_len(&entry);
            if !batch.is_empty() && used + size > budget {
                break;
            }
            used += size;
            batch.push(entry);
            self.push.queue.pop_front();
            self.push.queued.remove(&id);
        }
        if !batch.is_empty() {
            self.stats.entries_pushed += batch.len() as u64;
            debug!(target: "sync", "SYNC pushing {} entries the group lacks", batch.len());
            self.outbox.send_entries_to_group(&mut self.stats, &batch);
        }
        self.push.next_push_ms = now.mono_ms + self.cfg.tuning.push_interval_ms;
    }
}
