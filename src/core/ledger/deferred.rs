//! Replays run off the caller's thread: when a roster change sorts before entries already
//! held, every verdict after it may change and the totals must be summed again from every
//! body in the log: about 1 µs an entry in a release build, so about a second at a million
//! entries and many seconds in a debug build under load, too long for a daemon's core
//! thread, which must keep answering heartbeats and sync requests meanwhile (the soak found
//! peers dropping a node that stalled 11.5 s on one).
//!
//! So a ledger told to [`super::Ledger::defer_replays`] does not replay inside the insert
//! that needs it. It marks its totals stale and hands out a [`ReplayJob`]: a snapshot of the
//! index and roster ([`HistorySource`]) that sums the totals wherever the caller runs it.
//! Entries the ledger accounts after the snapshot are tallied apart; the job's
//! [`ReplayResult`] plus that tally are the totals of the whole log. A roster change that
//! needs another replay while one runs (or a new root key) makes its result stale: the
//! running job is told to stop early (it looks every few thousand entries), its result is
//! dropped and a new job handed out. Until a result is taken in, totals and the rejected
//! count lag, no checkpoint is taken (it would persist stale totals), and the owner must
//! not compute new entries from the totals ([`super::Ledger::replay_pending`]).
//!
//! Without deferral (the default, as in the offline CLI and most tests) replays run at once,
//! as before.

use super::history::HistorySource;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a ledger knows about replays it hands out.
#[derive(Debug, Default)]
pub(super) struct Deferral {
    /// Whether replays are handed out ([`ReplayJob`]) rather than run at once.
    pub(super) enabled: bool,
    /// A replay is needed and not handed out yet: totals are stale.
    pub(super) wanted: bool,
    /// The stop flag of the replay handed out and not taken back yet: it tells the job to
    /// stop early, and, shared with no other job, names it when its result comes back.
    pub(super) in_flight: Option<Arc<AtomicBool>>,
}

/// A copy of a ledger does not share its original's replay: the job running is the
/// original's (its stop flag too), so the copy wants one of its own if totals are stale.
impl Clone for Deferral {
    fn clone(&self) -> Deferral {
        Deferral {
            enabled: self.enabled,
            wanted: self.pending(),
            in_flight: None,
        }
    }
}

impl Deferral {
    /// Whether totals are stale until a replay's result is taken in.
    pub(super) fn pending(&self) -> bool {
        self.wanted || self.in_flight.is_some()
    }

    /// Another replay is needed: one running is stale, so it is told to stop.
    pub(super) fn want(&mut self) {
        self.wanted = true;
        self.abandon();
    }

    /// The ledger replayed at once: nothing is wanted, and a replay running is stale.
    pub(super) fn settle(&mut self) {
        self.wanted = false;
        self.abandon();
        self.in_flight = None;
    }

    /// Tells the replay running, if any, to stop early; it stays pending.
    pub(super) fn abandon(&mut self) {
        if let Some(stop) = &self.in_flight {
            stop.store(true, Ordering::Relaxed);
        }
    }

    /// Hands out a new replay's stop flag.
    pub(super) fn issue(&mut self) -> Arc<AtomicBool> {
        self.wanted = false;
        let stop = Arc::new(AtomicBool::new(false));
        self.in_flight = Some(stop.clone());
        stop
    }

    /// What `result` is to the ledger; once it is known, that replay is no longer
    /// running. A result is matched by its job's stop flag, which no other job shares.
    pub(super) fn finish(&mut self, result: &ReplayResult) -> Finished {
        let running = self
            .in_flight
            .as_ref()
            .is_some_and(|stop| Arc::ptr_eq(stop, &result.stop));
        if !running {
            return Finished::NotRunning;
        }
        self.in_flight = None;
        match self.wanted {
            true => Finished::Stale,
            false => Finished::Current,
        }
    }
}

/// What a replay's result is to the ledger that handed it out.
pub(super) enum Finished {
    /// Not the replay running (one from before the ledger replayed at once, or another
    /// ledger's): ignored.
    NotRunning,
    /// The replay running, but another became needed since: dropped.
    Stale,
    /// The replay running, and nothing changed verdicts since: taken in.
    Current,
}

/// What entries accounted since a replay's snapshot added to the totals: the replay's
/// result does not include them.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    /// Counted deltas by target.
    pub(super) totals: BTreeMap<String, i64>,
    /// Entries rejected.
    pub(super) rejected: u64,
}

