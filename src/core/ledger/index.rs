//! The compact sorted index of the log: per entry its key and where its body is (held in
//! memory, or at an offset of the log read back through an injected [`EntryReader`]), and a
//! digest index that finds an entry's key by its digest.

use crate::proto::digest::{Digest, Key};
use crate::proto::entry::Entry;
use crate::proto::fingerprint::Fingerprint;
use crate::proto::hlc::Hlc;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use thiserror::Error;

/// Reads entry bodies back from wherever the log keeps them. The daemon injects one backed
/// by the log file, so a million-entry ledger does not hold every entry in memory.
pub trait EntryReader: Send + Sync {
    /// The entry whose record starts at byte `offset` of the log, or why it cannot be read.
    fn read_at(&self, offset: u64) -> Result<Entry, BodyReadError>;
}

/// Why an [`EntryReader`] could not give back the entry at an offset.
///
/// The cause is boxed because the core cannot name the reader's own error type (the store's
/// log reader lives a layer above); callers that need it can downcast [`BodyReadError::source`].
#[derive(Debug, Error)]
#[error("cannot read the entry at offset {offset}")]
pub struct BodyReadError {
    /// Where the entry's record was expected.
    pub offset: u64,
    /// What the reader ran into (for the daemon, the store's read error).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BodyReadError {
    /// The entry at `offset` could not be read because of `source`.
    pub fn new(
        offset: u64,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BodyReadError {
        BodyReadError {
            offset,
            source: source.into(),
        }
    }
}

/// `Slot::offset` of an entry whose body is in the index's `resident` map.
const RESIDENT: u64 = u64::MAX;

/// What the index keeps per entry beside its key (which holds the digest that fingerprints
/// sum): where the body is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// Byte offset of the entry's record in the log, or [`RESIDENT`].
    offset: u64,
}

impl Slot {
    /// The slot of an entry whose record is at `offset` of the log.
    pub(super) fn stored_at(offset: u64) -> Slot {
        Slot { offset }
    }

    /// The slot of an entry whose body is held in memory.
    fn resident() -> Slot {
        Slot { offset: RESIDENT }
    }
}

/// Finds an entry's timestamp (and so its key) by digest. Most digests sit in a sorted vector
/// (24 bytes each, no hash-table slack); new ones go to a small hash map that is merged into
/// the vector when it grows past an eighth of it, so inserts stay cheap on average.
#[derive(Clone, Debug, Default)]
pub(super) struct DigestIndex {
    sorted: Vec<(Digest, Hlc)>,
    recent: HashMap<Digest, Hlc>,
}

impl DigestIndex {
    /// Below this many recent digests a merge is not worth its sort.
    const MIN_RECENT: usize = 4096;

    fn get(&self, digest: &Digest) -> Option<Hlc> {
        if let Some(at) = self.recent.get(digest) {
            return Some(*at);
        }
        self.sorted
            .binary_search_by(|(probe, _)| probe.cmp(digest))
            .ok()
            .map(|i| self.sorted[i].1)
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.get(digest).is_some()
    }

    /// Adds `digest` unless present; returns whether it was new. With `merge_when_large`,
    /// the recent map is folded into the vector once it passes an eighth of it; a bulk load
    /// passes false and merges once at the end.
    fn insert(&mut self, digest: Digest, at: Hlc, merge_when_large: bool) -> bool {
        if !self.sorted.is_empty()
            && self
                .sorted
                .binary_search_by(|(probe, _)| probe.cmp(&digest))
                .is_ok()
        {
            return false;
        }
        match self.recent.entry(digest) {
            std::collections::hash_map::Entry::Occupied(_) => return false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(at);
            }
        }
        if merge_when_large && self.recent.len() > Self::MIN_RECENT.max(self.sorted.len() / 8) {
            self.merge();
        }
        true
    }

    fn merge(&mut self) {
        let mut recent: Vec<(Digest, Hlc)> = self.recent.drain().collect();
        recent.sort_unstable_by_key(|(digest, _)| *digest);
        self.recent = HashMap::new();
        // Exact reservation: a doubling Vec would waste up to half of a million-entry index.
        self.sorted.reserve_exact(recent.len());
        self.sorted.extend(recent);
        // Two sorted runs: the stable sort detects them and merges in linear time.
        self.sorted.sort_by_key(|(digest, _)| *digest);
    }
}

/// Where one entry's body is, in a detached copy of the index ([`EntryIndex::bodies`]).
pub(super) enum StoredBody {
    /// In the log at this offset.
    At(u64),
    /// Held in memory (not yet stored; boxed, as they are few and the offsets many).
    Resident(Option<Box<Entry>>),
}

/// Every entry's key in order and where its body is, plus the digest index.
#[derive(Clone, Default)]
pub(super) struct EntryIndex {
    slots: BTreeMap<Key, Slot>,
    ids: DigestIndex,
    /// Bodies not readable through the reader (yet): entries inserted in memory.
    resident: HashMap<Key, Entry>,
    reader: Option<Arc<dyn EntryReader>>,
}

