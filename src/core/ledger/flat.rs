//! The flat index: every stored entry's key, record offset and target as sorted arrays in
//! one byte buffer.
//!
//! The buffer is shared, never copied, between the ledger, its snapshots and history
//! readers, and a checkpoint holds exactly these bytes: loading one is a single read, after
//! which the arrays are used where they lie (a binary search decodes only the keys it
//! probes). Entries added later live in the ledger's small sorted map beside it and are
//! merged in from time to time ([`FlatIndex::merged`]).
//!
//! Four sections, each `len` items long, all little-endian:
//! keys (`at` u64 + digest 16 bytes, in key order), record offsets (u64), target ids (u32),
//! and the key positions in digest order (u32), which find an entry by digest alone.

use super::snapshot::SnapshotError;
use super::targets::NO_TARGET;
use crate::proto::digest::{Digest, Key};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::hlc::Hlc;
use std::cmp::Ordering;
use std::sync::Arc;

const KEY_BYTES: usize = 24;
const OFFSET_BYTES: usize = 8;
const TARGET_BYTES: usize = 4;
const POSITION_BYTES: usize = 4;
/// Bytes of all four sections per entry.
pub(super) const ENTRY_BYTES: usize = KEY_BYTES + OFFSET_BYTES + TARGET_BYTES + POSITION_BYTES;
/// Digest-order positions are sorted by bucket first (the digest's top bits, uniform since
/// digests are hashes), then within each small bucket: linear time instead of a sort of the
/// whole array, which matters at a million entries.
const BUCKET_BITS: u32 = 16;
/// Interpolation steps of a lookup by digest before a binary search takes over (see
/// [`FlatIndex::find_digest`]).
const INTERPOLATION_STEPS: u32 = 4;

/// One stored entry as the flat index holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlatEntry {
    /// Its key.
    pub(super) key: Key,
    /// Byte offset of its record in the log.
    pub(super) offset: u64,
    /// Its target's id (see `targets`).
    pub(super) target: u32,
}

/// Sorted arrays of stored entries, immutable once built; cloning shares the buffer.
#[derive(Clone, Default)]
pub(super) struct FlatIndex {
    buf: Arc<Vec<u8>>,
    /// Where the sections start in `buf` (a checkpoint's buffer holds more than them).
    start: usize,
    len: usize,
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex").field("len", &self.len).finish()
    }
}

impl FlatIndex {
    /// An index of `entries`, which must be in strictly increasing key order.
    #[cfg(test)]
    pub(super) fn build(entries: &[FlatEntry]) -> FlatIndex {
        debug_assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        write_sections(entries.len(), entries.iter().copied())
    }

    /// An index of the `len` entries `entries` yields, which must come in strictly
    /// increasing key order.
    pub(super) fn from_sorted(len: usize, entries: impl Iterator<Item = FlatEntry>) -> FlatIndex {
        write_sections(len, entries)
    }

    /// This index with `extra` added: `extra` in strictly increasing key order and
    /// disjoint from this index. Builds a new buffer; the old one lives on while shared.
    pub(super) fn merged(&self, extra: &[FlatEntry]) -> FlatIndex {
        let mut mine = (0..self.len).map(|i| self.entry(i)).peekable();
        let mut theirs = extra.iter().copied().peekable();
        let merged = std::iter::from_fn(move || match (mine.peek(), theirs.peek()) {
            (Some(a), Some(b)) if b.key < a.key => theirs.next(),
            (Some(_), _) => mine.next(),
            (None, _) => theirs.next(),
        });
        write_sections(self.len + extra.len(), merged)
    }