/// A replay of the whole log handed out by a ledger: run it anywhere (it reads entry bodies
/// through the ledger's reader, which is `Send`) and give the result back with
/// [`super::Ledger::finish_replay`].
pub struct ReplayJob {
    entries: usize,
    source: HistorySource,
    /// Set by the ledger when the result would be stale.
    stop: Arc<AtomicBool>,
}

impl ReplayJob {
    pub(super) fn new(entries: usize, source: HistorySource, stop: Arc<AtomicBool>) -> ReplayJob {
        ReplayJob {
            entries,
            source,
            stop,
        }
    }

    /// How many entries the replay judges (for logs).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Judges every entry of the snapshot in replay order and sums what counts. Entries
    /// whose body cannot be read are left out, as a replay on the ledger's own thread
    /// leaves them (the read error is logged). Stops early, with no totals, once the ledger
    /// has said the result would be stale.
    pub fn run(self) -> ReplayResult {
        ReplayResult {
            summed: self.source.totals(&self.stop),
            stop: self.stop,
        }
    }

    /// A result that sums nothing, for a job that could not run to the end (its thread
    /// panicked): the ledger refuses it and wants another replay.
    pub fn failed(&self) -> ReplayResult {
        ReplayResult {
            summed: None,
            stop: self.stop.clone(),
        }
    }
}

/// The totals and rejected count a [`ReplayJob`] summed.
pub struct ReplayResult {
    /// `None` when the job stopped early or failed.
    pub(super) summed: Option<(BTreeMap<String, i64>, u64)>,
    /// The job's stop flag: which job it was.
    stop: Arc<AtomicBool>,
}

