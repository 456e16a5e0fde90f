//! `/events`: server-sent events that tell an open page the ledger (or the sync state it
//! shows) changed, so it can fetch itself again without a reload.
//!
//! One watcher per daemon asks the core for `status` every [`POLL`], and only while at
//! least one page is listening; each listener gets an event when the summary it shows
//! (entries, fingerprint, sync, peers in sync, whether totals wait for a replay) differs
//! from the last one. A stream ends after [`STREAM_LIFETIME`]; the browser's `EventSource`
//! reconnects by itself.

use super::query::ask;
use super::router::AppState;
use crate::control::server::Dispatch;
use crate::control::{Status, StatusResult};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the watcher asks the core while someone listens.
pub(super) const POLL: Duration = Duration::from_secs(1);
/// How long one event stream lasts before the browser is made to reconnect.
pub(super) const STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long the browser waits before reconnecting a stream that ended.
const RETRY: Duration = Duration::from_secs(2);

/// What a page's summary shows: an event goes out when this changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Mark {
    /// Entries in the log.
    pub entries: usize,
    /// The set fingerprint (changes with every entry).
    pub fingerprint: String,
    /// Whether sync is on.
    pub sync_enabled: bool,
    /// Peers whose fingerprint equals ours.
    pub peers_in_sync: usize,
    /// Peers known.
    pub peers: usize,
    /// Whether the totals wait for a replay after a roster change: the page fetches itself
    /// again when the replay's totals are taken in, though no entry was added.
    pub replay_pending: bool,
}

impl Mark {
    pub(super) fn of(status: &StatusResult) -> Mark {
        Mark {
            entries: status.entries,
            fingerprint: status.fingerprint.clone(),
            sync_enabled: status.sync_enabled,
            peers_in_sync: status.peers.iter().filter(|p| p.in_sync).count(),
            peers: status.peers.len(),
            replay_pending: status
                .counters
                .get("replay_pending")
                .is_some_and(|&n| n > 0),
        }
    }
}

/// The latest [`Mark`], shared by every listener.
#[derive(Clone)]
pub(super) struct Live {
    marks: Arc<watch::Sender<Option<Mark>>>,
}

impl Live {
    pub(super) fn new() -> Live {
        Live {
            marks: Arc::new(watch::Sender::new(None)),
        }
    }

    /// The watcher task: polls the core while anyone listens.
    pub(super) fn watch(
        &self,
        core: Arc<dyn Dispatch>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let marks = self.marks.clone();
        async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if marks.receiver_count() == 0 {
                    continue;
                }
                // A failed ask (shutting down, busy) skips a beat; the next one tries again.
                if let Ok(status) = ask(&core, Status {}).await {
                    marks.send_if_modified(|mark| {
                        let now = Some(Mark::of(&status));
                        let changed = *mark != now;
                        *mark = now;
                        changed
                    });
                }
            }
        }
    }
}

/// The event stream: the current summary at once, then each change.
pub(super) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut marks = state.live.marks.subscribe();
    // The current value counts as unseen, so a new listener hears it at once.
    marks.mark_changed();
    let ends = Instant::now() + STREAM_LIFETIME;
    let stream = futures_util::stream::unfold(marks, move |mut marks| async move {
        loop {
            match tokio::time::timeout_at(ends, marks.changed()).await {
                Ok(Ok(())) => {}
                // Watcher gone (daemon stopping) or the stream's time is up.
                Ok(Err(_)) | Err(_) => return None,
            }
            let mark = marks.borrow_and_update().clone();
            if let Some(mark) = mark {
                let data = serde_json::to_string(&mark).unwrap_or_default();
                let event = Event::default().event("ledger").retry(RETRY).data(data);
                return Some((Ok(event), marks));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