    /// The index whose sections start at `start` in `buf` and hold `len` entries, as
    /// [`FlatIndex::sections`] wrote them, and the fingerprint of its entries. Checks that
    /// they fit, that the keys are in strictly increasing order, that every digest-order
    /// position is in range and every target id below `targets` (or [`NO_TARGET`]), so no
    /// later lookup can go out of bounds or loop. One pass over the sections: at a million
    /// entries this runs on every start-up.
    pub(super) fn from_bytes(
        buf: Arc<Vec<u8>>,
        start: usize,
        len: usize,
        targets: usize,
    ) -> Result<(FlatIndex, Fingerprint), SnapshotError> {
        let end = len
            .checked_mul(ENTRY_BYTES)
            .and_then(|bytes| bytes.checked_add(start))
            .filter(|end| *end <= buf.len())
            .ok_or(SnapshotError::Truncated)?;
        let index = FlatIndex { buf, start, len };
        let sections = &index.buf[start..end];
        let (keys, rest) = sections.split_at(len * KEY_BYTES);
        let (_offsets, rest) = rest.split_at(len * OFFSET_BYTES);
        let (target_ids, positions) = rest.split_at(len * TARGET_BYTES);
        let mut fingerprint = Fingerprint::default();
        let mut previous: Option<(u64, u128)> = None;
        let entries = keys
            .chunks_exact(KEY_BYTES)
            .zip(target_ids.chunks_exact(TARGET_BYTES))
            .zip(positions.chunks_exact(POSITION_BYTES));
        for (i, ((key, target), position)) in entries.enumerate() {
            let at = le_u64(&key[..8]);
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&key[8..]);
            let digest = u128::from_be_bytes(digest);
            if previous.is_some_and(|previous| previous >= (at, digest)) {
                return Err(SnapshotError::Unsorted { position: i });
            }
            previous = Some((at, digest));
            fingerprint.add(digest);
            let target = le_u32(target);
            if (target as usize >= targets && target != NO_TARGET)
                || le_u32(position) as usize >= len
            {
                return Err(SnapshotError::BadPosition);
            }
        }
        Ok((index, fingerprint))
    }

    /// The four sections, as a checkpoint stores them.
    pub(super) fn sections(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len * ENTRY_BYTES]
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The key at position `i` (< `len`).
    pub(super) fn key(&self, i: usize) -> Key {
        let at = self.start + i * KEY_BYTES;
        let bytes = &self.buf[at..at + KEY_BYTES];
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&bytes[8..]);
        Key {
            at: Hlc(le_u64(&bytes[..8])),
            digest: Digest(digest),
        }
    }

    /// The record offset of the entry at position `i`.
    pub(super) fn offset(&self, i: usize) -> u64 {
        let at = self.start + self.len * KEY_BYTES + i * OFFSET_BYTES;
        le_u64(&self.buf[at..at + OFFSET_BYTES])
    }

    /// The target id of the entry at position `i`.
    pub(super) fn target(&self, i: usize) -> u32 {
        let at = self.start + self.len * (KEY_BYTES + OFFSET_BYTES) + i * TARGET_BYTES;
        le_u32(&self.buf[at..at + TARGET_BYTES])
    }

    /// The entry at position `i`.
    pub(super) fn entry(&self, i: usize) -> FlatEntry {
        FlatEntry {
            key: self.key(i),
            offset: self.offset(i),
            target: self.target(i),
        }
    }

    /// The key position of the `j`-th entry in digest order.
    fn position(&self, j: usize) -> usize {
        let at = self.start + self.len * (KEY_BYTES + OFFSET_BYTES + TARGET_BYTES);
        let at = at + j * POSITION_BYTES;
        le_u32(&self.buf[at..at + POSITION_BYTES]) as usize
    }

    /// The largest key.
    pub(super) fn last_key(&self) -> Option<Key> {
        self.len.checked_sub(1).map(|i| self.key(i))
    }

    /// The position of the first key not less than `key` (`len` if none).
    pub(super) fn lower_bound(&self, key: &Key) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < *key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether an entry with this key, if present, is here: whether `key` lies within
    /// the first and last keys. Entries merged from peers are mostly newer than all the
    /// stored ones, and this settles them without a search.
    pub(super) fn spans(&self, key: &Key) -> bool {
        self.len > 0 && self.key(0) <= *key && self.key(self.len - 1) >= *key
    }

    /// The position of `key`, if present.
    pub(super) fn find(&self, key: &Key) -> Option<usize> {
        let i = self.lower_bound(key);
        (i < self.len && self.key(i) == *key).then_some(i)
    }

    /// The position of the entry with this digest, if present.
    ///
    /// Digests are uniform, so the `j`-th in digest order has a prefix near `j / len` of the
    /// range: a few interpolation steps land within a handful of places (each step squares
    /// the error away), where a binary search would take ~20 steps, each a cache miss into
    /// the keys at a million entries. Crafted digests could bunch up and make the guesses
    /// poor, so after [`INTERPOLATION_STEPS`] a binary search finishes the job: never worse
    /// than a few steps more than one.
    pub(super) fn find_digest(&self, digest: &Digest) -> Option<usize> {
        let target = prefix(digest);
        let (mut lo, mut hi) = (0, self.len);
        // Every digest at positions lo..hi has a prefix within lo_prefix..=hi_prefix, and
        // so has the one sought, if present.
        let (mut lo_prefix, mut hi_prefix) = (0u64, u64::MAX);
        let mut steps = 0;
        while lo < hi {
            let mid = if steps < INTERPOLATION_STEPS && hi - lo > 8 {
                steps += 1;
                let span = u128::from(hi_prefix - lo_prefix) + 1;
                let offset = u128::from(target - lo_prefix) * (hi - lo) as u128 / span;
                lo + offset as usize
            } else {
                lo + (hi - lo) / 2
            };
            let i = self.position(mid);
            if i >= self.len {
                return None;
            }
            let found = self.key(i).digest;
            match found.cmp(digest) {
                Ordering::Less => (lo, lo_prefix) = (mid + 1, prefix(&found)),
                Ordering::Greater => (hi, hi_prefix) = (mid, prefix(&found)),
                Ordering::Equal => return Some(i),
            }
        }
        None
    }

    /// Fingerprint of the entries at positions `from..to`.
    pub(super) fn fingerprint(&self, from: usize, to: usize) -> Fingerprint {
        let mut fp = Fingerprint::default();
        for i in from..to.min(self.len) {
            fp.add(self.key(i).digest.as_u128());
        }
        fp
    }
}

