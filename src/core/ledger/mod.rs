//! The replayed ledger: every entry in (at, digest) order, the totals they sum to, and the set
//! fingerprints that sync compares.
//!
//! The ledger keeps a compact index in memory: per entry its key, digest and where its body
//! is. A body is either held in memory (entries just made or merged, and every entry when no
//! reader is injected, as in the simulator) or read back on demand through an injected
//! [`EntryReader`] (the daemon's reads the log file). The sans-IO core never touches a file
//! itself; it only calls the reader it was given.
//!
//! Totals are sums of deltas, so they never depend on arrival order; history views (running
//! totals) do depend on order, which is why everything iterates in [`Key`] order.
//!
//! - `flat`: the stored entries' keys, offsets and targets as flat sorted arrays.
//! - `targets`: target names as small numbers, so one player's entries are found unread.
//! - `index`: the flat index plus the entries added since, the digest index and reading
//!   bodies back.
//! - `replay`: judging entries under the officer roster, totals, and replays.
//! - `deferred`: replays handed out to run off the caller's thread.
//! - `builder`: the index-only ledger built while a log is scanned.
//! - `history`: history rows, also from a snapshot taken off the event loop.
//! - [`revert`]: the link from a reverting entry to the entry it reverts.
//! - `snapshot`: a ledger as a checkpoint holds it, and back.

mod builder;
mod deferred;
mod flat;
mod history;
mod index;
mod replay;
pub mod revert;
mod snapshot;
mod targets;
#[cfg(test)]
mod test_support;

use crate::core::roster::plan::RosterView;
use crate::proto::digest::{Digest, Key};
use crate::proto::entry::Entry;
use crate::proto::fingerprint::Fingerprint;
use crate::proto::keys::PublicKey;
pub use builder::LedgerBuilder;
use deferred::{Deferral, Finished};
pub use deferred::{ReplayJob, ReplayResult};
pub use history::{HistoryRow, HistorySource};
use index::EntryIndex;
pub use index::{BodyReadError, EntryReader};
use replay::{ReplayNeed, ReplayState};
pub use snapshot::{EncodedSnapshot, LedgerSnapshot, SnapshotError, SNAPSHOT_VERSION};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The replayed log: a sorted index of every entry (key and location), a digest index for
/// duplicate detection, running totals and the set fingerprint.
#[derive(Clone, Default)]
pub struct Ledger {
    index: EntryIndex,
    fingerprint: Fingerprint,
    /// Totals, verdicts and the roster state that judges new entries.
    replay: ReplayState,
    /// While true (during a merge of many entries), a roster change that needs a replay
    /// only sets `replay_after_batch`; [`Ledger::end_batch`] replays once (or hands the
    /// replay out, when deferred).
    batching: bool,
    replay_after_batch: bool,
    /// Replays handed out to run elsewhere, when deferred ([`Ledger::defer_replays`]).
    deferral: Deferral,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("entries", &self.index.len())
            .field("resident", &self.index.resident_len())
            .field("reader", &self.index.reader().is_some())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
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

    /// Sets the reader that entry bodies marked with [`Ledger::mark_stored`] are read through.
    pub fn set_reader(&mut self, reader: Arc<dyn EntryReader>) {
        self.index.set_reader(reader);
    }

    /// Adds an entry if its digest is new, holding its body in memory until
    /// [`Ledger::mark_stored`] says where the log has it. Returns false (and changes
    /// nothing) for a duplicate.
    pub fn insert(&mut self, entry: Entry) -> bool {
        self.insert_keyed(entry.key(), entry)
    }

    /// [`Ledger::insert`] for a caller that already computed `key` (`entry.key()`), which
    /// saves hashing the entry again.
    pub fn insert_keyed(&mut self, key: Key, entry: Entry) -> bool {
        debug_assert_eq!(key, entry.key());
        if self.index.in_base(&key) {
            return false;
        }
        self.place_resident(key, entry)
    }

    /// [`Ledger::insert_keyed`] for an entry the caller has just found absent
    /// ([`Ledger::contains_key`]): the merge looks each digest up in the flat index once,
    /// not twice.
    pub(crate) fn insert_absent(&mut self, key: Key, entry: Entry) {
        debug_assert_eq!(key, entry.key());
        debug_assert!(!self.contains_key(&key));
        self.place_resident(key, entry);
    }

