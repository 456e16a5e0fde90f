//! Judging entries during a replay: which entries count under the officer roster, the
//! totals they sum to, and the roster caches that judge a new entry without replaying the
//! log.
//!
//! Totals are sums of deltas, so they never depend on arrival order; verdicts depend on the
//! roster at each entry's place in the (at, digest) order, which every peer computes alike
//! from the same set.

use super::deferred::Tally;
use super::index::EntryIndex;
use crate::core::roster::{RevocationTracker, Revocations, Roster, Verdict};
use crate::proto::digest::Key;
use crate::proto::entry::{Entry, EntryKind};
use crate::proto::keys::PublicKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether a new entry may change the verdicts on others.
pub(super) enum ReplayNeed {
    /// No: not a valid roster change (or a revocation still missing parts).
    None,
    /// Those sorting after it: a valid add or remove.
    IfLaterEntries,
    /// Any, wherever they sort: a revocation just completed.
    Always,
}

/// What replaying the log under the group's roster gives: totals and the rejected count,
/// with the roster state kept so a new entry is usually judged without a replay.
#[derive(Clone, Default)]
pub(super) struct ReplayState {
    /// The group's root key; `None` is an open roster (every point entry counts).
    root: Option<PublicKey>,
    /// The key of every roster entry, valid or not, so a new root key can re-judge them
    /// without reading the whole log twice. Keys only: anyone in the group can make
    /// invalid ones.
    roster_keys: BTreeSet<Key>,
    /// The valid roster changes (signed by the root key), by key: only the root key holder
    /// makes them, so they stay few, and judging a point entry replays those before it.
    roster: BTreeMap<Key, Entry>,
    /// The revocation parts among `roster`, and which revocations they complete.
    revocation_parts: RevocationTracker,
    /// The keys revoked by the complete revocations (a copy shared with rosters).
    revocations: Arc<Revocations>,
    /// The roster after every change in `roster`: judges the usual new entry, which sorts
    /// after all of them, without a replay.
    end_roster: Roster,
    /// Every key a valid roster change ever added: an entry signed by any other key (or
    /// unsigned) is rejected without consulting the roster, so junk costs no replay.
    added_keys: BTreeSet<PublicKey>,
    totals: BTreeMap<String, i64>,
    /// Entries that count for nothing (see [`Verdict`]).
    rejected: u64,
    /// While a replay runs elsewhere, what entries accounted since its snapshot added
    /// (see [`super::deferred`]).
    since: Option<Tally>,
}

impl ReplayState {
    /// The state of a bulk load judged with no root key (an open roster, as a log scan
    /// judges it): every point entry counted in `totals`, every roster entry (all keyed in
    /// `roster_keys`) rejected.
    pub(super) fn open_roster(
        totals: BTreeMap<String, i64>,
        roster_keys: BTreeSet<Key>,
    ) -> ReplayState {
        ReplayState {
            rejected: roster_keys.len() as u64,
            totals,
            roster_keys,
            ..ReplayState::default()
        }
    }

    /// The state a replay under `root` left, as a checkpoint keeps it: the roster caches
    /// are derived from `roster` (the valid roster changes, by key) again.
    pub(super) fn restore(
        root: Option<PublicKey>,
        roster_keys: BTreeSet<Key>,
        roster: BTreeMap<Key, Entry>,
        totals: BTreeMap<String, i64>,
        rejected: u64,
    ) -> ReplayState {
        let revocation_parts = RevocationTracker::from_changes(root, roster.values());
        let mut state = ReplayState {
            root,
            roster_keys,
            revocations: Arc::new(revocation_parts.complete().clone()),
            revocation_parts,
            roster,
            totals,
            rejected,
            ..ReplayState::default()
        };
        state.refresh_roster_caches();
        state
    }

    /// The key of every roster entry, valid or not.
    pub(super) fn roster_keys(&self) -> &BTreeSet<Key> {
        &self.roster_keys
    }

    /// The valid roster changes (signed by the root key), by key.
    pub(super) fn roster_changes(&self) -> &BTreeMap<Key, Entry> {
        &self.roster
    }