/// The first 8 bytes of a digest as a number, in the same order as the whole digest.
fn prefix(digest: &Digest) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest.0[..8]);
    u64::from_be_bytes(word)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

/// Writes the four sections for `len` entries coming in key order.
fn write_sections(len: usize, entries: impl Iterator<Item = FlatEntry>) -> FlatIndex {
    let mut buf = vec![0u8; len * ENTRY_BYTES];
    let (keys, rest) = buf.split_at_mut(len * KEY_BYTES);
    let (offsets, rest) = rest.split_at_mut(len * OFFSET_BYTES);
    let (targets, positions) = rest.split_at_mut(len * TARGET_BYTES);
    let mut written = 0;
    for (i, entry) in entries.take(len).enumerate() {
        let key = &mut keys[i * KEY_BYTES..(i + 1) * KEY_BYTES];
        key[..8].copy_from_slice(&entry.key.at.0.to_le_bytes());
        key[8..].copy_from_slice(&entry.key.digest.0);
        offsets[i * OFFSET_BYTES..(i + 1) * OFFSET_BYTES]
            .copy_from_slice(&entry.offset.to_le_bytes());
        targets[i * TARGET_BYTES..(i + 1) * TARGET_BYTES]
            .copy_from_slice(&entry.target.to_le_bytes());
        written += 1;
    }
    debug_assert_eq!(written, len, "the iterator yields len entries");
    for (j, position) in digest_order(keys, len).into_iter().enumerate() {
        positions[j * POSITION_BYTES..(j + 1) * POSITION_BYTES]
            .copy_from_slice(&position.to_le_bytes());
    }
    FlatIndex {
        buf: Arc::new(buf),
        start: 0,
        len,
    }
}

