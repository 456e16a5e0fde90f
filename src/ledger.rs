//! The replayed ledger: every entry in (at, id) order, the totals they sum to, and the set
//! fingerprints that sync compares.
//!
//! Totals are sums of deltas, so they never depend on arrival order; history views (running
//! totals) do depend on order, which is why everything iterates in [`Key`] order.

use crate::entry::{Entry, EntryId, Key};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// A summary of a set of entries: how many there are and the sum of their 128-bit digests
/// (mod 2^128). Sums subtract and add, so fingerprints of adjacent ranges combine, and two
/// sets are equal exactly when their fingerprints are (up to a hash collision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Number of entries in the set.
    pub count: u64,
    /// Wrapping sum of the entries' digests.
    pub sum: u128,
}

impl Fingerprint {
    /// Adds one entry's digest.
    pub fn add(&mut self, digest: u128) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(digest);
    }

    /// A short hex form for logs and status output.
    pub fn short(&self) -> String {
        format!("{}:{:08x}", self.count, (self.sum >> 96) as u32)
    }
}

/// One entry kept in memory with its digest (cached because fingerprints are recomputed
/// over ranges during every reconciliation).
#[derive(Clone, Debug)]
struct Stored {
    entry: Entry,
    digest: u128,
}

/// One line of a player's (or the whole log's) history: the entry plus the total that
/// replaying the log gives right after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// The entry itself.
    pub entry: Entry,
    /// The target's replayed total after this entry (may differ from `entry.new_total`,
    /// which is what the author saw when offline edits had not yet merged).
    pub total: i64,
}