impl EntryIndex {
    /// Sets the reader that stored bodies are read through.
    pub(super) fn set_reader(&mut self, reader: Arc<dyn EntryReader>) {
        self.reader = Some(reader);
    }

    /// The reader stored bodies are read through, if one was injected.
    pub(super) fn reader(&self) -> Option<&Arc<dyn EntryReader>> {
        self.reader.as_ref()
    }

    /// Notes a new digest; false if it is already present. See [`DigestIndex::insert`] for
    /// `merge_when_large`.
    pub(super) fn insert_digest(
        &mut self,
        digest: Digest,
        at: Hlc,
        merge_when_large: bool,
    ) -> bool {
        self.ids.insert(digest, at, merge_when_large)
    }

    /// Indexes an entry whose digest was just inserted, holding its body in memory.
    pub(super) fn insert_resident(&mut self, key: Key, entry: Entry) {
        self.slots.insert(key, Slot::resident());
        self.resident.insert(key, entry);
    }

    /// Ends a bulk load: `slots` (any order) for the digests inserted without merging, read
    /// through `reader`.
    pub(super) fn finish_bulk_load(
        &mut self,
        mut slots: Vec<(Key, Slot)>,
        reader: Arc<dyn EntryReader>,
    ) {
        self.reader = Some(reader);
        // Sorted and bulk-built: a B-tree built from sorted input has full nodes, about half
        // the memory of one grown by inserting in order.
        slots.sort_unstable_by_key(|(key, _)| *key);
        self.slots = slots.into_iter().collect();
        self.ids.merge();
    }

    /// Whether any entry sorts after `key`.
    pub(super) fn has_later(&self, key: Key) -> bool {
        self.slots
            .range((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .is_some()
    }

    /// See [`super::Ledger::mark_stored`].
    pub(super) fn mark_stored(&mut self, key: &Key, offset: u64) {
        if self.reader.is_none() || offset == RESIDENT {
            return;
        }
        if let Some(slot) = self.slots.get_mut(key) {
            if self.resident.remove(key).is_some() {
                slot.offset = offset;
            }
        }
    }

    /// See [`super::Ledger::unstored`].
    pub(super) fn unstored(&self) -> Option<(Vec<Entry>, Vec<Key>)> {
        self.reader.as_ref()?;
        let mut pending: Vec<(&Key, &Entry)> = self.resident.iter().collect();
        pending.sort_unstable_by_key(|(key, _)| **key);
        Some(pending.into_iter().map(|(k, e)| (e.clone(), *k)).unzip())
    }

    /// Entries whose bodies are held in memory.
    pub(super) fn resident_len(&self) -> usize {
        self.resident.len()
    }

    /// The body of the entry at `key`, from memory or through the reader. A read failure is
    /// logged and the entry treated as unavailable: the caller (sync) sends what it can.
    fn body(&self, key: &Key, slot: &Slot) -> Option<Entry> {
        if slot.offset == RESIDENT {
            return self.resident.get(key).cloned();
        }
        read_body(self.reader.as_deref()?, key, slot.offset)
    }

    /// The body of the entry at `key`, if present and readable.
    pub(super) fn body_at(&self, key: &Key) -> Option<Entry> {
        self.slots.get(key).and_then(|slot| self.body(key, slot))
    }

    /// Whether an entry with this digest is present.
    pub(super) fn contains(&self, digest: &Digest) -> bool {
        self.ids.contains(digest)
    }

    /// The entry with this digest, if present (and readable).
    pub(super) fn get(&self, digest: &Digest) -> Option<Entry> {
        let at = self.ids.get(digest)?;
        let key = Key {
            at,
            digest: *digest,
        };
        let slot = self.slots.get(&key)?;
        self.body(&key, slot)
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The largest key present.
    pub(super) fn newest(&self) -> Option<Key> {
        self.slots.keys().next_back().copied()
    }

    fn range_iter(&self, lower: Key, upper: Key) -> impl Iterator<Item = (&Key, &Slot)> + '_ {
        // An inverted range is treated as empty rather than panicking: ranges come from peers.
        let (lower, upper) = if lower <= upper {
            (lower, upper)
        } else {
            (upper, upper)
        };
        self.slots
            .range((Bound::Included(lower), Bound::Excluded(upper)))
    }

    /// Fingerprint of the entries with `lower <= key < upper`, summed key by key.
    pub(super) fn range_fingerprint(&self, lower: Key, upper: Key) -> Fingerprint {
        let mut fp = Fingerprint::default();
        for (key, _) in self.range_iter(lower, upper) {
            fp.add(key.digest.as_u128());
        }
        fp
    }

    /// Keys of the entries with `lower <= key < upper`, in key order (no body is read).
    pub(super) fn range_keys(&self, lower: Key, upper: Key) -> impl Iterator<Item = Key> + '_ {
        self.range_iter(lower, upper).map(|(key, _)| *key)
    }

    /// Entries with `lower <= key < upper`, in key order, read lazily.
    pub(super) fn range(&self, lower: Key, upper: Key) -> impl Iterator<Item = Entry> + '_ {
        self.range_iter(lower, upper)
            .filter_map(|(key, slot)| self.body(key, slot))
    }