/// The positions of the `len` keys in `keys` (the keys section), ordered by digest.
fn digest_order(keys: &[u8], len: usize) -> Vec<u32> {
    let digest = |i: usize| &keys[i * KEY_BYTES + 8..(i + 1) * KEY_BYTES];
    // The digest's first 8 bytes, big-endian: the same order as the whole digest's, which
    // breaks ties (a crafted collision of 64 bits is within reach; of 128 it is not).
    let prefix = |i: usize| u64::from_be_bytes(digest(i)[..8].try_into().unwrap_or([0; 8]));
    let compare = |a: &(u64, u32), b: &(u64, u32)| {
        a.0.cmp(&b.0)
            .then_with(|| digest(a.1 as usize).cmp(digest(b.1 as usize)))
    };
    let buckets = 1usize << BUCKET_BITS;
    let mut pairs = vec![(0u64, 0u32); len];
    if len < buckets {
        for (i, pair) in pairs.iter_mut().enumerate() {
            *pair = (prefix(i), i as u32);
        }
        pairs.sort_unstable_by(compare);
    } else {
        let bucket = |p: u64| (p >> (64 - BUCKET_BITS)) as usize;
        let mut next = vec![0usize; buckets + 1];
        for i in 0..len {
            next[bucket(prefix(i)) + 1] += 1;
        }
        for b in 0..buckets {
            next[b + 1] += next[b];
        }
        let starts = next.clone();
        for i in 0..len {
            let p = prefix(i);
            let slot = &mut next[bucket(p)];
            pairs[*slot] = (p, i as u32);
            *slot += 1;
        }
        for b in 0..buckets {
            pairs[starts[b]..starts[b + 1]].sort_unstable_by(compare);
        }
    }
    pairs.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(at: u64, seed: u64) -> Key {
        let mut digest = [0u8; 16];
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ at;
        for byte in &mut digest {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        Key {
            at: Hlc(at),
            digest: Digest(digest),
        }
    }

    fn entries(n: u64) -> Vec<FlatEntry> {
        let mut all: Vec<FlatEntry> = (0..n)
            .map(|i| FlatEntry {
                key: key(i / 3, i),
                offset: 16 + i * 70,
                target: (i % 7) as u32,
            })
            .collect();
        all.sort_by_key(|e| e.key);
        all
    }

    #[test]
    fn lookups_by_key_and_by_digest_find_every_entry() {
        // Below and above the size where digest order is bucketed.
        for n in [0u64, 1, 2, 100, 70_000] {
            let all = entries(n);
            let flat = FlatIndex::build(&all);
            assert_eq!(flat.len(), all.len());
            for (i, e) in all.iter().enumerate() {
                assert_eq!(flat.entry(i), *e);
                assert_eq!(flat.find(&e.key), Some(i));
                assert_eq!(flat.find_digest(&e.key.digest), Some(i));
            }
            assert_eq!(flat.find_digest(&key(u64::MAX, 1).digest), None);
            assert_eq!(flat.lower_bound(&Key::MAX), all.len());
            assert_eq!(flat.last_key(), all.last().map(|e| e.key));
        }
    }

    /// Digests a sender ground to share their leading bytes (or equal up to the last one)
    /// make the interpolation guess badly; the binary search after it still finds them all.
    #[test]
    fn bunched_digests_are_found_too() {
        for shared in [6usize, 15] {
            let mut all: Vec<FlatEntry> = (0..3000u64)
                .map(|i| {
                    let mut k = key(i, i);
                    k.digest.0[..shared].fill(0);
                    if i % 3 == 0 {
                        // A few outliers at the far end stretch the interpolated range.
                        k.digest.0[0] = 0xff;
                    }
                    FlatEntry {
                        key: k,
                        offset: i,
                        target: 0,
                    }
                })
                .collect();
            // One entry per digest, as in a ledger.
            all.sort_by_key(|e| e.key.digest);
            all.dedup_by_key(|e| e.key.digest);
            all.sort_by_key(|e| e.key);
            let flat = FlatIndex::build(&all);
            for (i, e) in all.iter().enumerate() {
                assert_eq!(flat.find_digest(&e.key.digest), Some(i), "{shared}: {i}");
            }
            let mut absent = all[7].key.digest;
            absent.0[15] ^= 0x80;
            if all.iter().all(|e| e.key.digest != absent) {
                assert_eq!(flat.find_digest(&absent), None);
            }
        }
    }

    #[test]
    fn merging_keeps_order_and_reloading_the_bytes_gives_the_same_index() {
        let all = entries(500);
        let even: Vec<FlatEntry> = all.iter().step_by(2).copied().collect();
        let odd: Vec<FlatEntry> = all.iter().skip(1).step_by(2).copied().collect();
        let merged = FlatIndex::build(&even).merged(&odd);
        assert_eq!((0..500).map(|i| merged.entry(i)).collect::<Vec<_>>(), all);

        let mut bytes = vec![7u8; 3];
        bytes.extend_from_slice(merged.sections());
        let (reloaded, fingerprint) =
            FlatIndex::from_bytes(Arc::new(bytes.clone()), 3, 500, 7).unwrap();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(reloaded.entry(i), *e);
            assert_eq!(reloaded.find_digest(&e.key.digest), Some(i));
        }
        let expected = all.iter().fold(Fingerprint::default(), |mut fp, e| {
            fp.add(e.key.digest.as_u128());
            fp
        });
        assert_eq!(reloaded.fingerprint(0, 500), expected);
        assert_eq!(fingerprint, expected);
        assert!(matches!(
            FlatIndex::from_bytes(Arc::new(bytes), 3, 500, 6),
            Err(SnapshotError::BadPosition)
        ));
    }

    #[test]
    fn bad_bytes_are_refused_not_a_panic() {
        let flat = FlatIndex::build(&entries(50));
        let good = flat.sections().to_vec();
        assert!(matches!(
            FlatIndex::from_bytes(Arc::new(good[..good.len() - 1].to_vec()), 0, 50, 7),
            Err(SnapshotError::Truncated)
        ));
        assert!(matches!(
            FlatIndex::from_bytes(Arc::new(good.clone()), 0, usize::MAX / 2, 7),
            Err(SnapshotError::Truncated)
        ));
        let mut swapped = good.clone();
        swapped.copy_within(KEY_BYTES..2 * KEY_BYTES, 0);
        assert!(matches!(
            FlatIndex::from_bytes(Arc::new(swapped), 0, 50, 7),
            Err(SnapshotError::Unsorted { position: 1 })
        ));
        let mut position_out_of_range = good;
        let last = position_out_of_range.len() - 4;
        position_out_of_range[last..].copy_from_slice(&50u32.to_le_bytes());
        assert!(matches!(
            FlatIndex::from_bytes(Arc::new(position_out_of_range), 0, 50, 7),
            Err(SnapshotError::BadPosition)
        ));
    }
}
