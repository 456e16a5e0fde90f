//! The compact sorted index of the log: per entry its key, its target and where its body
//! is (held in memory, or at an offset of the log read back through an injected
//! [`EntryReader`]), and a digest index that finds an entry's key by its digest.

use super::flat::{FlatEntry, FlatIndex};
use super::targets::Targets;
use crate::proto::digest::{Digest, DigestMap, Key};
use crate::proto::entry::Entry;
use crate::proto::fingerprint::Fingerprint;
use crate::proto::hlc::Hlc;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;
use thiserror::Error;

/// Reads entry bodies back from wherever the log keeps them. The daemon injects one backed
/// by the log file, so a million-entry ledger does not hold every entry in memory.
pub trait EntryReader: Send + Sync {
    /// The entry whose record starts at byte `offset` of the log, or why it cannot be read.
    fn read_at(&self, offset: u64) -> Result<Entry, BodyReadError>;

    /// The encoding of that entry (`postcard(Entry)`, the record's payload) appended to
    /// `out`, for sync answers that copy it into datagrams. Readers that hold the encoded
    /// bytes hand them over without decoding; the default encodes what `read_at` gives.
    /// Also returns the entry's timestamp, so the caller can check the index's key.
    fn read_encoded_at(&self, offset: u64, out: &mut Vec<u8>) -> Result<Hlc, BodyReadError> {
        let entry = self.read_at(offset)?;
        let bytes = postcard::to_extend(&entry, std::mem::take(out))
            .map_err(|err| BodyReadError::new(offset, err))?;
        *out = bytes;
        Ok(entry.at)
    }
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

/// Stored entries in the overlay are merged into the flat index once there are more of them
/// than this or a quarter of the flat index, whichever is more: merging copies the whole
/// flat index, so it must stay rare, while the overlay costs about twice the memory per
/// entry.
const MIN_OVERLAY: usize = 65_536;

/// What the overlay keeps per entry beside its digest: its timestamp (the digest and the
/// timestamp are its key), where the body is and whose entry it is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// The entry's timestamp.
    at: Hlc,
    /// Byte offset of the entry's record in the log, or [`RESIDENT`].
    offset: u64,
    /// The target's id.
    target: u32,
}

/// Where one entry's body is, in a detached copy of the index ([`EntryIndex::detached`]).
pub(super) enum StoredBody {
    /// In the log at this offset.
    At(u64),
    /// Held in memory (not yet stored; boxed, as they are few and the offsets many).
    Resident(Option<Box<Entry>>),
}

impl StoredBody {
    /// The body of the entry at `key`: in memory, or read back through `reader`; `None`
    /// when it cannot be read (logged by [`read_body`]).
    pub(super) fn read(self, reader: Option<&dyn EntryReader>, key: &Key) -> Option<Entry> {
        match self {
            StoredBody::Resident(entry) => entry.map(|entry| *entry),
            StoredBody::At(offset) => read_body(reader?, key, offset),
        }
    }
}

/// A copy of the index detached from the ledger, to read bodies back on another thread:
/// the flat index is shared, the overlay copied (bodies not yet stored are cloned).
pub(super) struct DetachedIndex {
    base: FlatIndex,
    overlay: Vec<(Key, StoredBody, u32)>,
    /// Target names by id.
    pub(super) targets: Arc<Targets>,
    /// What stored bodies are read through.
    pub(super) reader: Option<Arc<dyn EntryReader>>,
}

impl DetachedIndex {
    /// [`EntryIndex::walk_lazily`] on the detached copy.
    pub(super) fn walk_lazily(self) -> impl Iterator<Item = (Key, impl FnOnce() -> Option<Entry>)> {
        let reader = self.reader.clone();
        self.walk().map(move |(key, body, _)| {
            let reader = reader.clone();
            (key, move || body.read(reader.as_deref(), &key))
        })
    }

