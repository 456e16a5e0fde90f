//! The replay thread: when a merged roster change sorts before entries already held, the
//! ledger's totals must be summed again from every body in the log, which takes seconds on a
//! large log. The ledger hands that work out as a [`ReplayJob`]; it runs here, and the
//! result comes back to the core thread as an event, so heartbeats and sync answers go on
//! meanwhile (a daemon that stalled 11.5 s on one was dropped by its peers in the soak).

use super::event::Event;
use crate::core::ledger::ReplayJob;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Instant;
use tracing::{debug, info, Span};

/// Hands replays to the replay thread.
pub(super) struct Replayer {
    jobs: mpsc::Sender<ReplayJob>,
}

impl Replayer {
    /// Starts the thread; it reports each result on `events` and ends when the replayer is
    /// dropped. Its log lines are in `span` (the daemon's, which names the node).
    pub(super) fn spawn(events: mpsc::Sender<Event>, span: Span) -> std::io::Result<Replayer> {
        let (jobs, queued) = mpsc::channel::<ReplayJob>();
        std::thread::Builder::new()
            .name("lootsync-replay".into())
            .spawn(move || {
                let _enter = span.enter();
                for job in queued {
                    let started = Instant::now();
                    let entries = job.entries();
                    let failure = job.failed();
                    // A panic here would leave the ledger waiting for a result forever (and
                    // taking no checkpoint): the core thread is told instead.
                    let (result, failed) =
                        match std::panic::catch_unwind(AssertUnwindSafe(|| job.run())) {
                            Ok(result) => (result, false),
                            Err(_) => (failure, true),
                        };
                    let took = started.elapsed().as_millis();
                    match (failed, result.stopped_early()) {
                        (true, _) => {}
                        (false, true) => debug!(
                            target: "sync",
                            "SYNC replay of {entries} entries stopped after {took} ms: another roster change needs a new one"
                        ),
                        (false, false) => info!(
                            "replayed {entries} entries after a roster change in {took} ms"
                        ),
                    }
                    if events.send(Event::Replayed { result, failed }).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Replayer { jobs })
    }

    /// Queues a replay; its result arrives as [`Event::Replayed`]. Returns the job back
    /// when the thread is gone (it never ends while the replayer lives, even when a replay
    /// panics), so the caller can run it itself.
    pub(super) fn replay(&self, job: ReplayJob) -> Result<(), Box<ReplayJob>> {
        self.jobs.send(job).map_err(|err| Box::new(err.0))
    }
}