    /// Indexes an entry absent from the flat index, moving its body in; false for a
    /// duplicate of one in the overlay.
    fn place_resident(&mut self, key: Key, entry: Entry) -> bool {
        let Some(entry) = self.index.insert_resident(key, entry) else {
            return false;
        };
        self.fingerprint.add(key.digest.as_u128());
        let need = self.replay.account(entry, key);
        self.replay_if(key, need);
        true
    }

    /// Adds an entry read from the log at `offset` (the part of a log past a checkpoint) if
    /// its digest is new, keeping only where it is. Without a reader the body is held in
    /// memory instead. Returns false (and changes nothing) for a duplicate.
    pub(crate) fn insert_stored(&mut self, key: Key, entry: &Entry, offset: u64) -> bool {
        debug_assert_eq!(key, entry.key());
        if self.index.reader().is_none() {
            return self.insert_keyed(key, entry.clone());
        }
        if self.index.in_base(&key) || !self.index.insert_stored(key, &entry.target, offset) {
            return false;
        }
        let need = self.account(entry, key);
        self.replay_if(key, need);
        true
    }

    /// Replays the log if the entry just indexed at `key` may have changed verdicts.
    fn replay_if(&mut self, key: Key, need: ReplayNeed) {
        let needed = match need {
            ReplayNeed::None => false,
            // A roster change after every entry held (the usual case: one just made)
            // changes no verdict, so only an earlier-sorting one costs a replay.
            ReplayNeed::IfLaterEntries => self.index.has_later(key),
            ReplayNeed::Always => true,
        };
        if needed {
            match self.batching {
                true => self.replay_after_batch = true,
                false => self.replay_now_or_later(),
            }
        }
    }

    /// Replays the log at once, or marks the totals stale and leaves the replay to a job
    /// ([`Ledger::take_replay`]) when replays are deferred.
    fn replay_now_or_later(&mut self) {
        match self.deferral.enabled {
            true => self.deferral.want(),
            false => self.replay_now(),
        }
    }

    /// Replays the log at once; a replay handed out before is then stale.
    fn replay_now(&mut self) {
        self.replay.retotal(&self.index);
        self.deferral.settle();
    }

    /// Whether a replay the log needs runs elsewhere: when on, an insert that needs one
    /// (a roster change sorting before entries already held), or a new root key, does not
    /// read the log back itself; the totals and rejected count stay stale until the owner
    /// runs the job [`Ledger::take_replay`] hands out and gives its result to
    /// [`Ledger::finish_replay`]. The daemon turns it on so its core thread never stalls on
    /// a replay. Turning it off replays at once if one is pending.
    pub fn defer_replays(&mut self, on: bool) {
        self.deferral.enabled = on;
        if !on && self.deferral.pending() {
            self.replay_now();
        }
    }

    /// Whether the totals wait for a replay (wanted, or handed out and not yet finished).
    /// Anything computed from them (a decay's deltas, an import's differences) must wait
    /// too.
    pub fn replay_pending(&self) -> bool {
        self.deferral.pending()
    }

    /// Tells a replay handed out to stop early, leaving the totals stale (and so no
    /// checkpoint taken): for a daemon shutting down, which will not take its result in.
    pub fn abandon_replay(&mut self) {
        self.deferral.abandon();
    }

    /// The replay to run, if one is wanted and none is running: a snapshot of the index and
    /// the roster that sums the totals on any thread. One at a time.
    pub fn take_replay(&mut self) -> Option<ReplayJob> {
        let deferral = &mut self.deferral;
        if !deferral.enabled || !deferral.wanted || deferral.in_flight.is_some() {
            return None;
        }
        let stop = deferral.issue();
        self.replay.begin_tally();
        Some(ReplayJob::new(
            self.index.len(),
            self.history_source(),
            stop,
        ))
    }