impl ReplayResult {
    /// Whether the job stopped early (its result would have been stale) or failed.
    pub fn stopped_early(&self) -> bool {
        self.summed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::test_support::{entry_builder, officer, root, MemoryReader};
    use crate::core::ledger::{Ledger, LedgerBuilder};
    use crate::core::rng::SeededRng;
    use crate::proto::entry::{Entry, EntryKind};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn points(ms: u64, seed: u8, target: &str, delta: i64, by: u8) -> Entry {
        entry_builder(ms, seed, target, delta)
            .actor(format!("officer{by}"))
            .signed(&officer(by))
    }

    fn change(ms: u64, seed: u8, name: &str, kind: EntryKind) -> Entry {
        entry_builder(ms, seed, name, 0).kind(kind).signed(&root())
    }

    fn add(ms: u64, seed: u8, n: u8) -> Entry {
        change(
            ms,
            seed,
            &format!("officer{n}"),
            EntryKind::OfficerAdd {
                public_key: officer(n).public(),
            },
        )
    }

    fn remove(ms: u64, seed: u8, n: u8) -> Entry {
        change(ms, seed, &format!("officer{n}"), EntryKind::OfficerRemove)
    }

    /// Officers 1 and 2 added, then `n` entries of 1 point for Ann signed by them in turn.
    fn two_officers_log(n: u64) -> Vec<Entry> {
        let mut log = vec![add(10, 1, 1), add(11, 2, 2)];
        log.extend((0..n).map(|i| points(100 + i, 10 + i as u8, "Ann", 1, 1 + (i % 2) as u8)));
        log
    }

    /// A daemon-like ledger judged under the root key: `stored` read back through a
    /// counting reader, replays deferred.
    fn stored_ledger(stored: &[Entry]) -> (Ledger, Arc<MemoryReader>) {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for (i, e) in stored.iter().enumerate() {
            reader.put(100 + i as u64, e.clone());
            builder.push(e, 100 + i as u64);
        }
        let (mut ledger, _) = builder.finish(reader.clone());
        ledger.set_root(Some(root().public()));
        ledger.defer_replays(true);
        (ledger, reader)
    }

    /// What the same entries give replayed at once: the reference.
    fn replayed_at_once(ledger: &Ledger) -> Ledger {
        let (mut reference, _) = Ledger::from_entries(ledger.iter());
        reference.set_root(Some(root().public()));
        reference
    }

    fn assert_same_totals(ledger: &Ledger, reference: &Ledger) {
        assert_eq!(ledger.totals(), reference.totals());
        assert_eq!(ledger.rejected(), reference.rejected());
    }

    /// The regression test for the soak's stalled heals: a roster change that sorts before
    /// held entries no longer reads the log back inside the insert. The totals wait for the
    /// job, and the job's result (with an entry accounted while it ran) is what a replay at
    /// once gives.
    #[test]
    fn an_early_roster_change_hands_out_a_replay_instead_of_reading_the_log() {
        let (mut ledger, reader) = stored_ledger(&two_officers_log(40));
        assert_eq!(ledger.total("Ann"), 40);
        reader.reads.store(0, Ordering::Relaxed);

        // Officer 1 removed at 50, before all their 20 entries: made across a partition.
        let removal = remove(50, 3, 1);
        // Stored, as the daemon stores it right after: only the replay keeps a checkpoint
        // from being taken.
        reader.put(1_000, removal.clone());
        assert!(ledger.insert(removal.clone()));
        ledger.mark_stored(&removal.key(), 1_000);
        assert_eq!(
            reader.reads.load(Ordering::Relaxed),
            0,
            "nothing read inline"
        );
        assert!(ledger.replay_pending());
        assert_eq!(
            ledger.total("Ann"),
            40,
            "stale until the replay is taken in"
        );
        assert!(ledger.snapshot().is_none(), "no checkpoint of stale totals");

        let job = ledger.take_replay().expect("a replay is handed out");
        assert!(ledger.take_replay().is_none(), "one at a time");
        assert_eq!(job.entries(), 43);
        // Accounted while the job runs: an entry by officer 2, one by the removed officer.
        for (offset, entry) in [
            (1_001, points(200, 90, "Ann", 5, 2)),
            (1_002, points(201, 91, "Bo", 7, 1)),
        ] {
            reader.put(offset, entry.clone());
            assert!(ledger.insert(entry.clone()));
            ledger.mark_stored(&entry.key(), offset);
        }
        let result = job.run();
        assert!(
            reader.reads.load(Ordering::Relaxed) >= 40,
            "the job read the log"
        );
        assert!(ledger.finish_replay(result));
        assert!(!ledger.replay_pending());
        assert_eq!(ledger.total("Ann"), 25);
        assert_eq!(ledger.total("Bo"), 0);
        assert_same_totals(&ledger, &replayed_at_once(&ledger));
        assert!(ledger.snapshot().is_some());
    }

    /// A second early roster change while a replay runs makes that replay's result stale:
    /// it is refused, and the next job's result is right.
    #[test]
    fn a_replay_overtaken_by_another_roster_change_is_dropped() {
        let (mut ledger, _) = stored_ledger(&two_officers_log(20));
        assert!(ledger.insert(remove(50, 3, 1)));
        let first = ledger.take_replay().expect("first job");
        assert!(ledger.insert(remove(60, 4, 2)));
        assert!(ledger.take_replay().is_none(), "still one in flight");
        let first = first.run();
        assert!(first.stopped_early(), "told to stop once stale");
        assert!(!ledger.finish_replay(first), "stale result refused");
        assert!(ledger.replay_pending());
        let second = ledger.take_replay().expect("a new job");
        assert!(ledger.finish_replay(second.run()));
        assert_eq!(ledger.total("Ann"), 0);
        assert_same_totals(&ledger, &replayed_at_once(&ledger));
    }

    /// A copy of a ledger wants a replay of its own: a change to the copy does not stop
    /// the original's job, and the copy does not take that job's result.
    #[test]
    fn a_copy_of_a_ledger_does_not_share_its_replay() {
        let (mut ledger, _) = stored_ledger(&two_officers_log(20));
        assert!(ledger.insert(remove(50, 3, 1)));
        let job = ledger.take_replay().expect("a job");
        let mut copy = ledger.clone();
        assert!(copy.replay_pending());
        assert!(copy.insert(remove(60, 4, 2)));
        let result = job.run();
        assert!(!result.stopped_early(), "the copy's change did not stop it");
        assert!(!copy.finish_replay(result), "not the copy's job");
        let own = copy.take_replay().expect("the copy's own job");
        assert!(copy.finish_replay(own.run()));
        assert_eq!(copy.total("Ann"), 0);
        assert_same_totals(&copy, &replayed_at_once(&copy));
    }

    /// A new root key (a reload) is replayed by a job too, and a result from before it is
    /// refused.
    #[test]
    fn a_new_root_key_hands_out_a_replay_and_refuses_the_old_one() {
        let stored = vec![add(10, 1, 1), points(100, 10, "Ann", 3, 1)];
        let (mut ledger, reader) = stored_ledger(&stored);
        assert!(ledger.insert(remove(50, 3, 1)));
        let job = ledger.take_replay().expect("job");
        reader.reads.store(0, Ordering::Relaxed);
        ledger.set_root(None);
        assert!(
            reader.reads.load(Ordering::Relaxed) <= 1,
            "only roster bodies read inline"
        );
        assert!(ledger.replay_pending());
        let old = job.run();
        assert!(
            old.stopped_early(),
            "judged under the old root: told to stop"
        );
        assert!(!ledger.finish_replay(old));
        let job = ledger.take_replay().expect("a job under the new root");
        assert!(ledger.finish_replay(job.run()));
        assert_eq!(ledger.total("Ann"), 3, "open roster: everything counts");
        assert_eq!(ledger.rejected(), 2, "the roster entries count for nothing");
    }

    /// Turning deferral off runs a wanted replay at once (a result handed out before is
    /// then refused), and later replays too.
    #[test]
    fn turning_deferral_off_replays_at_once() {
        let stored = vec![add(10, 1, 1), points(100, 10, "Ann", 3, 1)];
        let (mut ledger, _) = stored_ledger(&stored);
        assert!(ledger.insert(remove(50, 3, 1)));
        let job = ledger.take_replay().expect("job");
        assert_eq!(ledger.total("Ann"), 3);
        ledger.defer_replays(false);
        assert!(!ledger.replay_pending());
        assert_eq!(ledger.total("Ann"), 0);
        assert!(!ledger.finish_replay(job.run()), "replayed at once since");
        assert_eq!(ledger.total("Ann"), 0);
        // Re-added before the entry: replayed at once too.
        assert!(ledger.insert(add(60, 4, 1)));
        assert!(ledger.take_replay().is_none());
        assert!(!ledger.replay_pending());
        assert_eq!(ledger.total("Ann"), 3);
    }

    /// A revocation of `n`'s key keeping nothing, complete in one part.
    fn revoke(ms: u64, seed: u8, n: u8) -> Entry {
        let kind = EntryKind::OfficerRevoke {
            public_key: officer(n).public(),
            batch: [seed; 8],
            part: 0,
            parts: 1,
            keep: Vec::new(),
        };
        change(ms, seed, &format!("officer{n}"), kind)
    }

    /// Whatever the interleaving of inserts (roster changes anywhere, revocations, point
    /// entries by officers in and out of the roster; alone or in merge batches), of the
    /// root key set again, of handing jobs out and of taking results back, once the last
    /// result is in the totals are what a replay at once gives.
    #[test]
    fn deferred_replays_end_where_replays_at_once_end() {
        let (mut used, mut refused) = (0, 0);
        let mut finish = |ledger: &mut Ledger, job: ReplayJob| match ledger.finish_replay(job.run())
        {
            true => used += 1,
            false => refused += 1,
        };
        for seed in 0..200u64 {
            let mut rng = SeededRng::new(seed);
            let stored: Vec<Entry> = (1..=3).map(|n| add(n, n as u8, n as u8)).collect();
            let (mut ledger, _) = stored_ledger(&stored);
            let mut running: Vec<ReplayJob> = Vec::new();
            let mut in_batch = false;
            for step in 0..60u64 {
                let ms = 10 + rng.below(1_000);
                let seed_byte = (step as u8).wrapping_mul(3).wrapping_add(50);
                let n = 1 + rng.below(3) as u8;
                if !in_batch && rng.chance(0.1) {
                    ledger.begin_batch();
                    in_batch = true;
                } else if in_batch && rng.chance(0.3) {
                    ledger.end_batch();
                    in_batch = false;
                }
                if !in_batch && rng.chance(0.03) {
                    // A reload under another root key and back: replays handed out.
                    ledger.set_root(None);
                    ledger.set_root(Some(root().public()));
                }
                let entry = match rng.below(20) {
                    0 | 1 => remove(ms, seed_byte, n),
                    2 | 3 => add(ms, seed_byte, n),
                    4 => revoke(ms, seed_byte, n),
                    _ => points(
                        ms,
                        seed_byte,
                        ["Ann", "Bo"][rng.below(2) as usize],
                        1 + rng.below(9) as i64,
                        n,
                    ),
                };
                ledger.insert(entry);
                if rng.chance(0.3) {
                    running.extend(ledger.take_replay());
                }
                if !running.is_empty() && rng.chance(0.3) {
                    finish(&mut ledger, running.remove(0));
                }
            }
            if in_batch {
                ledger.end_batch();
            }
            for job in running.drain(..) {
                finish(&mut ledger, job);
            }
            while let Some(job) = ledger.take_replay() {
                assert!(ledger.finish_replay(job.run()), "seed {seed}");
            }
            assert!(!ledger.replay_pending(), "seed {seed}");
            let reference = replayed_at_once(&ledger);
            assert_eq!(ledger.totals(), reference.totals(), "seed {seed}");
            assert_eq!(ledger.rejected(), reference.rejected(), "seed {seed}");
        }
        // The interleavings took results in and refused stale ones.
        assert!(used > 100 && refused > 10, "used {used}, refused {refused}");
    }
}