    /// Entries with `lower <= key < upper` whose key passes `keep`, in key order; bodies are
    /// read only for the entries kept.
    pub(super) fn range_where<'a>(
        &'a self,
        lower: Key,
        upper: Key,
        mut keep: impl FnMut(&Key) -> bool + 'a,
    ) -> impl Iterator<Item = Entry> + 'a {
        self.range_iter(lower, upper)
            .filter(move |(key, _)| keep(key))
            .filter_map(|(key, slot)| self.body(key, slot))
    }

    /// See [`super::Ledger::split`].
    pub(super) fn split(&self, lower: Key, upper: Key, parts: usize) -> Vec<(Key, Key)> {
        let count = self.range_iter(lower, upper).count();
        let parts = parts.max(1).min(count.max(1));
        let mut bounds = Vec::with_capacity(parts);
        let mut start = lower;
        if parts > 1 {
            for (index, (key, _)) in self.range_iter(lower, upper).enumerate() {
                // Cut in front of the item at each (i * count / parts) position.
                let next_cut = (bounds.len() + 1) * count / parts;
                if index == next_cut && index > 0 && *key > start {
                    bounds.push((start, *key));
                    start = *key;
                    if bounds.len() + 1 == parts {
                        break;
                    }
                }
            }
        }
        bounds.push((start, upper));
        bounds
    }

    /// Every key in order with where its body is: a copy detached from the index (bodies
    /// not yet stored are cloned), to read the bodies back on another thread.
    pub(super) fn bodies(&self) -> Vec<(Key, StoredBody)> {
        self.slots
            .iter()
            .map(|(key, slot)| match slot.offset {
                RESIDENT => (
                    *key,
                    StoredBody::Resident(self.resident.get(key).cloned().map(Box::new)),
                ),
                offset => (*key, StoredBody::At(offset)),
            })
            .collect()
    }
}

/// Reads the body of the entry at `key` from the log at `offset`. A read failure or a
/// different entry there is logged and treated as unavailable.
pub(super) fn read_body(reader: &dyn EntryReader, key: &Key, offset: u64) -> Option<Entry> {
    match reader.read_at(offset) {
        // The offset comes from our own index, so a wrong body means a bug or a changed
        // file: the timestamp catches it without hashing every body read back (sync
        // reads thousands per second); debug builds check the whole key.
        Ok(entry) if entry.at == key.at => {
            debug_assert_eq!(entry.key(), *key, "log record at offset {offset}");
            Some(entry)
        }
        Ok(entry) => {
            tracing::warn!(
                "log record at offset {} holds entry {}, not the indexed digest {}",
                offset,
                entry.id,
                key.digest
            );
            None
        }
        Err(err) => {
            // The whole chain of causes, not just the outermost: the reader's error names
            // the file and what went wrong, its own source the operating system's error.
            let mut causes = String::new();
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*err.source);
            while let Some(next) = cause {
                causes.push_str(&format!(": {next}"));
                cause = next.source();
            }
            tracing::warn!(
                "cannot read entry with digest {} back from the log at offset {}{causes}",
                key.digest,
                offset
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::test_support::{entry, MemoryReader};
    use crate::core::ledger::LedgerBuilder;

    #[test]
    fn unreadable_or_mismatched_bodies_are_skipped_not_a_panic() {
        let reader = Arc::new(MemoryReader::default());
        let a = entry(1, 1, "Ann", 1);
        let b = entry(2, 2, "Bo", 2);
        let mut builder = LedgerBuilder::new();
        builder.push(&a, 100);
        builder.push(&b, 200);
        // Offset 100 holds a different entry; offset 200 holds nothing.
        reader.put(100, entry(9, 9, "Zed", 9));
        let (ledger, _) = builder.finish(reader);
        assert_eq!(ledger.get(&a.digest()), None);
        assert_eq!(ledger.get(&b.digest()), None);
        assert_eq!(ledger.iter().count(), 0);
        // The index still counts them: fingerprints and totals do not depend on reads.
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.total("Bo"), 2);
    }

    #[test]
    fn digest_index_finds_every_digest_across_merges() {
        let mut index = DigestIndex::default();
        let ids: Vec<Digest> = (0..20_000u64)
            .map(|i| entry(i, 1, "Ann", 1).digest())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!index.contains(id), "{i}");
            assert!(index.insert(*id, Hlc(i as u64), true));
            assert!(!index.insert(*id, Hlc(0), true), "{i} again");
        }
        assert!(index.sorted.len() > 15_000, "merged along the way");
        assert!(index.recent.len() <= DigestIndex::MIN_RECENT.max(index.sorted.len() / 8));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id), Some(Hlc(i as u64)));
        }
        assert!(!index.contains(&entry(30_000, 1, "Ann", 1).digest()));
    }
}
