//! When the daemon writes a checkpoint of its log: soon after start-up when there is no
//! usable one, then every [`EVERY_RECORDS`] records appended or every [`EVERY`] with
//! anything appended, and at a graceful shutdown.
//!
//! The snapshot is taken on the core thread (cheap: the flat index is shared, the rest is
//! small); encoding and writing it, which copies the index and fsyncs tens of megabytes at
//! a million entries, run on a thread of their own, one at a time.

use crate::core::ledger::Ledger;
use crate::store::{CheckpointWritten, LogStore, StoreError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Records appended past the checkpoint after which a new one is written.
pub(super) const EVERY_RECORDS: u64 = 50_000;
/// How long after the last checkpoint a new one is written if anything was appended.
pub(super) const EVERY: Duration = Duration::from_secs(300);
/// The least time between two attempts, so a failing disk is not retried in a loop.
const MIN_GAP: Duration = Duration::from_secs(10);

type Writing = JoinHandle<Result<CheckpointWritten, StoreError>>;

/// The core thread's checkpoint schedule and the write in flight, if any.
#[derive(Default)]
pub(super) struct Checkpoints {
    last_attempt: Option<Instant>,
    writing: Option<Writing>,
}

impl Checkpoints {
    /// Called on the core thread after every event: collects a finished write and starts
    /// one when due.
    pub(super) fn tick(&mut self, store: &mut LogStore, ledger: &Ledger) {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        self.collect(store);
        let since = self.last_attempt.map(|at| at.elapsed());
        if since.is_some_and(|since| since < MIN_GAP) {
            return;
        }
        let past = store.records_past_checkpoint();
        let due = !store.checkpoint_describes(ledger)
            || past >= EVERY_RECORDS
            || (past > 0 && since.is_none_or(|since| since >= EVERY));
        if !due {
            return;
        }
        self.last_attempt = Some(Instant::now());
        let job = match store.begin_checkpoint(ledger) {
            // Not now (appends not yet synced, entries not yet stored, totals waiting for a
            // replay): the next tick after MIN_GAP tries again.
            Ok(None) => return,
            Ok(Some(job)) => job,
            Err(err) => {
                warn!("cannot take a checkpoint: {}", err.describe());
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("lootsync-checkpoint".into())
            .spawn(move || {
                let started = Instant::now();
                let written = job.write();
                // The snapshot is freed here, on another thread than the one that built it.
                // In the hour's soak (seed 2121) each daemon's first checkpoint of the quiet
                // tail left 0.2-4.4 MiB more resident for good, with no entry added;
                // freed small blocks stay in glibc's heaps until trimmed.
                crate::node::release_freed_memory();
                if let Ok(written) = &written {
                    info!(
                        "checkpoint of {} entries ({} bytes of log) written in {} ms",
                        written.entries(),
                        written.log_bytes(),
                        started.elapsed().as_millis()
                    );
                }
                written
            });
        match spawned {
            Ok(handle) => self.writing = Some(handle),
            Err(err) => warn!("cannot start the checkpoint thread: {err}"),
        }
    }

    /// At a graceful shutdown, with the log flushed: lets a write in flight finish, then
    /// writes a checkpoint covering the whole log unless the one on disk already does.
    pub(super) fn at_shutdown(&mut self, store: &mut LogStore, ledger: &Ledger) {
        self.join(store);
        let started = Instant::now();
        match store.write_checkpoint(ledger) {
            Ok(Some(written)) => info!(
                "checkpoint of {} entries ({} bytes of log) written at shutdown in {} ms",
                written.entries(),
                written.log_bytes(),
                started.elapsed().as_millis()
            ),
            Ok(None) if ledger.replay_pending() => info!(
                "no checkpoint at shutdown: the totals wait for a replay after a roster change \
                 (the next start replays the log past the last checkpoint)"
            ),
            Ok(None) => {}
            Err(err) => warn!("cannot write a checkpoint at shutdown: {}", err.describe()),
        }
    }

    /// Waits for a write in flight and records its outcome.
    fn join(&mut self, store: &mut LogStore) {
        if let Some(writing) = self.writing.take() {
            record(store, writing.join());
        }
    }

    /// Records the outcome of a write that has finished.
    fn collect(&mut self, store: &mut LogStore) {
        if self.writing.as_ref().is_some_and(JoinHandle::is_finished) {
            self.join(store);
        }
    }
}

fn record(
    store: &mut LogStore,
    outcome: std::thread::Result<Result<CheckpointWritten, StoreError>>,
) {
    match outcome {
        Ok(Ok(written)) => store.finish_checkpoint(&written),
        Ok(Err(err)) => warn!("cannot write a checkpoint: {}", err.describe()),
        Err(_) => error!("the checkpoint thread panicked"),
    }
}

impl Drop for Checkpoints {
    /// A write in flight finishes before the log's lock can go (after a crash of the core
    /// thread the driver, and with it the store, is dropped): two processes never write
    /// one checkpoint file at once.
    fn drop(&mut self) {
        if let Some(writing) = self.writing.take() {
            let _ = writing.join();
        }
    }
}