/// The replayed log: entries by key, an id index for duplicate detection, and totals.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    entries: BTreeMap<Key, Stored>,
    ids: HashMap<EntryId, Key>,
    totals: BTreeMap<String, i64>,
    fingerprint: Fingerprint,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Builds a ledger from stored entries (any order). Returns it and how many entries were
    /// skipped as duplicates of an id already present.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> (Ledger, usize) {
        let mut ledger = Ledger::new();
        let mut duplicates = 0;
        for entry in entries {
            if !ledger.insert(entry) {
                duplicates += 1;
            }
        }
        (ledger, duplicates)
    }

    /// Adds an entry if its id is new. Returns false (and changes nothing) for a duplicate.
    pub fn insert(&mut self, entry: Entry) -> bool {
        if self.ids.contains_key(&entry.id) {
            return false;
        }
        let key = entry.key();
        let digest = entry.digest();
        // Wrapping addition is associative and commutative, so totals are identical on every
        // peer whatever order entries arrive in (deltas are bounded, so it never wraps in
        // practice).
        // Looked up before inserting so the name is only cloned for a new player.
        match self.totals.get_mut(&entry.target) {
            Some(total) => *total = total.wrapping_add(entry.delta),
            None => {
                self.totals.insert(entry.target.clone(), entry.delta);
            }
        }
        self.fingerprint.add(digest);
        self.ids.insert(entry.id, key);
        self.entries.insert(key, Stored { entry, digest });
        true
    }

    /// Whether an entry with this id is present.
    pub fn contains_id(&self, id: &EntryId) -> bool {
        self.ids.contains_key(id)
    }

    /// The entry with this id, if present.
    pub fn get_by_id(&self, id: &EntryId) -> Option<&Entry> {
        self.ids
            .get(id)
            .and_then(|key| self.entries.get(key))
            .map(|s| &s.entry)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ledger holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fingerprint of the whole set (kept up to date on insert).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The largest key present.
    pub fn newest(&self) -> Option<Key> {
        self.entries.keys().next_back().copied()
    }

    fn range_iter(&self, lower: Key, upper: Key) -> impl Iterator<Item = &Stored> + '_ {
        // An inverted range is treated as empty rather than panicking: ranges come from peers.
        let (lower, upper) = if lower <= upper {
            (lower, upper)
        } else {
            (upper, upper)
        };
        self.entries
            .range((Bound::Included(lower), Bound::Excluded(upper)))
            .map(|(_, s)| s)
    }

    /// Fingerprint of the entries with `lower <= key < upper`.
    pub fn range_fingerprint(&self, lower: Key, upper: Key) -> Fingerprint {
        if lower == Key::MIN && upper == Key::MAX {
            return self.fingerprint;
        }
        let mut fp = Fingerprint::default();
        for stored in self.range_iter(lower, upper) {
            fp.add(stored.digest);
        }
        fp
    }

    /// Entries with `lower <= key < upper`, in key order.
    pub fn range(&self, lower: Key, upper: Key) -> impl Iterator<Item = &Entry> + '_ {
        self.range_iter(lower, upper).map(|s| &s.entry)
    }

    /// Splits `[lower, upper)` into at most `parts` sub-ranges holding about equal numbers
    /// of this ledger's entries. The sub-ranges are contiguous and cover the whole range.
    pub fn split(&self, lower: Key, upper: Key, parts: usize) -> Vec<(Key, Key)> {
        let count = self.range_iter(lower, upper).count();
        let parts = parts.max(1).min(count.max(1));
        let mut bounds = Vec::with_capacity(parts);
        let mut start = lower;
        if parts > 1 {
            for (index, (key, _)) in self
                .entries
                .range((Bound::Included(lower), Bound::Excluded(upper)))
                .enumerate()
            {
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

    /// Current totals by player, derived from every entry.
    pub fn totals(&self) -> &BTreeMap<String, i64> {
        &self.totals
    }

    /// One player's current total (0 if never adjusted).
    pub fn total(&self, player: &str) -> i64 {
        self.totals.get(player).copied().unwrap_or(0)
    }

    /// All entries in replay order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.values().map(|s| &s.entry)
    }

    /// History in replay order with the running total of each entry's target, optionally
    /// for one player only.
    pub fn history(&self, player: Option<&str>) -> Vec<HistoryRow> {
        let mut running: HashMap<&str, i64> = HashMap::new();
        let mut rows = Vec::new();
        for stored in self.entries.values() {
            let e = &stored.entry;
            let total = running.entry(e.target.as_str()).or_insert(0);
            *total = total.wrapping_add(e.delta);
            if player.is_none_or(|p| p == e.target) {
                rows.push(HistoryRow {
                    entry: e.clone(),
                    total: *total,
                });
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{new_entry_id, Hlc};

    fn entry(ms: u64, seed: u8, target: &str, delta: i64) -> Entry {
        Entry {
            id: new_entry_id(ms, [seed; 10]),
            at: Hlc::new(ms, 0),
            actor: "officer".into(),
            target: target.into(),
            delta,
            new_total: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn totals_are_sums_independent_of_insert_order() {
        let entries = vec![
            entry(3, 1, "Bob", 5),
            entry(1, 2, "Alice", 30),
            entry(2, 3, "Bob", -10),
            entry(4, 4, "Alice", 1),
        ];
        let (a, _) = Ledger::from_entries(entries.clone());
        let (b, _) = Ledger::from_entries(entries.into_iter().rev());
        assert_eq!(a.totals(), b.totals());
        assert_eq!(a.total("Alice"), 31);
        assert_eq!(a.total("Bob"), -5);
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn duplicates_are_skipped() {
        let e = entry(1, 1, "Bob", 5);
        let (ledger, dups) = Ledger::from_entries(vec![e.clone(), e.clone()]);
        assert_eq!(dups, 1);
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger.total("Bob"), 5);
    }

    #[test]
    fn history_has_running_totals_in_key_order() {
        let (ledger, _) = Ledger::from_entries(vec![
            entry(3, 1, "Bob", 5),
            entry(1, 2, "Bob", 30),
            entry(2, 3, "Alice", 7),
        ]);
        let rows = ledger.history(Some("Bob"));
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].entry.delta, rows[0].total), (30, 30));
        assert_eq!((rows[1].entry.delta, rows[1].total), (5, 35));
        assert_eq!(ledger.history(None).len(), 3);
    }

    #[test]
    fn range_fingerprints_add_up() {
        let (ledger, _) = Ledger::from_entries((1..=100).map(|i| entry(i, i as u8, "P", 1)));
        let parts = ledger.split(Key::MIN, Key::MAX, 16);
        assert_eq!(parts.len(), 16);
        assert_eq!(parts[0].0, Key::MIN);
        assert_eq!(parts.last().unwrap().1, Key::MAX);
        let mut sum = Fingerprint::default();
        for w in parts.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous");
        }
        for (lo, hi) in &parts {
            let fp = ledger.range_fingerprint(*lo, *hi);
            assert!(fp.count >= 6 && fp.count <= 7, "balanced: {}", fp.count);
            sum.count += fp.count;
            sum.sum = sum.sum.wrapping_add(fp.sum);
        }
        assert_eq!(sum, ledger.fingerprint());
    }

    #[test]
    fn split_of_small_or_empty_range_is_whole_range() {
        let (ledger, _) = Ledger::from_entries((1..=3).map(|i| entry(i, i as u8, "P", 1)));
        assert_eq!(ledger.split(Key::MIN, Key::MAX, 16).len(), 3);
        let empty = Ledger::new();
        assert_eq!(
            empty.split(Key::MIN, Key::MAX, 16),
            vec![(Key::MIN, Key::MAX)]
        );
    }

    #[test]
    fn inverted_range_is_empty_not_a_panic() {
        let (ledger, _) = Ledger::from_entries((1..=3).map(|i| entry(i, i as u8, "P", 1)));
        assert_eq!(ledger.range_fingerprint(Key::MAX, Key::MIN).count, 0);
        assert_eq!(ledger.range(Key::MAX, Key::MIN).count(), 0);
    }
}
