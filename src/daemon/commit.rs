//! The group-commit thread: fdatasyncs of merged remote entries run here, so a slow disk
//! delays neither the sockets nor the core thread, and the outcome comes back to the core
//! thread as an event.

use super::event::Event;
use crate::store::PendingSync;
use std::sync::mpsc;

/// Hands syncs to the group-commit thread.
pub(super) struct Committer {
    syncs: mpsc::Sender<PendingSync>,
}

impl Committer {
    /// Starts the thread; it reports each outcome on `events` and ends when the committer
    /// is dropped.
    pub(super) fn spawn(events: mpsc::Sender<Event>) -> std::io::Result<Committer> {
        let (syncs, pending) = mpsc::channel::<PendingSync>();
        std::thread::Builder::new()
            .name("lootsync-commit".into())
            .spawn(move || {
                for sync in pending {
                    if events.send(Event::Flushed(sync.run())).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Committer { syncs })
    }

    /// Queues a sync; its outcome arrives as [`Event::Flushed`]. Returns the sync back when
    /// the thread is gone, so the caller can run it itself.
    pub(super) fn commit(&self, sync: PendingSync) -> Result<(), PendingSync> {
        self.syncs.send(sync).map_err(|err| err.0)
    }
}