    /// Takes in the result of the replay [`Ledger::take_replay`] handed out last; returns
    /// whether it was used. A result is refused (and another replay wanted, if none is)
    /// when another replay became needed since its snapshot, when the job stopped early
    /// (abandoned) or failed, when the ledger replayed at once since, or when it is another
    /// ledger's (a copy's).
    pub fn finish_replay(&mut self, result: ReplayResult) -> bool {
        match (self.deferral.finish(&result), result.summed) {
            (Finished::NotRunning, _) => false,
            (Finished::Current, Some((totals, rejected))) => {
                self.replay.take_in(totals, rejected);
                true
            }
            // Another replay is wanted already.
            (Finished::Stale, _) => {
                self.replay.drop_tally();
                false
            }
            // Abandoned (a shutdown) or failed (its thread panicked) though nothing changed
            // since: replay again rather than keep stale totals.
            (Finished::Current, None) => {
                self.replay.drop_tally();
                self.deferral.want();
                false
            }
        }
    }

    /// Starts a batch of inserts (a merge): replays a roster change calls for wait for
    /// [`Ledger::end_batch`], so a catch-up full of roster changes replays the log once,
    /// not once per change. Totals and verdicts are stale until then (and, when replays are
    /// deferred, until the replay's result is taken in).
    pub(crate) fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch of inserts, replaying the log (or handing the replay out, when
    /// deferred) if any of them called for it.
    pub(crate) fn end_batch(&mut self) {
        self.batching = false;
        if std::mem::take(&mut self.replay_after_batch) {
            self.replay_now_or_later();
        }
    }

    /// Totals and fingerprint for a new entry at `key` (already indexed), and whether the
    /// verdicts on other entries may have changed.
    fn account(&mut self, entry: &Entry, key: Key) -> ReplayNeed {
        self.fingerprint.add(key.digest.as_u128());
        self.replay.account(entry, key)
    }

    /// Sets the group's root key (`None`: open roster) and, if it changed, judges the
    /// roster entries again and replays every entry (at once, or handed out when
    /// deferred: a reload on a large log must not stall the daemon's core thread either).
    pub fn set_root(&mut self, root: Option<PublicKey>) {
        if self.replay.root() == root {
            return;
        }
        self.replay.set_root(root, &self.index);
        // A replay running is judged under the old root: stale either way.
        self.replay_now_or_later();
    }

    /// The group's root key, if any.
    pub fn root(&self) -> Option<PublicKey> {
        self.replay.root()
    }

    /// How many entries count for nothing (unsigned, signed by a non-officer, or roster
    /// changes not signed by the root key).
    pub fn rejected(&self) -> u64 {
        self.replay.rejected()
    }

    /// How many roster entries the ledger holds, and how many of them are valid (signed by
    /// the root key): many of the first and none of the second usually means this peer's
    /// configured root key is not the group's.
    pub fn roster_entries(&self) -> (usize, usize) {
        self.replay.roster_entries()
    }

    /// Whether a valid revocation names `key` (its entries then count only if kept).
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.replay.is_revoked(key)
    }

    /// Whether an entry signed by `key` under the label `actor` would be rejected as signed
    /// as another officer, at the end of the log (see
    /// [`crate::core::roster::Roster::impersonates`]).
    pub fn impersonates(&self, actor: &str, key: &PublicKey) -> bool {
        self.replay.end_roster().impersonates(actor, key)
    }

    /// The officers after replaying the whole log, by name (revoked keys left out).
    pub fn officers(&self) -> BTreeMap<String, PublicKey> {
        self.replay.end_roster().officers()
    }

    /// Records that the entry at `key` is in the log at `offset`: with a reader injected, its
    /// body leaves memory and is read back from there when needed. Without a reader (or for
    /// an unknown id) nothing changes.
    pub fn mark_stored(&mut self, key: &Key, offset: u64) {
        self.index.mark_stored(key, offset);
    }

    /// With a reader injected: the entries not yet stored in the log (merged, but their
    /// append has not happened or failed), in key order. `None` without a reader, where
    /// every body is held in memory and residence says nothing about the log.
    pub fn unstored(&self) -> Option<(Vec<Entry>, Vec<Key>)> {
        self.index.unstored()
    }

    /// Entries whose bodies are held in memory (not yet marked as stored in the log).
    pub fn resident_len(&self) -> usize {
        self.index.resident_len()
    }