    /// Every entry's key, body location and target id, in key order.
    pub(super) fn walk(self) -> impl Iterator<Item = (Key, StoredBody, u32)> {
        let base = self.base;
        let stored = (0..base.len()).map(move |i| {
            let entry = base.entry(i);
            (entry.key, StoredBody::At(entry.offset), entry.target)
        });
        merge_by_key(stored, self.overlay.into_iter(), |item| item.0)
    }
}

/// Every entry's key and where its body is: stored entries in a flat, sorted index loaded in
/// bulk (at start-up, from a checkpoint or the scan), entries added since in an overlay
/// beside it. An entry is in one of the two, never both.
///
/// The overlay is one hash map by digest, which answers "is it here, under which key, where
/// is its body" with one lookup (a merge asks that of every entry it receives), plus the
/// overlay's keys in order for ranges.
#[derive(Clone, Default)]
pub(super) struct EntryIndex {
    base: FlatIndex,
    /// The overlay's entries by digest.
    slots: DigestMap<Slot>,
    /// The overlay's keys in key order.
    order: OverlayOrder,
    /// Bodies not readable through the reader (yet): entries inserted in memory.
    resident: DigestMap<Entry>,
    reader: Option<Arc<dyn EntryReader>>,
    /// Target names by id, shared with detached copies (copied on write).
    targets: Arc<Targets>,
}

impl EntryIndex {
    /// An index of the stored entries in `base`, whose target ids are in `targets`, read
    /// through `reader`.
    pub(super) fn from_flat(
        base: FlatIndex,
        targets: Targets,
        reader: Arc<dyn EntryReader>,
    ) -> EntryIndex {
        EntryIndex {
            base,
            targets: Arc::new(targets),
            reader: Some(reader),
            ..EntryIndex::default()
        }
    }

    /// Sets the reader that stored bodies are read through.
    pub(super) fn set_reader(&mut self, reader: Arc<dyn EntryReader>) {
        self.reader = Some(reader);
    }

    /// The reader stored bodies are read through, if one was injected.
    pub(super) fn reader(&self) -> Option<&Arc<dyn EntryReader>> {
        self.reader.as_ref()
    }

    /// Whether the flat index holds the entry at `key`. A digest names one entry, hence
    /// one timestamp, so the key's place settles most lookups without a search.
    pub(super) fn in_base(&self, key: &Key) -> bool {
        self.base.spans(key) && self.base.find_digest(&key.digest).is_some()
    }

    /// Indexes an entry at `key`, holding its body in memory, unless the overlay already
    /// has its digest (the caller has looked in the flat index: see
    /// [`EntryIndex::in_base`]). Returns the body as held, `None` for a duplicate.
    pub(super) fn insert_resident(&mut self, key: Key, entry: Entry) -> Option<&Entry> {
        let target = self.intern(&entry.target);
        let slot = Slot {
            at: key.at,
            offset: RESIDENT,
            target,
        };
        if !self.claim(key, slot) {
            return None;
        }
        Some(self.resident.entry(key.digest).or_insert(entry))
    }

    /// Indexes an entry at `key` whose record is at `offset` of the log (a reader must be
    /// set), unless the overlay already has its digest (the caller has looked in the flat
    /// index). Returns whether it was new.
    pub(super) fn insert_stored(&mut self, key: Key, target: &str, offset: u64) -> bool {
        let target = self.intern(target);
        if !self.claim(
            key,
            Slot {
                at: key.at,
                offset,
                target,
            },
        ) {
            return false;
        }
        self.maybe_compact();
        true
    }

