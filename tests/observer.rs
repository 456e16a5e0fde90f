//! The daemon's `LedgerObserver` hook, which the benchmarks time propagation with: it must
//! report the acknowledged adjust on the origin and the merged entry on a peer, with the
//! very entry id the adjust reply carries.

mod common;

use common::{adjust, config, init_tracing, start, wait_until};
use loot_sync::daemon::{DaemonOptions, LedgerObserver};
use loot_sync::proto::entry::{Entry, EntryId};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    acknowledged: Mutex<Vec<EntryId>>,
    merged: Mutex<Vec<EntryId>>,
}

impl LedgerObserver for Seen {
    fn acknowledged(&self, entry: &Entry) {
        self.acknowledged.lock().unwrap().push(entry.id);
    }
    fn merged(&self, entries: &[Entry]) {
        self.merged
            .lock()
            .unwrap()
            .extend(entries.iter().map(|e| e.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_sees_acknowledged_and_merged_entries() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = 47854;
    let (seen_a, seen_b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let options = |seen: &Arc<Seen>| DaemonOptions {
        observer: Some(seen.clone()),
        ..DaemonOptions::default()
    };
    let a = start(&config(dir.path(), "alice", port), options(&seen_a)).await;
    let b = start(&config(dir.path(), "bob", port), options(&seen_b)).await;
    let reply = adjust(&a, "Carol", 5, "raid night").await;
    let id: EntryId = reply["entry"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(*seen_a.acknowledged.lock().unwrap(), vec![id]);
    wait_until(Duration::from_secs(10), "bob merges alice's entry", || {
        let seen_b = seen_b.clone();
        async move { seen_b.merged.lock().unwrap().contains(&id) }
    })
    .await;
    // A rejected adjust is not acknowledged, and nothing was merged on the origin.
    let rejected = a
        .request(loot_sync::control::Request::Adjust {
            player: "Carol".into(),
            delta: 1,
            reason: "   ".into(),
            actor: None,
        })
        .await;
    assert!(rejected.is_err(), "an empty reason is refused");
    assert_eq!(seen_a.acknowledged.lock().unwrap().len(), 1);
    assert!(seen_a.merged.lock().unwrap().is_empty());
    assert!(seen_b.acknowledged.lock().unwrap().is_empty());
    a.stop().await;
    b.stop().await;
}