    /// Judges a new entry at `key` and adds it to the totals if it counts; says whether the
    /// verdicts on other entries may have changed.
    pub(super) fn account(&mut self, entry: &Entry, key: Key) -> ReplayNeed {
        if entry.kind != EntryKind::Points {
            self.roster_keys.insert(key);
            if !Roster::is_valid_roster_change(self.root, entry) {
                self.reject();
                return ReplayNeed::None;
            }
            self.roster.insert(key, entry.clone());
            if !matches!(entry.kind, EntryKind::OfficerRevoke { .. }) {
                self.refresh_roster_caches();
                return ReplayNeed::IfLaterEntries;
            }
            // A revocation changes verdicts (wherever they sort) only once it is complete.
            if !self.revocation_parts.add(self.root, entry) {
                return ReplayNeed::None;
            }
            self.revocations = Arc::new(self.revocation_parts.complete().clone());
            self.refresh_roster_caches();
            return ReplayNeed::Always;
        }
        if self.judge_points_at(entry, &key) != Verdict::Counts {
            self.reject();
            return ReplayNeed::None;
        }
        add_points(&mut self.totals, entry);
        if let Some(since) = &mut self.since {
            add_points(&mut since.totals, entry);
        }
        ReplayNeed::None
    }

    /// Counts one more entry that counts for nothing.
    fn reject(&mut self) {
        self.rejected += 1;
        if let Some(since) = &mut self.since {
            since.rejected += 1;
        }
    }

    /// Starts tallying what entries accounted from now on add, for a replay whose snapshot
    /// is taken now.
    pub(super) fn begin_tally(&mut self) {
        self.since = Some(Tally::default());
    }

    /// Stops tallying (the replay's result is not taken in).
    pub(super) fn drop_tally(&mut self) {
        self.since = None;
    }

    /// Takes in a replay's result: the snapshot's totals and rejected count, plus what was
    /// accounted since the snapshot.
    pub(super) fn take_in(&mut self, mut totals: BTreeMap<String, i64>, rejected: u64) {
        let since = self.since.take().unwrap_or_default();
        for (name, delta) in since.totals {
            // Wrapping, as `add_points` sums.
            let total = totals.entry(name).or_insert(0);
            *total = total.wrapping_add(delta);
        }
        self.totals = totals;
        self.rejected = rejected + since.rejected;
    }

    /// The verdict on a point entry at `key`, from the caches when it can be.
    fn judge_points_at(&self, entry: &Entry, key: &Key) -> Verdict {
        if self.root.is_none() {
            return Verdict::Counts;
        }
        let known = entry.seal.is_some_and(|seal| {
            self.added_keys.contains(&seal.signer) || self.revocations.contains_key(&seal.signer)
        });
        let after_every_change = self.roster.keys().next_back().is_none_or(|last| last < key);
        if !known || after_every_change {
            // The end roster gives the same verdict as the roster at `key` for these: an
            // unknown or missing signer is never an officer.
            return self.end_roster.judge_points(entry);
        }
        self.roster_before(key).judge_points(entry)
    }

    /// Rebuilds `end_roster` and `added_keys` from `roster` and `revocations`.
    fn refresh_roster_caches(&mut self) {
        self.end_roster = self.roster_before(&Key::MAX);
        self.added_keys = self
            .roster
            .values()
            .filter_map(|change| match change.kind {
                EntryKind::OfficerAdd { public_key } => Some(public_key),
                _ => None,
            })
            .collect();
    }

    /// The roster as of just before `key` in the replay order.
    fn roster_before(&self, key: &Key) -> Roster {
        let mut roster = Roster::with_revocations(self.root, self.revocations.clone());
        for change in self.roster.range(..*key).map(|(_, e)| e) {
            roster.judge(change);
        }
        roster
    }

    /// Sets the group's root key and judges the roster entries under it again (their
    /// bodies read back); the totals are left to a replay ([`ReplayState::retotal`], or a
    /// job) by the caller.
    pub(super) fn set_root(&mut self, root: Option<PublicKey>, index: &EntryIndex) {
        self.root = root;
        self.rebuild_roster(index);
    }

    /// Rebuilds the valid roster changes and the caches derived from them from the bodies
    /// of every roster entry.
    fn rebuild_roster(&mut self, index: &EntryIndex) {
        let mut roster_changes = BTreeMap::new();
        for key in &self.roster_keys {
            let Some(change) = index.body_at(key) else {
                // Verdicts now depend on a body this peer cannot read: say so loudly (the
                // read error itself was logged by the index).
                tracing::error!(
                    "roster entry with digest {} is unreadable: verdicts on this peer may differ \
                     from its peers' until the log is repaired",
                    key.digest
                );
                continue;
            };
            if Roster::is_valid_roster_change(self.root, &change) {
                roster_changes.insert(*key, change);
            }
        }
        self.roster = roster_changes;
        self.revocation_parts = RevocationTracker::from_changes(self.root, self.roster.values());
        self.revocations = Arc::new(self.revocation_parts.complete().clone());
        self.refresh_roster_caches();
    }