    /// Adds `slot` to the overlay under `key` unless its digest is there already.
    fn claim(&mut self, key: Key, slot: Slot) -> bool {
        match self.slots.entry(key.digest) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(slot);
                self.order.insert(key);
                true
            }
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        match self.targets.id(name) {
            Some(id) => id,
            None => Arc::make_mut(&mut self.targets).intern(name),
        }
    }

    /// Whether any entry sorts after `key`.
    pub(super) fn has_later(&self, key: Key) -> bool {
        self.newest().is_some_and(|last| last > key)
    }

    /// See [`super::Ledger::mark_stored`].
    pub(super) fn mark_stored(&mut self, key: &Key, offset: u64) {
        if self.reader.is_none() || offset == RESIDENT {
            return;
        }
        if let Some(slot) = self.slots.get_mut(&key.digest) {
            if slot.at == key.at && self.resident.remove(&key.digest).is_some() {
                slot.offset = offset;
                self.maybe_compact();
            }
        }
    }

    /// Merges the overlay's stored entries into the flat index once there are many.
    fn maybe_compact(&mut self) {
        let stored = self.slots.len() - self.resident.len();
        if stored > MIN_OVERLAY.max(self.base.len() / 4) {
            self.compact();
        }
    }

    /// Merges the overlay's stored entries into the flat index; entries not yet stored
    /// stay in the overlay.
    pub(super) fn compact(&mut self) {
        let stored = self.stored_overlay();
        if stored.is_empty() {
            return;
        }
        self.base = self.base.merged(&stored);
        self.slots.retain(|_, slot| slot.offset == RESIDENT);
        let slots = &self.slots;
        self.order.retain(|key| slots.contains_key(&key.digest));
    }

    /// The overlay's entries in key order, with their slots.
    fn overlay(&self) -> impl Iterator<Item = (Key, Slot)> + '_ {
        self.order
            .iter()
            .filter_map(|key| self.slots.get(&key.digest).map(|slot| (key, *slot)))
    }

    /// The overlay's stored entries, in key order.
    fn stored_overlay(&self) -> Vec<FlatEntry> {
        self.overlay()
            .filter(|(_, slot)| slot.offset != RESIDENT)
            .map(|(key, slot)| FlatEntry {
                key,
                offset: slot.offset,
                target: slot.target,
            })
            .collect()
    }

    /// Every entry as stored in the log, for a checkpoint: the flat index (shared), the
    /// overlay's entries and the target names. `None` while some entry is not yet stored.
    pub(super) fn stored_parts(&self) -> Option<(FlatIndex, Vec<FlatEntry>, Arc<Targets>)> {
        if !self.resident.is_empty() || self.reader.is_none() {
            return None;
        }
        Some((
            self.base.clone(),
            self.stored_overlay(),
            self.targets.clone(),
        ))
    }

    /// See [`super::Ledger::unstored`].
    pub(super) fn unstored(&self) -> Option<(Vec<Entry>, Vec<Key>)> {
        self.reader.as_ref()?;
        let mut pending: Vec<(Key, &Entry)> = self
            .resident
            .iter()
            .filter_map(|(digest, entry)| {
                let slot = self.slots.get(digest)?;
                let key = Key {
                    at: slot.at,
                    digest: *digest,
                };
                Some((key, entry))
            })
            .collect();
        pending.sort_unstable_by_key(|(key, _)| *key);
        Some(pending.into_iter().map(|(k, e)| (e.clone(), k)).unzip())
    }

    /// Entries whose bodies are held in memory.
    pub(super) fn resident_len(&self) -> usize {
        self.resident.len()
    }

    /// The body of the entry at `key` whose slot says `offset`, from memory or through the
    /// reader. A read failure is logged and the entry treated as unavailable: the caller
    /// (sync) sends what it can.
    fn body(&self, key: &Key, offset: u64) -> Option<Entry> {
        if offset == RESIDENT {
            return self.resident.get(&key.digest).cloned();
        }
        read_body(self.reader.as_deref()?, key, offset)
    }

    /// The body of the entry at `key`, if present and readable.
    pub(super) fn body_at(&self, key: &Key) -> Option<Entry> {
        match self.slots.get(&key.digest) {
            // A digest names one entry, so one timestamp: another is another key.
            Some(slot) => (slot.at == key.at)
                .then(|| self.body(key, slot.offset))
                .flatten(),
            None => self
                .base
                .find(key)
                .and_then(|i| self.body(key, self.base.offset(i))),
        }
    }

    /// Whether an entry with this digest is present.
    pub(super) fn contains(&self, digest: &Digest) -> bool {
        self.slots.contains_key(digest) || self.base.find_digest(digest).is_some()
    }

    /// Whether the entry at `key` is present: [`EntryIndex::contains`] for a caller that
    /// knows the entry's timestamp too, usually without searching the flat index.
    pub(super) fn contains_key(&self, key: &Key) -> bool {
        self.slots.contains_key(&key.digest) || self.in_base(key)
    }

    /// The entry with this digest, if present (and readable).
    pub(super) fn get(&self, digest: &Digest) -> Option<Entry> {
        if let Some(slot) = self.slots.get(digest) {
            let key = Key {
                at: slot.at,
                digest: *digest,
            };
            return self.body(&key, slot.offset);
        }
        let i = self.base.find_digest(digest)?;
        self.body(&self.base.key(i), self.base.offset(i))
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.base.len() + self.order.len()
    }

    /// The largest key present.
    pub(super) fn newest(&self) -> Option<Key> {
        self.base.last_key().max(self.order.last())
    }

    /// `(lower, upper)`, or an empty range when inverted: ranges come from peers.
    fn bounds(lower: Key, upper: Key) -> (Key, Key) {
        if lower <= upper {
            (lower, upper)
        } else {
            (upper, upper)
        }
    }

    /// Every entry with `lower <= key < upper` in key order: its key and its slot's offset.
    fn range_iter(&self, lower: Key, upper: Key) -> impl Iterator<Item = (Key, u64)> + '_ {
        let (lower, upper) = Self::bounds(lower, upper);
        let (from, to) = (self.base.lower_bound(&lower), self.base.lower_bound(&upper));
        let stored = (from..to).map(|i| (self.base.key(i), self.base.offset(i)));
        let added = self
            .order
            .range(lower, upper)
            .filter_map(|key| self.slots.get(&key.digest).map(|slot| (key, slot.offset)));
        merge_by_key(stored, added, |item| item.0)
    }

    /// Fingerprint of the entries with `lower <= key < upper`, summed key by key.
    pub(super) fn range_fingerprint(&self, lower: Key, upper: Key) -> Fingerprint {
        let (lower, upper) = Self::bounds(lower, upper);
        let mut fp = self
            .base
            .fingerprint(self.base.lower_bound(&lower), self.base.lower_bound(&upper));
        for key in self.order.range(lower, upper) {
            fp.add(key.digest.as_u128());
        }
        fp
    }

    /// Keys of the entries with `lower <= key < upper`, in key order (no body is read).
    pub(super) fn range_keys(&self, lower: Key, upper: Key) -> impl Iterator<Item = Key> + '_ {
        self.range_iter(lower, upper).map(|(key, _)| key)
    }

    /// Every entry's key with a way to get its body, in key order: a replay that has some
    /// bodies at hand (the roster changes) reads only the others.
    pub(super) fn walk_lazily(
        &self,
    ) -> impl Iterator<Item = (Key, impl FnOnce() -> Option<Entry> + '_)> + '_ {
        self.range_iter(Key::MIN, Key::MAX)
            .map(move |(key, offset)| (key, move || self.body(&key, offset)))
    }

    /// Entries with `lower <= key < upper`, in key order, read lazily.
    pub(super) fn range(&self, lower: Key, upper: Key) -> impl Iterator<Item = Entry> + '_ {
        self.range_iter(lower, upper)
            .filter_map(|(key, offset)| self.body(&key, offset))
    }

    /// The encoded entries with `lower <= key < upper` whose key passes `keep`, in key
    /// order, each with its key: stored bodies are copied from the log, not decoded.
    pub(super) fn range_encoded_where<'a>(
        &'a self,
        lower: Key,
        upper: Key,
        mut keep: impl FnMut(&Key) -> bool + 'a,
    ) -> impl Iterator<Item = (Key, Vec<u8>)> + 'a {
        self.range_iter(lower, upper)
            .filter(move |(key, _)| keep(key))
            .filter_map(|(key, offset)| self.encoded_body(&key, offset).map(|b| (key, b)))
    }

    /// `body`, encoded; a stored body is copied as the reader holds it.
    fn encoded_body(&self, key: &Key, offset: u64) -> Option<Vec<u8>> {
        if offset != RESIDENT {
            if let Some(reader) = self.reader.as_deref() {
                let mut out = Vec::new();
                // As in `read_body`, the timestamp catches a wrong record; on any failure
                // `body` reads it again the ordinary way, and logs what is wrong.
                if reader
                    .read_encoded_at(offset, &mut out)
                    .is_ok_and(|at| at == key.at)
                {
                    // As `read_body` does: in tests, the whole key, not just its timestamp.
                    debug_assert!(
                        postcard::from_bytes::<Entry>(&out).is_ok_and(|entry| entry.key() == *key),
                        "the record at {offset} is not the entry {key:?}"
                    );
                    return Some(out);
                }
            }
        }
        postcard::to_stdvec(&self.body(key, offset)?).ok()
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
            .filter_map(|(key, offset)| self.body(&key, offset))
    }

    /// See [`super::Ledger::split`].
    pub(super) fn split(&self, lower: Key, upper: Key, parts: usize) -> Vec<(Key, Key)> {
        let count = self.range_iter(lower, upper).count();
        let parts = parts.max(1).min(count.max(1));
        let mut bounds = Vec::with_capacity(parts);
        let mut start = lower;
        if parts > 1 {
            for (index, key) in self.range_keys(lower, upper).enumerate() {
                // Cut in front of the item at each (i * count / parts) position.
                let next_cut = (bounds.len() + 1) * count / parts;
                if index == next_cut && index > 0 && key > start {
                    bounds.push((start, key));
                    start = key;
                    if bounds.len() + 1 == parts {
                        break;
                    }
                }
            }
        }
        bounds.push((start, upper));
        bounds
    }

    /// [`Self::split`] with each part's fingerprint, in one walk over the keys (no slot or
    /// body is looked up): a responder hands these back when its budget cuts an answer
    /// short, and walking the rest of a big span three times showed in its profile.
    pub(super) fn split_fingerprinted(
        &self,
        lower: Key,
        upper: Key,
        parts: usize,
    ) -> Vec<(Key, Key, Fingerprint)> {
        let (lower, upper) = Self::bounds(lower, upper);
        let (from, to) = (self.base.lower_bound(&lower), self.base.lower_bound(&upper));
        let added = || self.order.range(lower, upper);
        let count = (to - from) + added().count();
        let parts = parts.max(1).min(count.max(1));
        let stored = (from..to).map(|i| self.base.key(i));
        let mut out = Vec::with_capacity(parts);
        let (mut start, mut fp) = (lower, Fingerprint::default());
        for (index, key) in merge_by_key(stored, added(), |key| *key).enumerate() {
            // Cut in front of the item at each (i * count / parts) position, as `split`.
            let next_cut = (out.len() + 1) * count / parts;
            if out.len() + 1 < parts && index == next_cut && index > 0 && key > start {
                out.push((start, key, fp));
                start = key;
                fp = Fingerprint::default();
            }
            fp.add(key.digest.as_u128());
        }
        out.push((start, upper, fp));
        out
    }

    /// A copy detached from the index, to read the bodies back on another thread.
    pub(super) fn detached(&self) -> DetachedIndex {
        let overlay = self
            .overlay()
            .map(|(key, slot)| {
                let body = match slot.offset {
                    RESIDENT => {
                        StoredBody::Resident(self.resident.get(&key.digest).cloned().map(Box::new))
                    }
                    offset => StoredBody::At(offset),
                };
                (key, body, slot.target)
            })
            .collect();
        DetachedIndex {
            base: self.base.clone(),
            overlay,
            targets: self.targets.clone(),
            reader: self.reader.clone(),
        }
    }
}