    /// Whether an entry with this digest is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.index.contains(digest)
    }

    /// Whether the entry at `key` is present: [`Ledger::contains`] for a caller that has
    /// the whole key, which usually spares a search of the stored entries (a merge asks
    /// this of every entry it receives).
    pub fn contains_key(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    /// The entry with this digest, if present (and readable).
    pub fn get(&self, digest: &Digest) -> Option<Entry> {
        self.index.get(digest)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the ledger holds no entries.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Fingerprint of the whole set (kept up to date on insert).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The largest key present.
    pub fn newest(&self) -> Option<Key> {
        self.index.newest()
    }

    /// Fingerprint of the entries with `lower <= key < upper`.
    pub fn range_fingerprint(&self, lower: Key, upper: Key) -> Fingerprint {
        if lower == Key::MIN && upper == Key::MAX {
            return self.fingerprint;
        }
        self.index.range_fingerprint(lower, upper)
    }

    /// Keys of the entries with `lower <= key < upper`, in key order (no body is read).
    pub fn range_keys(&self, lower: Key, upper: Key) -> impl Iterator<Item = Key> + '_ {
        self.index.range_keys(lower, upper)
    }

    /// Entries with `lower <= key < upper`, in key order, read lazily: a caller that stops
    /// early reads no more bodies than it used.
    pub fn range(&self, lower: Key, upper: Key) -> impl Iterator<Item = Entry> + '_ {
        self.index.range(lower, upper)
    }

    /// The entries with `lower <= key < upper` whose key passes `keep`, in key order, each
    /// with its key and encoded (`postcard(Entry)`): a body stored in the log is copied from
    /// its record, not decoded, so sync answers splice it into datagrams as it is.
    pub fn range_encoded_where<'a>(
        &'a self,
        lower: Key,
        upper: Key,
        keep: impl FnMut(&Key) -> bool + 'a,
    ) -> impl Iterator<Item = (Key, Vec<u8>)> + 'a {
        self.index.range_encoded_where(lower, upper, keep)
    }

    /// Entries with `lower <= key < upper` whose key passes `keep`, in key order; bodies are
    /// read only for the entries kept.
    pub fn range_where<'a>(
        &'a self,
        lower: Key,
        upper: Key,
        keep: impl FnMut(&Key) -> bool + 'a,
    ) -> impl Iterator<Item = Entry> + 'a {
        self.index.range_where(lower, upper, keep)
    }

    /// Splits `[lower, upper)` into at most `parts` sub-ranges holding about equal numbers
    /// of this ledger's entries. The sub-ranges are contiguous and cover the whole range.
    pub fn split(&self, lower: Key, upper: Key, parts: usize) -> Vec<(Key, Key)> {
        self.index.split(lower, upper, parts)
    }

    /// [`Ledger::split`] with each sub-range's fingerprint, found in one walk over the
    /// range's keys.
    pub fn split_fingerprinted(
        &self,
        lower: Key,
        upper: Key,
        parts: usize,
    ) -> Vec<(Key, Key, Fingerprint)> {
        self.index.split_fingerprinted(lower, upper, parts)
    }

    /// Current totals by player, derived from every entry.
    pub fn totals(&self) -> &BTreeMap<String, i64> {
        self.replay.totals()
    }

    /// One player's current total (0 if never adjusted).
    pub fn total(&self, player: &str) -> i64 {
        self.replay.totals().get(player).copied().unwrap_or(0)
    }

    /// The spelling under which `name` is in the ledger: `name` itself if some entry targets
    /// exactly it, else an existing player whose name is the same under
    /// [`crate::proto::text::name_key`] (case and Unicode form ignored; the smallest such
    /// spelling, so every peer picks the same one), else `None` (a new player).
    pub fn resolve_player(&self, name: &str) -> Option<String> {
        let totals = self.replay.totals();
        if totals.contains_key(name) {
            return Some(name.to_string());
        }
        let key = crate::proto::text::name_key(name);
        totals
            .keys()
            .find(|existing| crate::proto::text::name_key(existing) == key)
            .cloned()
    }

    /// All entries in replay order, read lazily.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.range(Key::MIN, Key::MAX)
    }

    /// History in replay order with the running total of each entry's target, optionally
    /// for one player only (then only that player's entry bodies are read back).
    pub fn history(&self, player: Option<&str>) -> Vec<HistoryRow> {
        self.history_source().history(player)
    }

    /// What `officer add`/`officer remove` need to know about officer `name`, judged under
    /// this ledger's root key (see [`HistorySource::roster_view`]).
    pub fn roster_view(&self, name: &str) -> RosterView {
        self.history_source().roster_view(name)
    }

    /// What [`Ledger::history`] needs, detached from the ledger: the index in key order (the
    /// flat part shared, the entries added since copied, with the bodies not yet stored),
    /// the reader and the roster. The daemon builds the history from it on a blocking
    /// thread, so reading a large log back does not stall sync.
    pub fn history_source(&self) -> HistorySource {
        HistorySource::new(
            self.replay.root(),
            self.replay.revocations().clone(),
            self.replay.roster_changes().clone(),
            self.index.detached(),
        )
    }

    /// Moves every stored entry into the flat index (the same compaction that happens by
    /// itself as entries are stored), so memory per entry is the flat index's.
    pub fn compact(&mut self) {
        self.index.compact();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{entry, MemoryReader};

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

    /// Moving the stored entries of the overlay into the flat index changes no answer;
    /// entries not yet stored stay where they are.
    #[test]
    fn compaction_changes_no_answer() {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for i in 0..30u64 {
            let e = entry(i * 2, i as u8, ["Ann", "Bo"][i as usize % 2], 1);
            reader.put(100 + i, e.clone());
            builder.push(&e, 100 + i);
        }
        let (mut ledger, _) = builder.finish(reader.clone());
        for i in 0..20u64 {
            let e = entry(i * 3 + 1, 100 + i as u8, "Cy", i as i64);
            assert!(ledger.insert(e.clone()));
            if i % 4 != 0 {
                reader.put(500 + i, e.clone());
                ledger.mark_stored(&e.key(), 500 + i);
            }
        }
        let before = ledger.clone();
        ledger.compact();
        assert_eq!(ledger.resident_len(), 5);
        assert_eq!(ledger.unstored(), before.unstored());
        assert_eq!(ledger.len(), 50);
        assert_eq!(ledger.history(None), before.history(None));
        assert_eq!(ledger.history(Some("Cy")), before.history(Some("Cy")));
        let parts = before.split(Key::MIN, Key::MAX, 7);
        assert_eq!(ledger.split(Key::MIN, Key::MAX, 7), parts);
        for (lo, hi) in parts {
            assert_eq!(
                ledger.range_fingerprint(lo, hi),
                before.range_fingerprint(lo, hi)
            );
            assert_eq!(
                ledger.range_keys(lo, hi).collect::<Vec<_>>(),
                before.range_keys(lo, hi).collect::<Vec<_>>()
            );
        }
        for e in before.iter() {
            assert!(ledger.contains(&e.digest()));
            assert_eq!(ledger.get(&e.digest()), Some(e.clone()));
            // A duplicate is still refused wherever the first copy sits.
            assert!(!ledger.insert(e));
        }
        assert_eq!(ledger.newest(), before.newest());
    }

    #[test]
    fn new_entries_stay_in_memory_until_marked_stored() {
        let reader = Arc::new(MemoryReader::default());
        let (mut ledger, _) = LedgerBuilder::new().finish(reader.clone());
        let a = entry(5, 1, "Ann", 3);
        let b = entry(6, 2, "Ann", 4);
        assert!(ledger.insert(a.clone()));
        assert!(ledger.insert(b.clone()));
        assert_eq!(ledger.resident_len(), 2);
        // Not stored yet (an append that failed leaves them so): the daemon appends these.
        assert_eq!(
            ledger.unstored(),
            Some((vec![a.clone(), b.clone()], vec![a.key(), b.key()]))
        );
        reader.put(16, a.clone());
        ledger.mark_stored(&a.key(), 16);
        assert_eq!(ledger.resident_len(), 1);
        assert_eq!(ledger.unstored(), Some((vec![b.clone()], vec![b.key()])));
        assert_eq!(ledger.get(&a.digest()), Some(a.clone()));
        assert_eq!(ledger.get(&b.digest()), Some(b.clone()));
        assert_eq!(ledger.total("Ann"), 7);

        // Without a reader, marking changes nothing: everything stays in memory.
        let (mut plain, _) = Ledger::from_entries([a.clone()]);
        plain.mark_stored(&a.key(), 16);
        assert_eq!(plain.resident_len(), 1);
        assert_eq!(plain.unstored(), None);
        assert_eq!(plain.get(&a.digest()), Some(a));
    }
}