    /// Rebuilds the totals and the rejected count by replaying every entry of `index`
    /// under the roster as it is (kept current by [`ReplayState::account`], and rebuilt
    /// from the bodies by [`ReplayState::set_root`]), reading every other body back. Only
    /// done when a replay is not deferred (see [`super::deferred`]) and a valid roster
    /// change sorting before held entries arrives or the root key changes, both rare.
    pub(super) fn retotal(&mut self, index: &EntryIndex) {
        let never = AtomicBool::new(false);
        let (totals, rejected) = sum_replay(
            self.root,
            self.revocations.clone(),
            &self.roster,
            index.walk_lazily(),
            &never,
        )
        .expect("a replay nobody can stop runs to the end");
        self.totals = totals;
        self.rejected = rejected;
        self.since = None;
    }

    /// The group's root key, if any.
    pub(super) fn root(&self) -> Option<PublicKey> {
        self.root
    }

    /// The complete revocations, shared with the rosters that judge history.
    pub(super) fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Current totals by player.
    pub(super) fn totals(&self) -> &BTreeMap<String, i64> {
        &self.totals
    }

    /// See [`super::Ledger::rejected`].
    pub(super) fn rejected(&self) -> u64 {
        self.rejected
    }

    /// See [`super::Ledger::roster_entries`].
    pub(super) fn roster_entries(&self) -> (usize, usize) {
        (self.roster_keys.len(), self.roster.len())
    }

    /// See [`super::Ledger::is_revoked`].
    pub(super) fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revocations.contains_key(key)
    }

    /// The roster after every change, which judges entries made now.
    pub(super) fn end_roster(&self) -> &Roster {
        &self.end_roster
    }
}

/// How many entries a replay judges between looks at its stop flag.
const STOP_CHECK_EVERY: usize = 4096;

/// The one replay that sums totals, whether the ledger runs it at once or a job runs it on
/// another thread: every entry of `entries` (in key order, each with a way to get its body)
/// judged by a roster replayed along the way from `root` and `revocations`, returning the
/// totals of the point entries that count and how many entries count for nothing. The
/// valid roster changes (`roster`) are at hand, so only the other bodies are read; an
/// entry whose body cannot be read is left out (the read error is logged where it is
/// read). `None` once `stop` is set (looked at every [`STOP_CHECK_EVERY`] entries).
pub(super) fn sum_replay<B: FnOnce() -> Option<Entry>>(
    root: Option<PublicKey>,
    revocations: Arc<Revocations>,
    roster: &BTreeMap<Key, Entry>,
    entries: impl Iterator<Item = (Key, B)>,
    stop: &AtomicBool,
) -> Option<(BTreeMap<String, i64>, u64)> {
    let mut judge = Roster::with_revocations(root, revocations);
    let mut totals = BTreeMap::new();
    let mut rejected = 0;
    for (n, (key, body)) in entries.enumerate() {
        if n % STOP_CHECK_EVERY == 0 && stop.load(Ordering::Relaxed) {
            return None;
        }
        let read;
        let entry = match roster.get(&key) {
            Some(change) => change,
            None => match body() {
                Some(entry) => {
                    read = entry;
                    &read
                }
                None => continue,
            },
        };
        match judge.judge(entry) {
            Verdict::Counts if entry.kind == EntryKind::Points => add_points(&mut totals, entry),
            Verdict::Counts => {}
            Verdict::Rejected(_) => rejected += 1,
        }
    }
    Some((totals, rejected))
}

