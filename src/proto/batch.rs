//! Entries as their encodings, the way a merge hands them to the log.
//!
//! A merge needs each entry it takes in encoded twice over: hashed for its digest, and
//! written as its log record's payload. [`EncodedBatch`] encodes each entry once, hashes
//! those bytes and keeps them, so the log frames them as they are and the entry itself can
//! move into the ledger instead of being cloned for the append.

use crate::proto::digest::Key;
use crate::proto::entry::{digest_of_encoding, Entry, EntryError, EntryKind};

/// Valid entries, each as its encoding (`postcard(Entry)`: what its digest hashes and what
/// its log record holds), back to back, with their keys.
///
/// Only [`EncodedBatch::stage`] adds bytes, and only for an entry that passes
/// [`Entry::validate`], so every payload is one the log's reader accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedBatch {
    /// The kept entries' encodings, then the staged one's (if any).
    bytes: Vec<u8>,
    /// Where each kept entry's encoding ends in `bytes`.
    ends: Vec<usize>,
    /// `keys[i]` is the key of the i-th kept entry.
    keys: Vec<Key>,
    /// The staged entry's key and whether it changes the roster.
    staged: Option<(Key, bool)>,
    /// Whether some kept entry changes the officer roster.
    roster_changes: bool,
}

impl EncodedBatch {
    /// An empty batch with room for about `entries` entries.
    pub fn with_capacity(entries: usize) -> EncodedBatch {
        EncodedBatch {
            // About what a typical entry encodes to; a longer one only grows the buffer.
            bytes: Vec::with_capacity(entries * 128),
            ends: Vec::with_capacity(entries),
            keys: Vec::with_capacity(entries),
            ..EncodedBatch::default()
        }
    }

    /// The batch of `entries`, in order; the first invalid entry is an error.
    pub fn of(entries: &[Entry]) -> Result<EncodedBatch, EntryError> {
        let mut batch = EncodedBatch::with_capacity(entries.len());
        for entry in entries {
            batch.push(entry)?;
        }
        Ok(batch)
    }

    /// Encodes `entry` after the kept entries, replacing an entry staged before and not
    /// kept, and returns its key (hashed from that encoding). It joins the batch only with
    /// [`EncodedBatch::keep`]: a merge stages every entry it receives and keeps the new ones.
    /// An invalid entry is an error, and nothing is staged.
    pub fn stage(&mut self, entry: &Entry) -> Result<Key, EntryError> {
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
        self.staged = None;
        entry.validate()?;
        let start = self.bytes.len();
        entry.encode_into(&mut self.bytes);
        let key = Key {
            at: entry.at,
            digest: digest_of_encoding(&self.bytes[start..]),
        };
        self.staged = Some((key, entry.kind != EntryKind::Points));
        Ok(key)
    }

    /// Keeps the entry staged last (nothing if none is).
    pub fn keep(&mut self) {
        if let Some((key, roster)) = self.staged.take() {
            self.ends.push(self.bytes.len());
            self.keys.push(key);
            self.roster_changes |= roster;
        }
    }

    /// Stages and keeps `entry`; returns its key.
    pub fn push(&mut self, entry: &Entry) -> Result<Key, EntryError> {
        let key = self.stage(entry)?;
        self.keep();
        Ok(key)
    }

    /// How many entries were kept.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no entry was kept.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The kept entries' keys, in order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Whether some kept entry changes the officer roster (is not a point adjustment).
    pub fn has_roster_changes(&self) -> bool {
        self.roster_changes
    }

    /// The kept entries' encodings, in order.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
            &self.bytes[start..self.ends[i]]
        })
    }

    /// The kept entries, decoded again (for the few who want them whole, such as tests and
    /// observers).
    pub fn decode(&self) -> Result<Vec<Entry>, postcard::Error> {
        self.payloads().map(postcard::from_bytes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::hlc::Hlc;
    use crate::testing::EntryBuilder;

    fn entry(i: u64) -> Entry {
        EntryBuilder::at_ms(1_700_000_000_000 + i)
            .id_random([i as u8; 10])
            .actor("alice")
            .target(if i.is_multiple_of(2) { "Bob" } else { "Ümit" })
            .delta(i as i64 + 1)
            .reason("r".repeat(i as usize % 30 * 7))
            .build()
    }

    /// Each payload is the entry's own encoding byte for byte, each key its key, and
    /// staged entries that were not kept leave nothing behind.
    #[test]
    fn payloads_are_the_encodings_and_keys_the_keys() {
        let mut batch = EncodedBatch::with_capacity(2);
        let mut kept = Vec::new();
        for i in 0..20 {
            let e = entry(i);
            assert_eq!(batch.stage(&e), Ok(e.key()));
            if i % 3 != 1 {
                batch.keep();
                kept.push(e);
            }
        }
        // One more staged, not kept.
        assert_eq!(batch.stage(&entry(99)), Ok(entry(99).key()));
        assert_eq!(batch.len(), kept.len());
        let keys: Vec<Key> = kept.iter().map(Entry::key).collect();
        assert_eq!(batch.keys(), keys);
        let payloads: Vec<Vec<u8>> = batch.payloads().map(<[u8]>::to_vec).collect();
        let expected: Vec<Vec<u8>> = kept
            .iter()
            .map(|e| postcard::to_stdvec(e).unwrap())
            .collect();
        assert_eq!(payloads, expected);
        assert_eq!(batch.decode().unwrap(), kept);
        assert!(!batch.has_roster_changes());
        // Keeping twice keeps once.
        batch.keep();
        batch.keep();
        assert_eq!(batch.len(), kept.len() + 1);
        assert_eq!(batch.decode().unwrap().last(), Some(&entry(99)));
    }

    #[test]
    fn an_invalid_entry_is_refused_and_stages_nothing() {
        let mut batch = EncodedBatch::default();
        batch.push(&entry(1)).unwrap();
        batch.stage(&entry(2)).unwrap();
        let mut bad = entry(3);
        bad.at = Hlc(u64::MAX);
        assert!(matches!(
            batch.stage(&bad),
            Err(EntryError::BadTimestamp(_))
        ));
        batch.keep();
        assert_eq!(batch.decode().unwrap(), vec![entry(1)]);
        assert_eq!(
            EncodedBatch::of(&[entry(1), bad]).map(|b| b.len()),
            Err(EntryError::BadTimestamp(u64::MAX))
        );
    }

    #[test]
    fn roster_changes_are_noticed() {
        let mut roster = entry(1);
        roster.delta = 0;
        roster.kind = EntryKind::OfficerRemove;
        let batch = EncodedBatch::of(&[entry(2), roster]).unwrap();
        assert!(batch.has_roster_changes());
    }
}