/// The overlay's keys in key order. Entries mostly arrive in key order (a catch-up asks
/// for ranges in order, and a new entry is usually the newest), so a key after every key
/// held is appended to a sorted vector, without the search and node splits of a
/// `BTreeSet`; the others go to a `BTreeSet` beside it, and readers merge the two.
#[derive(Clone, Default)]
struct OverlayOrder {
    /// Keys that arrived after every key then held: sorted by their arrival.
    run: Vec<Key>,
    /// The other keys.
    rest: BTreeSet<Key>,
}

impl OverlayOrder {
    /// Adds `key`, which must not be held already.
    fn insert(&mut self, key: Key) {
        match self.run.last() {
            Some(last) if *last >= key => {
                self.rest.insert(key);
            }
            _ => self.run.push(key),
        }
    }

    fn len(&self) -> usize {
        self.run.len() + self.rest.len()
    }

    /// The largest key.
    fn last(&self) -> Option<Key> {
        self.run.last().copied().max(self.rest.last().copied())
    }

    /// Every key, in order.
    fn iter(&self) -> impl Iterator<Item = Key> + '_ {
        merge_by_key(self.run.iter().copied(), self.rest.iter().copied(), |key| {
            *key
        })
    }

    /// The keys with `lower <= key < upper` (`lower <= upper`), in order.
    fn range(&self, lower: Key, upper: Key) -> impl Iterator<Item = Key> + '_ {
        let from = self.run.partition_point(|key| *key < lower);
        let to = self.run.partition_point(|key| *key < upper);
        let run = self.run[from..to.max(from)].iter().copied();
        let rest = self
            .rest
            .range((Bound::Included(lower), Bound::Excluded(upper)))
            .copied();
        merge_by_key(run, rest, |key| *key)
    }

    /// Keeps only the keys that pass `keep`.
    fn retain(&mut self, mut keep: impl FnMut(&Key) -> bool) {
        self.run.retain(&mut keep);
        self.rest.retain(keep);
    }
}

