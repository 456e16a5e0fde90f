//! Building the ledger of a log being scanned, one record at a time, so start-up never
//! holds every entry in memory at once.
//!
//! A scan judges nothing yet (no root key is set; setting it afterwards replays in key
//! order), so the builder only collects each record's key, offset, target and delta and does
//! the rest once, at the end: one sort puts the records in key order and brings repeated
//! records (same digest, hence same key) together, where the first one in the file wins.
//! No hash table is built per entry.

use super::flat::{FlatEntry, FlatIndex};
use super::index::{EntryIndex, EntryReader};
use super::replay::ReplayState;
use super::targets::{Targets, NO_TARGET};
use super::Ledger;
use crate::proto::digest::Key;
use crate::proto::entry::{Entry, EntryKind};
use crate::proto::fingerprint::Fingerprint;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the builder keeps of one record until the end.
struct Scanned {
    key: Key,
    offset: u64,
    target: u32,
    /// The delta of a point entry; `None` for a roster entry.
    delta: Option<i64>,
}

/// Builds an index-only ledger while a log is scanned, keeping per record only its key,
/// offset, target and delta.
#[derive(Default)]
pub struct LedgerBuilder {
    records: Vec<Scanned>,
    targets: Targets,
    /// Point entries whose target got no id (the name table is full, which takes billions
    /// of names): their names are kept here so they still count.
    unnamed: Vec<(Key, u64, String, i64)>,
}

impl LedgerBuilder {
    /// An empty builder.
    pub fn new() -> LedgerBuilder {
        LedgerBuilder::default()
    }

    /// Adds the entry whose record is at `offset`. A record repeating an earlier one (same
    /// digest) is dropped when the ledger is built; the first in the file wins.
    pub fn push(&mut self, entry: &Entry, offset: u64) {
        self.push_keyed(entry, entry.key(), offset);
    }

    /// [`LedgerBuilder::push`] for a caller that has the entry's key (`entry.key()`)
    /// already: a scan hashes each record's bytes once.
    pub fn push_keyed(&mut self, entry: &Entry, key: Key, offset: u64) {
        debug_assert_eq!(key, entry.key());
        let target = self.targets.intern(&entry.target);
        let delta = (entry.kind == EntryKind::Points).then_some(entry.delta);
        if let (NO_TARGET, Some(delta)) = (target, delta) {
            self.unnamed
                .push((key, offset, entry.target.clone(), delta));
        }
        self.records.push(Scanned {
            key,
            offset,
            target,
            delta,
        });
    }

    /// The ledger, reading bodies through `reader`, and how many records repeated an
    /// earlier one.
    pub fn finish(self, reader: Arc<dyn EntryReader>) -> (Ledger, usize) {
        let LedgerBuilder {
            mut records,
            targets,
            unnamed,
        } = self;
        records.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.offset.cmp(&b.offset)));
        let before = records.len();
        // Equal keys mean equal digests: the same entry. Keeps the first of each run, the
        // one with the smallest offset.
        records.dedup_by(|later, first| later.key == first.key);
        let duplicates = before - records.len();

        // Judged as an open roster: every point entry counts, every roster entry is
        // rejected (see `ReplayState::account` without a root key).
        let mut sums: Vec<Option<i64>> = vec![None; targets.len()];
        let mut roster_keys = BTreeSet::new();
        let mut fingerprint = Fingerprint::default();
        for record in &records {
            fingerprint.add(record.key.digest.as_u128());
            match record.delta {
                None => {
                    roster_keys.insert(record.key);
                }
                Some(delta) => {
                    if let Some(sum) = sums.get_mut(record.target as usize) {
                        *sum = Some(sum.unwrap_or(0).wrapping_add(delta));
                    }
                }
            }
        }
        let mut totals: BTreeMap<String, i64> = targets
            .names()
            .zip(sums)
            .filter_map(|(name, sum)| sum.map(|sum| (name.to_string(), sum)))
            .collect();
        for (key, offset, name, delta) in unnamed {
            // Counted only if this record is the one kept for its key.
            if let Ok(at) = records.binary_search_by(|r| r.key.cmp(&key)) {
                if records[at].offset == offset {
                    let total = totals.entry(name).or_insert(0);
                    *total = total.wrapping_add(delta);
                }
            }
        }
        // Written straight from the records: no second per-entry copy at the peak.
        let flat = FlatIndex::from_sorted(
            records.len(),
            records.iter().map(|record| FlatEntry {
                key: record.key,
                offset: record.offset,
                target: record.target,
            }),
        );
        drop(records);
        let index = EntryIndex::from_flat(flat, targets, reader);
        let ledger = Ledger {
            index,
            fingerprint,
            replay: ReplayState::open_roster(totals, roster_keys),
            batching: false,
            replay_after_batch: false,
            deferral: Default::default(),
        };
        (ledger, duplicates)
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
            builder.push(e, offset);
        }
        // A repeated record is a duplicate; the first one (here the earlier offset) wins.
        builder.push(&entries[3], 99_999);
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
