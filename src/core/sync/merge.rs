//! Taking in entries from peers: each is checked once (a forged signature never enters the
//! set), applied to the ledger, forwarded to the peers that did not hear it (see `fanout`),
//! and handed to the driver to persist.

use super::fanout::Origin;
use super::{Now, Peer};
use crate::proto::batch::EncodedBatch;
use crate::proto::digest::Digest;
use crate::proto::entry::Entry;
use std::collections::{HashSet, VecDeque};
use tracing::debug;

/// How many forged entries' digests a peer remembers (16 bytes each, twice over).
pub(super) const MAX_BAD_SEALS: usize = 4096;

/// Digests of entries whose seal failed to verify, most recent last, so a member replaying
/// the same forgery costs a hash lookup instead of a signature check each time.
#[derive(Debug, Default)]
pub(super) struct ForgeryMemory {
    order: VecDeque<Digest>,
    known: HashSet<Digest>,
}

impl ForgeryMemory {
    /// Whether `digest` is a forgery seen before.
    pub(super) fn contains(&self, digest: &Digest) -> bool {
        self.known.contains(digest)
    }

    /// Remembers a forgery, forgetting the oldest beyond [`MAX_BAD_SEALS`].
    pub(super) fn remember(&mut self, digest: Digest) {
        if self.known.insert(digest) {
            self.order.push_back(digest);
            if self.order.len() > MAX_BAD_SEALS {
                if let Some(oldest) = self.order.pop_front() {
                    self.known.remove(&oldest);
                }
            }
        }
    }

    /// How many forgeries are remembered: (in order, in the set), which must agree.
    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.order.len(), self.known.len())
    }
}

impl Peer {
    /// Applies entries from a peer (`origin`), forwards the new ones (see `fanout`); returns
    /// how many were new.
    ///
    /// Each entry is encoded once: its digest hashes that encoding and the log stores it
    /// (the [`Action::Persist`](super::Action::Persist) batch), while the entry itself
    /// moves into the ledger, so nothing is cloned unless it is forwarded.
    pub(super) fn merge(&mut self, now: Now, entries: Vec<Entry>, origin: Origin) -> usize {
        // Only unicast peers are forwarded to, and only then are the entries needed again.
        let forwarding = !self.unicast.is_empty();
        let mut fresh = Vec::new();
        let mut batch = EncodedBatch::with_capacity(entries.len());
        self.ledger.begin_batch();
        for entry in entries {
            let key = match batch.stage(&entry) {
                Ok(key) => key,
                // The codec checks every entry it decodes, so this is a bug, not a peer's
                // doing; dropped all the same, as the log could not take it.
                Err(err) => {
                    debug!(target: "sync", "SYNC dropped entry {}: {err}", entry.id);
                    self.stats.dropped("invalid_entry");
                    continue;
                }
            };
            if self.ledger.contains_key(&key) {
                continue;
            }
            // A forged or damaged signature is dropped before it can enter the set: that
            // depends on the entry alone, so every peer drops the same ones. An unsigned entry
            // (or one by a non-officer) is kept, counting for nothing while the group has a
            // root key: a peer that holds it, say from before the root key was set, offers it
            // to everyone, and refusing it would leave that range unreconciled forever.
            if self.forgeries.contains(&key.digest) {
                self.stats.dropped("known_forgery");
                continue;
            }
            if let Err(err) = self.signatures.verify(&entry) {
                debug!(target: "sync", "SYNC dropped entry {}: {err}", entry.id);
                self.stats.dropped("bad_signature");
                self.forgeries.remember(key.digest);
                continue;
            }
            self.clock.observe(entry.at, now.unix_ms);
            self.requester.arrived(&key.digest);
            batch.keep();
            if forwarding {
                fresh.push(entry.clone());
            }
            // Found absent at the top of this iteration; nothing inserted since.
            self.ledger.insert_absent(key, entry);
        }
        self.ledger.end_batch();
        let count = batch.len();
        if count > 0 {
            self.changed_ms = now.mono_ms;
            self.stats.entries_merged += count as u64;
            debug!(target: "sync", "SYNC merged {count} new entries");
            self.forward(now, &fresh, origin);
            self.outbox.persist(batch);
        }
        count
    }
}
