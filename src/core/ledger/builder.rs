//! Building the ledger of a log being scanned, one record at a time, so start-up never
//! holds every entry in memory at once.

use super::index::{EntryReader, Slot};
use super::Ledger;
use crate::proto::digest::Key;
use crate::proto::entry::Entry;
use std::sync::Arc;

/// Builds an index-only ledger while a log is scanned, keeping per record only its key and
/// offset.
#[derive(Default)]
pub struct LedgerBuilder {
    ledger: Ledger,
    slots: Vec<(Key, Slot)>,
    duplicates: usize,
}

impl LedgerBuilder {
    /// An empty builder.
    pub fn new() -> LedgerBuilder {
        LedgerBuilder {
            ledger: Ledger::default(),
            slots: Vec::new(),
            duplicates: 0,
        }
    }

    /// Adds the entry whose record is at `offset`; only its key and offset are kept.
    /// Returns false for a repeated record (same digest: the first record wins).
    pub fn push(&mut self, entry: &Entry, offset: u64) -> bool {
        let digest = entry.digest();
        // Merged once in `finish`, not as the map grows.
        if !self.ledger.index.insert_digest(digest, entry.at, false) {
            self.duplicates += 1;
            return false;
        }
        // The builder's ledger has no root key yet, so judging needs no key order here;
        // setting the root afterwards replays in order.
        let key = Key {
            at: entry.at,
            digest,
        };
        self.ledger.account(entry, key);
        self.slots.push((key, Slot::stored_at(offset)));
        true
    }

    /// The ledger, reading bodies through `reader`, and how many records repeated an
    /// earlier id.
    pub fn finish(mut self, reader: Arc<dyn EntryReader>) -> (Ledger, usize) {
        self.ledger.index.finish_bulk_load(self.slots, reader);
        (self.ledger, self.duplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::test_support::{entry, MemoryReader};

    fn mixed_entries() -> Vec<Entry> {
        (1..=60)
            .map(|i| {
                entry(
                    i * 7 % 61,
                    i as u8,
                    ["Ann", "Bo", "Cy"][i as usize % 3],
                    i as i64,
                )
            })
            .collect()
    }

    #[test]
    fn index_only_ledger_answers_like_the_in_memory_one() {
        let entries = mixed_entries();
        let (memory, _) = Ledger::from_entries(entries.clone());
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for (i, e) in entries.iter().enumerate() {
            let offset = 1000 + i as u64 * 100;
            reader.put(offset, e.clone());
            assert!(builder.push(e, offset));
        }
        assert!(
            !builder.push(&entries[3], 99),
            "a repeated record is a duplicate"
        );
        let (indexed, duplicates) = builder.finish(reader.clone());
        assert_eq!(duplicates, 1);
        assert_eq!(indexed.resident_len(), 0, "no body is held in memory");
        assert_eq!(reader.reads.load(std::sync::atomic::Ordering::Relaxed), 0);

        assert_eq!(indexed.len(), memory.len());
        assert_eq!(indexed.fingerprint(), memory.fingerprint());
        assert_eq!(indexed.totals(), memory.totals());
        assert_eq!(indexed.newest(), memory.newest());
        assert_eq!(
            indexed.iter().collect::<Vec<_>>(),
            memory.iter().collect::<Vec<_>>()
        );
        assert_eq!(indexed.history(Some("Bo")), memory.history(Some("Bo")));
        assert_eq!(indexed.history(None), memory.history(None));
        let parts = indexed.split(Key::MIN, Key::MAX, 4);
        assert_eq!(parts, memory.split(Key::MIN, Key::MAX, 4));
        for (lo, hi) in parts {
            assert_eq!(
                indexed.range_fingerprint(lo, hi),
                memory.range_fingerprint(lo, hi)
            );
            assert_eq!(
                indexed.range_keys(lo, hi).collect::<Vec<_>>(),
                memory.range_keys(lo, hi).collect::<Vec<_>>()
            );
        }
        let e = &entries[10];
        assert_eq!(indexed.get(&e.digest()).as_ref(), Some(e));

        // Stopping early reads no more bodies than were used.
        let before = reader.reads.load(std::sync::atomic::Ordering::Relaxed);
        let first_two: Vec<Entry> = indexed.range(Key::MIN, Key::MAX).take(2).collect();
        assert_eq!(first_two.len(), 2);
        assert_eq!(
            reader.reads.load(std::sync::atomic::Ordering::Relaxed) - before,
            2
        );
    }
}