/// Merges two iterators sorted by `key` into one sorted iterator (ties: `a` first).
fn merge_by_key<T, K: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if key(y) < key(x) => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
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
    use crate::core::ledger::{Ledger, LedgerBuilder};

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

    /// One lookup by digest answers for the overlay whether its entries are resident or
    /// stored, and the flat index for the rest: every entry is found by digest and by key,
    /// a duplicate is refused wherever the first copy sits, and marking a key the overlay
    /// does not hold (a digest with another timestamp) changes nothing.
    #[test]
    fn every_entry_is_found_once_wherever_it_sits() {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        let stored: Vec<Entry> = (0..40u64).map(|i| entry(i * 2, 1, "Ann", 1)).collect();
        for (i, e) in stored.iter().enumerate() {
            reader.put(i as u64, e.clone());
            builder.push(e, i as u64);
        }
        let (mut ledger, _) = builder.finish(reader.clone());
        let added: Vec<Entry> = (0..40u64).map(|i| entry(i * 2 + 1, 2, "Bo", 2)).collect();
        for (i, e) in added.iter().enumerate() {
            assert!(!ledger.contains(&e.digest()), "{i}");
            assert!(ledger.insert(e.clone()), "{i}");
            if i % 2 == 0 {
                reader.put(1000 + i as u64, e.clone());
                ledger.mark_stored(&e.key(), 1000 + i as u64);
            }
        }
        // A digest under a timestamp that is not its own: no such key, nothing changes.
        let odd = &added[1];
        let wrong = Key {
            at: Hlc(odd.at.0 + 1),
            digest: odd.digest(),
        };
        ledger.mark_stored(&wrong, 5000);
        assert_eq!(ledger.resident_len(), 20);
        assert_eq!(ledger.index.body_at(&wrong), None);
        let check = |ledger: &Ledger| {
            for e in stored.iter().chain(&added) {
                assert_eq!(ledger.get(&e.digest()).as_ref(), Some(e));
                assert_eq!(ledger.index.body_at(&e.key()).as_ref(), Some(e));
                assert!(!ledger.clone().insert(e.clone()), "a duplicate");
            }
            assert_eq!(ledger.len(), 80);
            assert_eq!(ledger.iter().count(), 80);
            assert!(!ledger.contains(&entry(1000, 3, "Cy", 1).digest()));
        };
        check(&ledger);
        ledger.compact();
        assert_eq!(
            ledger.index.order.len(),
            20,
            "only the resident stay in the overlay"
        );
        check(&ledger);
    }

    /// The one-walk split gives `split`'s parts with `range_fingerprint`'s fingerprints,
    /// over the flat index, the overlay and both at once.
    #[test]
    fn split_with_fingerprints_agrees_with_split_and_range_fingerprint() {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for i in 0..60u64 {
            let e = entry(i * 2, 1, "Ann", 1);
            reader.put(i, e.clone());
            builder.push(&e, i);
        }
        let (mut ledger, _) = builder.finish(reader);
        for i in 0..50u64 {
            assert!(ledger.insert(entry(i * 3 + 1, 2, "Bo", 2)));
        }
        let keys: Vec<Key> = ledger.range_keys(Key::MIN, Key::MAX).collect();
        let bounds = [
            (Key::MIN, Key::MAX),
            (keys[3], keys[97]),
            (keys[10], keys[11]),
            (keys[40], keys[40]),
            (keys[50], Key::MAX),
        ];
        for (lo, hi) in bounds {
            for parts in [1, 2, 3, 8, 200] {
                let one_walk = ledger.index.split_fingerprinted(lo, hi, parts);
                let split = ledger.split(lo, hi, parts);
                assert_eq!(one_walk.len(), split.len(), "{parts} parts");
                for ((a, c, fp), (sa, sc)) in one_walk.into_iter().zip(split) {
                    assert_eq!((a, c), (sa, sc));
                    assert_eq!(fp, ledger.range_fingerprint(a, c));
                }
            }
        }
    }

    /// Keys that arrive in order (appended to the overlay's run) and out of order (kept
    /// beside it) read back as one sorted set: every range, its fingerprint, the newest key
    /// and "is anything later" agree with a plain sorted list, before and after the stored
    /// ones are compacted away.
    #[test]
    fn keys_in_and_out_of_arrival_order_read_back_sorted() {
        let reader = Arc::new(MemoryReader::default());
        let (mut ledger, _) = LedgerBuilder::new().finish(reader.clone());
        // Mostly ascending, with stragglers, repeats of a timestamp and a jump back.
        let times: Vec<u64> = (0..300u64)
            .map(|i| match i % 7 {
                3 => i / 2,
                5 => i,
                _ => i * 3,
            })
            .collect();
        let mut all = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let e = entry(*t, (i % 250) as u8, ["Ann", "Bo"][i % 2], 1);
            if ledger.insert(e.clone()) {
                all.push(e.key());
            }
            if i % 3 == 0 {
                reader.put(i as u64, e.clone());
                ledger.mark_stored(&e.key(), i as u64);
            }
        }
        assert!(!ledger.index.order.rest.is_empty() && !ledger.index.order.run.is_empty());
        all.sort();
        let check = |ledger: &Ledger| {
            assert_eq!(
                ledger.range_keys(Key::MIN, Key::MAX).collect::<Vec<_>>(),
                all
            );
            assert_eq!(ledger.newest(), all.last().copied());
            for w in all.windows(37) {
                let (lo, hi) = (w[0], w[36]);
                let want: Vec<Key> = all
                    .iter()
                    .copied()
                    .filter(|k| lo <= *k && *k < hi)
                    .collect();
                assert_eq!(ledger.range_keys(lo, hi).collect::<Vec<_>>(), want);
                let mut fp = Fingerprint::default();
                want.iter().for_each(|k| fp.add(k.digest.as_u128()));
                assert_eq!(ledger.range_fingerprint(lo, hi), fp);
                assert!(ledger.index.has_later(lo));
            }
            assert!(!ledger.index.has_later(*all.last().unwrap()));
            assert_eq!(ledger.range_keys(all[5], all[5]).count(), 0);
        };
        check(&ledger);
        ledger.compact();
        check(&ledger);
    }
}