/// Adds a counting point entry's delta to its target's total.
fn add_points(totals: &mut BTreeMap<String, i64>, entry: &Entry) {
    // Wrapping addition is associative and commutative, so totals are identical on every
    // peer whatever order entries arrive in (deltas are bounded, so it never wraps in
    // practice). Looked up before inserting so the name is only cloned for a new player.
    match totals.get_mut(&entry.target) {
        Some(total) => *total = total.wrapping_add(entry.delta),
        None => {
            totals.insert(entry.target.clone(), entry.delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::test_support::{entry_builder, officer, root, MemoryReader};
    use crate::core::ledger::{Ledger, LedgerBuilder};
    use crate::core::rng::SeededRng;
    use crate::proto::signature::SecretKey;
    use crate::testing::whole_history_view;

    /// The roster name the tests give officer key `n`.
    fn name_of(key: &SecretKey) -> String {
        let names = ["alice", "bob", "carol", "dave"];
        (1..=4u8)
            .find(|n| officer(*n).public() == key.public())
            .map_or("stranger".into(), |n| names[n as usize - 1].into())
    }

    fn points(ms: u64, seed: u8, target: &str, delta: i64, key: Option<&SecretKey>) -> Entry {
        let e = entry_builder(ms, seed, target, delta);
        match key {
            Some(key) => e.actor(name_of(key)).signed(key),
            None => e.build(),
        }
    }

    fn change(ms: u64, seed: u8, name: &str, kind: EntryKind, key: &SecretKey) -> Entry {
        entry_builder(ms, seed, name, 0).kind(kind).signed(key)
    }

    fn add(ms: u64, seed: u8, name: &str, who: &SecretKey, key: &SecretKey) -> Entry {
        change(
            ms,
            seed,
            name,
            EntryKind::OfficerAdd {
                public_key: who.public(),
            },
            key,
        )
    }

    fn remove(ms: u64, seed: u8, name: &str, key: &SecretKey) -> Entry {
        change(ms, seed, name, EntryKind::OfficerRemove, key)
    }

    fn secured(entries: impl IntoIterator<Item = Entry>) -> Ledger {
        let mut ledger = Ledger::new();
        ledger.set_root(Some(root().public()));
        for e in entries {
            assert!(ledger.insert(e));
        }
        ledger
    }

    fn rejection(ledger: &Ledger, id: &crate::proto::entry::EntryId) -> Option<String> {
        ledger
            .history(None)
            .into_iter()
            .find(|row| row.entry.id == *id)
            .expect("entry in history")
            .rejected
    }

    #[test]
    fn entries_count_only_while_their_signer_is_an_officer() {
        let (a, b) = (officer(1), officer(2));
        let before_add = points(5, 1, "Ann", 100, Some(&a));
        let while_officer = points(15, 2, "Ann", 10, Some(&a));
        let after_remove = points(35, 3, "Ann", 1000, Some(&a));
        let never_officer = points(16, 4, "Ann", 7, Some(&b));
        let unsigned = points(17, 5, "Ann", 9, None);
        let ledger = secured([
            add(10, 10, "alice", &a, &root()),
            remove(30, 11, "alice", &root()),
            before_add.clone(),
            while_officer.clone(),
            after_remove.clone(),
            never_officer.clone(),
            unsigned.clone(),
        ]);
        assert_eq!(ledger.total("Ann"), 10);
        assert_eq!(ledger.rejected(), 4);
        assert_eq!(rejection(&ledger, &while_officer.id), None);
        for e in [&before_add, &after_remove, &never_officer] {
            assert_eq!(
                rejection(&ledger, &e.id).as_deref(),
                Some("rejected: signer not an officer")
            );
        }
        assert_eq!(
            rejection(&ledger, &unsigned.id).as_deref(),
            Some("rejected: unsigned")
        );
        // History's running totals skip rejected entries.
        let rows = ledger.history(Some("Ann"));
        assert_eq!(rows.last().unwrap().total, 10);
        assert!(ledger.officers().is_empty());
    }

    /// Part `part` of `parts` of revocation `batch` of `who`'s key.
    fn revoke(
        ms: u64,
        seed: u8,
        who: &SecretKey,
        (batch, part, parts): (u8, u16, u16),
        keep: &[&Entry],
    ) -> Entry {
        let kind = EntryKind::OfficerRevoke {
            public_key: who.public(),
            batch: [batch; 8],
            part,
            parts,
            keep: keep.iter().map(|e| e.digest()).collect(),
        };
        change(ms, seed, &name_of(who), kind, &root())
    }

    /// A revoked key's entries count only if a revocation keeps them, wherever they sort:
    /// an entry the removed officer dates before the removal gains nothing, and a kept
    /// one dated after it still counts. The result does not depend on the order the
    /// entries arrive in.
    #[test]
    fn a_revoked_key_counts_only_for_kept_entries_wherever_they_sort() {
        let a = officer(1);
        let kept_early = points(15, 1, "Ann", 1, Some(&a));
        // Dated far in the future by a skewed clock: kept all the same.
        let kept_late = points(1_000, 2, "Ann", 2, Some(&a));
        let not_kept = points(22, 3, "Ann", 4, Some(&a));
        let backdated = points(12, 4, "Ann", 1_000, Some(&a));
        let after = points(40, 5, "Ann", 8, Some(&a));
        let log = vec![
            add(10, 10, "alice", &a, &root()),
            kept_early.clone(),
            kept_late.clone(),
            not_kept.clone(),
            // Split over two parts, as `officer remove` does past MAX_KEEP.
            revoke(30, 11, &a, (1, 0, 2), &[&kept_early]),
            revoke(30, 12, &a, (1, 1, 2), &[&kept_late]),
            backdated.clone(),
            after.clone(),
        ];
        for seed in 0..50u64 {
            let mut shuffled = log.clone();
            let mut rng = SeededRng::new(seed);
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let ledger = secured(shuffled);
            assert_eq!(ledger.total("Ann"), 3, "seed {seed}");
            assert_eq!(ledger.rejected(), 3, "seed {seed}");
            assert!(ledger.is_revoked(&a.public()));
            assert!(ledger.officers().is_empty());
            for e in [&not_kept, &backdated, &after] {
                assert_eq!(
                    rejection(&ledger, &e.id).as_deref(),
                    Some("rejected: signed by a revoked key"),
                    "seed {seed}"
                );
            }
        }
        // Until every part is in, a revocation does nothing (so an interrupted
        // `officer remove` is simply run again).
        let partial = secured([
            add(10, 10, "alice", &a, &root()),
            kept_early.clone(),
            not_kept.clone(),
            revoke(30, 11, &a, (1, 0, 2), &[&kept_early]),
        ]);
        assert_eq!(partial.total("Ann"), 5);
        assert!(!partial.is_revoked(&a.public()));
        assert_eq!(partial.officers().len(), 1);
        // A revocation not signed by the root key revokes nothing.
        let mut forged = revoke(30, 13, &a, (2, 0, 1), &[]);
        officer(2).sign(&mut forged);
        let ledger = secured([add(10, 10, "alice", &a, &root()), kept_early, forged]);
        assert_eq!(ledger.total("Ann"), 1);
        assert!(!ledger.is_revoked(&a.public()));
    }

    /// An officer whose key was replaced: the old key, revoked when replaced (as
    /// `officer add` does), cannot sign backdated entries into the time it was valid.
    #[test]
    fn a_replaced_key_revoked_cannot_backdate() {
        let (old, new) = (officer(1), SecretKey::from_seed([9; 32]));
        let before = points(15, 1, "Ann", 1, Some(&old));
        let backdated = entry_builder(16, 2, "Ann", 1_000)
            .actor("alice")
            .signed(&old);
        let with_new = entry_builder(30, 3, "Ann", 10).actor("alice").signed(&new);
        let ledger = secured([
            add(10, 4, "alice", &old, &root()),
            before,
            revoke(
                20,
                5,
                &old,
                (3, 0, 1),
                &[&points(15, 1, "Ann", 1, Some(&old))],
            ),
            add(20, 6, "alice", &new, &root()),
            backdated.clone(),
            with_new,
        ]);
        assert_eq!(ledger.total("Ann"), 11);
        assert_eq!(
            rejection(&ledger, &backdated.id).as_deref(),
            Some("rejected: signed by a revoked key")
        );
        assert_eq!(ledger.officers().get("alice"), Some(&new.public()));
    }

    /// Every verdict is a function of the set alone: inserting a roster-heavy log in 300
    /// random orders, with merges (deferred replays) of random sizes, gives the same
    /// totals, rejections, officers and history as judging the whole set at once. Guards
    /// the incremental paths (cached end roster, unknown-signer shortcut, revocation
    /// parts, batches) against drifting from the full replay.
    #[test]
    fn verdicts_do_not_depend_on_arrival_order_or_batching() {
        let keys: Vec<SecretKey> = (1..=4).map(officer).collect();
        let names = ["alice", "bob", "carol", "dave"];
        let mut rng = SeededRng::new(7);
        let mut log = vec![
            add(10, 1, "alice", &keys[0], &root()),
            add(10, 2, "bob", &keys[1], &root()),
            add(30, 3, "carol", &keys[2], &root()),
            remove(50, 4, "carol", &root()),
            // alice's key replaced by key 4 (named "dave" in `name_of`).
            add(60, 5, "alice", &keys[3], &root()),
            add(70, 6, "mallory", &keys[1], &keys[0]),
        ];
        let mut points_made = Vec::new();
        for i in 0..48u64 {
            let signer = rng.below(5) as usize;
            let e = entry_builder(5 + i * 2, 100 + i as u8, "Ann", 1 + i as i64).actor(
                match rng.below(3) {
                    0 => names[rng.below(4) as usize],
                    _ => "raidbox",
                },
            );
            let e = match signer {
                4 => e.build(),
                k => e.signed(&keys[k]),
            };
            points_made.push(e.clone());
            log.push(e);
        }
        let bobs: Vec<&Entry> = points_made
            .iter()
            .filter(|e| e.seal.is_some_and(|s| s.signer == keys[1].public()))
            .take(3)
            .collect();
        log.push(revoke(80, 7, &keys[1], (1, 0, 2), &bobs[..2]));
        log.push(revoke(80, 8, &keys[1], (1, 1, 2), &bobs[2..]));
        log.push(revoke(81, 9, &keys[1], (1, 1, 2), &bobs[..1]));
        log.push(revoke(82, 10, &keys[0], (2, 0, 3), &[]));
        let (mut reference, _) = Ledger::from_entries(log.clone());
        reference.set_root(Some(root().public()));
        let history = reference.history(None);
        assert!(reference.rejected() > 5 && reference.total("Ann") > 0);
        assert!(reference.is_revoked(&keys[1].public()), "both parts are in");
        assert!(
            !reference.is_revoked(&keys[0].public()),
            "one part of three"
        );
        for seed in 0..300u64 {
            let mut rng = SeededRng::new(seed);
            let mut shuffled = log.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut ledger = Ledger::new();
            ledger.set_root(Some(root().public()));
            let mut batch_left = 0;
            for e in shuffled {
                if batch_left == 0 {
                    ledger.end_batch();
                    batch_left = 1 + rng.below(8);
                    ledger.begin_batch();
                }
                batch_left -= 1;
                ledger.insert(e);
            }
            ledger.end_batch();
            assert_eq!(ledger.totals(), reference.totals(), "seed {seed}");
            assert_eq!(ledger.rejected(), reference.rejected(), "seed {seed}");
            assert_eq!(ledger.officers(), reference.officers(), "seed {seed}");
            assert_eq!(ledger.history(None), history, "seed {seed}");
        }
    }

    /// Anyone in the group can make roster entries signed by their own key: they are
    /// stored (sets must converge) but never join the roster that every point entry is
    /// judged against, so a flood of them costs neither memory nor judging time there.
    #[test]
    fn invalid_roster_entries_stay_out_of_the_judging_roster() {
        let (a, mallory) = (officer(1), officer(4));
        let mut log = vec![add(10, 1, "alice", &a, &root())];
        log.extend((0..500).map(|i| add(11 + i, 2, "mallory", &mallory, &mallory)));
        log.push(points(600, 3, "Ann", 5, Some(&a)));
        log.push(points(601, 4, "Ann", 50, Some(&mallory)));
        let ledger = secured(log);
        assert_eq!(ledger.replay.roster.len(), 1);
        assert_eq!(ledger.replay.roster_keys.len(), 501);
        assert_eq!(ledger.total("Ann"), 5);
        assert_eq!(ledger.rejected(), 501);
    }

    #[test]
    fn an_officer_cannot_sign_under_another_officers_name() {
        let (a, b) = (officer(1), officer(2));
        let as_bob = entry_builder(20, 1, "Ann", 5).actor("bob").signed(&a);
        let as_capital_bob = entry_builder(20, 9, "Ann", 50).actor("BoB").signed(&a);
        let ledger = secured([
            add(10, 2, "alice", &a, &root()),
            add(10, 3, "bob", &b, &root()),
            as_bob.clone(),
            as_capital_bob.clone(),
            points(21, 4, "Ann", 1, Some(&a)),
            // Any other label (a machine's name, say) is not an officer's: it counts.
            entry_builder(22, 5, "Ann", 2).signed(&a),
        ]);
        assert_eq!(ledger.total("Ann"), 3);
        for e in [&as_bob, &as_capital_bob] {
            assert_eq!(
                rejection(&ledger, &e.id).as_deref(),
                Some("rejected: signed as another officer")
            );
        }
        // History names the real author of the labelled entry.
        let labelled = ledger.history(None).pop().unwrap();
        assert_eq!(labelled.entry.actor, "officer");
        assert_eq!(labelled.signed_by.as_deref(), Some("alice"));

        // Once bob's key is revoked his name is no officer's: alice may use it as a
        // label (as `adjust` allows), and history still shows her as the signer.
        let as_old_bob = entry_builder(40, 6, "Ann", 4).actor("bob").signed(&a);
        let ledger = secured([
            add(10, 2, "alice", &a, &root()),
            add(10, 3, "bob", &b, &root()),
            revoke(30, 7, &b, (4, 0, 1), &[]),
            as_old_bob,
        ]);
        assert_eq!(ledger.total("Ann"), 4);
        assert_eq!(
            ledger.history(None).pop().unwrap().signed_by.as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn roster_changes_count_only_when_signed_by_the_root_key() {
        let (a, b) = (officer(1), officer(2));
        // Officer a tries to appoint b: not the root, so b stays a non-officer.
        let forged_add = add(20, 1, "bob", &b, &a);
        let ledger = secured([
            add(10, 2, "alice", &a, &root()),
            forged_add.clone(),
            points(30, 3, "Ann", 5, Some(&b)),
            points(31, 4, "Ann", 6, Some(&a)),
        ]);
        assert_eq!(ledger.total("Ann"), 6);
        assert_eq!(
            rejection(&ledger, &forged_add.id).as_deref(),
            Some("rejected: roster change not signed by the root key")
        );
        assert_eq!(
            ledger.officers().into_iter().collect::<Vec<_>>(),
            vec![("alice".to_string(), a.public())]
        );
    }

    #[test]
    fn open_roster_counts_every_point_entry() {
        let a = officer(1);
        let (ledger, _) = Ledger::from_entries([
            points(1, 1, "Ann", 5, None),
            points(2, 2, "Ann", 6, Some(&a)),
            remove(3, 3, "alice", &root()),
        ]);
        assert_eq!(ledger.total("Ann"), 11);
        assert_eq!(ledger.rejected(), 1, "the roster change counts for nothing");
    }

    #[test]
    fn a_late_roster_entry_recomputes_totals() {
        let a = officer(1);
        let mut ledger = secured([points(20, 1, "Ann", 5, Some(&a))]);
        assert_eq!(ledger.total("Ann"), 0);
        // The add arrives late but sorts before the entry: it now counts.
        ledger.insert(add(10, 2, "alice", &a, &root()));
        assert_eq!(ledger.total("Ann"), 5);
        assert_eq!(ledger.rejected(), 0);
        // A late remove ordered before it takes it away again.
        ledger.insert(remove(15, 3, "alice", &root()));
        assert_eq!(ledger.total("Ann"), 0);
        assert_eq!(ledger.rejected(), 1);
    }

    /// Adds, removes and a same-millisecond add/remove race, with point entries around
    /// them; every shuffled arrival order must give identical results.
    fn race_log() -> Vec<Entry> {
        let (a, b, c) = (officer(1), officer(2), officer(3));
        let r = root();
        vec![
            add(10, 1, "alice", &a, &r),
            add(10, 2, "bob", &b, &r),
            points(11, 3, "Ann", 1, Some(&a)),
            points(12, 4, "Ann", 2, Some(&b)),
            points(12, 5, "Ann", 4, Some(&c)),
            // The race: the same instant, ordered by digest only.
            add(20, 6, "carol", &c, &r),
            remove(20, 7, "carol", &r),
            remove(20, 8, "bob", &r),
            add(20, 9, "bob", &b, &r),
            points(21, 10, "Ann", 8, Some(&c)),
            points(21, 11, "Ann", 16, Some(&b)),
            points(22, 12, "Ann", 32, Some(&a)),
            remove(30, 13, "alice", &r),
            points(31, 14, "Ann", 64, Some(&a)),
            points(31, 15, "Ann", 128, None),
            add(40, 16, "dave", &a, &a),
            points(41, 17, "Ann", 256, Some(&a)),
        ]
    }

    #[test]
    fn a_roster_race_resolves_identically_in_every_arrival_order() {
        let reference = secured(race_log());
        // The four roster changes at 20 share a timestamp, so their content digests order
        // them: whoever's last change in that order is an add is an officer at 21.
        let mut race: Vec<Entry> = race_log()[5..9].to_vec();
        race.sort_by_key(Entry::key);
        let officer_at_21 = |name: &str| {
            race.iter()
                .rev()
                .find(|e| e.target == name)
                .is_some_and(|e| matches!(e.kind, EntryKind::OfficerAdd { .. }))
        };
        let expected = 1
            + 2
            + 32
            + if officer_at_21("carol") { 8 } else { 0 }
            + if officer_at_21("bob") { 16 } else { 0 };
        assert_eq!(reference.total("Ann"), expected);
        let history = reference.history(None);
        for seed in 0..200u64 {
            let mut rng = SeededRng::new(seed);
            let mut log = race_log();
            for i in (1..log.len()).rev() {
                log.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let ledger = secured(log);
            assert_eq!(ledger.totals(), reference.totals(), "seed {seed}");
            assert_eq!(ledger.rejected(), reference.rejected(), "seed {seed}");
            assert_eq!(ledger.fingerprint(), reference.fingerprint(), "seed {seed}");
            assert_eq!(ledger.history(None), history, "seed {seed}");
            assert_eq!(ledger.officers(), reference.officers(), "seed {seed}");
        }
    }

    #[test]
    fn index_only_ledger_judges_like_the_in_memory_one() {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for (i, e) in race_log().into_iter().enumerate() {
            reader.put(i as u64 * 10, e.clone());
            builder.push(&e, i as u64 * 10);
        }
        let (mut indexed, _) = builder.finish(reader);
        indexed.set_root(Some(root().public()));
        let reference = secured(race_log());
        assert_eq!(indexed.totals(), reference.totals());
        assert_eq!(indexed.rejected(), reference.rejected());
        assert_eq!(indexed.history(None), reference.history(None));
    }

    /// The ledger's roster view (which reads back only what sorts after the name's first
    /// key was added) is the view the whole history gives, for every name, on a log with
    /// replaced, revoked, removed and re-added keys, a key added under two names, forged
    /// changes and entries rejected for every reason; from memory and from a log alike.
    #[test]
    fn roster_view_is_what_the_whole_history_gives() {
        let (a, b, c, d) = (officer(1), officer(2), officer(3), officer(4));
        let r = root();
        let mut log = race_log();
        let kept = points(11, 3, "Ann", 1, Some(&a));
        log.extend([
            // carol's key also made "Dora"'s: her entries before that add count too.
            add(25, 40, "Dora", &c, &r),
            points(26, 41, "Bo", 3, Some(&c)),
            // alice's key revoked keeping one entry; "ALICE" gets key 4.
            revoke(32, 42, &a, (7, 0, 1), &[&kept]),
            add(33, 43, "ALICE", &d, &r),
            points(34, 44, "Bo", 5, Some(&d)),
            entry_builder(35, 45, "Bo", 6).actor("bob").signed(&d),
            points(36, 46, "Bo", 7, Some(&b)),
            // A forged add for bob's key under "eve" changes nothing.
            add(37, 47, "eve", &b, &b),
        ]);
        let names = [
            "alice", "ALICE", "bob", "Bob", "carol", "dora", "dave", "eve", "nobody",
        ];
        let in_memory = secured(log.clone());
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for (i, e) in log.iter().enumerate() {
            reader.put(i as u64 * 10, e.clone());
            builder.push(e, i as u64 * 10);
        }
        let (mut indexed, _) = builder.finish(reader.clone());
        indexed.set_root(Some(r.public()));
        let mut some_kept = 0;
        for name in names {
            let expected = whole_history_view(in_memory.history(None), r.public(), name);
            some_kept += expected.keys.iter().map(|k| k.counted.len()).sum::<usize>();
            assert_eq!(in_memory.roster_view(name), expected, "{name}");
            assert_eq!(indexed.roster_view(name), expected, "{name}");
        }
        assert!(
            some_kept >= 4,
            "the log exercises kept entries: {some_kept}"
        );
        // Only what sorts after the name's first key was added is read back.
        let first_dave_key_add = log.iter().filter(|e| e.at.unix_ms() >= 33).count();
        let before = reader.reads.load(std::sync::atomic::Ordering::Relaxed);
        let view = indexed.roster_view("alice");
        let read = reader.reads.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert_eq!(
            view.keys.len(),
            1,
            "key 4 only: alice's first key is revoked"
        );
        assert!(read <= first_dave_key_add, "{read} bodies read");
        // A name with no key reads nothing.
        let before = reader.reads.load(std::sync::atomic::Ordering::Relaxed);
        assert!(indexed.roster_view("nobody").keys.is_empty());
        assert_eq!(
            reader.reads.load(std::sync::atomic::Ordering::Relaxed),
            before
        );
    }
}
