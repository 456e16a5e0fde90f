//! The daemon's `LedgerObserver` hook, which the benchmarks time propagation with: it must
//! report the acknowledged adjust on the origin and the merged entry on a peer, with the
//! very entry id the adjust reply carries. And, through the hook, the daemon's threading:
//! its sockets are read while its core thread is busy.

mod common;

use common::{adjust, config, init_tracing, start, wait_until};
use loot_sync::core::sync::Channel;
use loot_sync::daemon::{DaemonOptions, LedgerObserver};
use loot_sync::proto::entry::{Entry, EntryId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    let port = common::free_port();
    let (seen_a, seen_b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let options = |seen: &Arc<Seen>| DaemonOptions {
        observer: Some(seen.clone()),
        ..DaemonOptions::default()
    };
    let a = start(&config(dir.path(), "alice", port), options(&seen_a)).await;
    let b = start(&config(dir.path(), "bob", port), options(&seen_b)).await;
    let id: EntryId = adjust(&a, "Carol", 5, "raid night").await.entry.id;
    assert_eq!(*seen_a.acknowledged.lock().unwrap(), vec![id]);
    wait_until(Duration::from_secs(10), "bob merges alice's entry", || {
        let seen_b = seen_b.clone();
        async move { seen_b.merged.lock().unwrap().contains(&id) }
    })
    .await;
    // A rejected adjust is not acknowledged, and nothing was merged on the origin.
    let rejected = a
        .request(loot_sync::control::Adjust {
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

/// Blocks the core thread the first time entries are merged, until released, and counts
/// the datagrams the socket tasks read from one source meanwhile.
struct Stall {
    from: SocketAddr,
    /// The core thread is inside `merged` right now.
    stalled: Mutex<bool>,
    released: Mutex<bool>,
    wake: Condvar,
    arrived: AtomicUsize,
}

impl Stall {
    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }
}

impl LedgerObserver for Stall {
    fn merged(&self, _entries: &[Entry]) {
        *self.stalled.lock().unwrap() = true;
        // Stands in for a long disk read on the core thread (an answer over a big log, a
        // replay after a roster change): nothing else happens there until it returns.
        let released = self.released.lock().unwrap();
        let _released = self.wake.wait_while(released, |done| !*done).unwrap();
        *self.stalled.lock().unwrap() = false;
    }

    fn datagram_arrived(&self, channel: Channel, from: SocketAddr) {
        if channel == Channel::Whisper && from == self.from {
            self.arrived.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Releases the core thread even when an assertion fails, so the daemon can stop.
struct ReleaseOnDrop(Arc<Stall>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_served_while_the_core_thread_is_busy() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stall = Arc::new(Stall {
        from: sender.local_addr().unwrap(),
        stalled: Mutex::new(false),
        released: Mutex::new(false),
        wake: Condvar::new(),
        arrived: AtomicUsize::new(0),
    });
    let _release = ReleaseOnDrop(stall.clone());
    let a = start(&config(dir.path(), "alice", port), DaemonOptions::default()).await;
    let b = start(
        &config(dir.path(), "bob", port),
        DaemonOptions {
            observer: Some(stall.clone()),
            ..DaemonOptions::default()
        },
    )
    .await;
    // Alice's LOG_ENTRY datagram makes bob's core merge and store the entry: it stalls there.
    adjust(&a, "Carol", 5, "raid night").await;
    wait_until(Duration::from_secs(10), "bob's core thread is busy", || {
        let stall = stall.clone();
        async move { *stall.stalled.lock().unwrap() }
    })
    .await;

    // Meanwhile bob's whisper socket is read: every datagram reaches the receive task.
    const SENT: usize = 200;
    for i in 0..SENT {
        sender.send_to(&[0xee, i as u8], b.whisper_addr).unwrap();
    }
    wait_until(
        Duration::from_secs(10),
        "bob's receive task reads every datagram",
        || {
            let stall = stall.clone();
            async move { stall.arrived.load(Ordering::SeqCst) == SENT }
        },
    )
    .await;
    assert!(
        *stall.stalled.lock().unwrap(),
        "the core thread was busy all along"
    );

    // Once the core is free it handles what waited for it.
    stall.release();
    wait_until(
        Duration::from_secs(10),
        "bob's core drops the junk",
        || async {
            let counters = common::status(&b).await.counters;
            counters
                .iter()
                .filter(|(name, _)| name.starts_with("dropped_") && *name != "dropped_own")
                .map(|(_, count)| *count)
                .sum::<u64>()
                >= SENT as u64
        },
    )
    .await;
    assert_eq!(common::points(&b).await.get("Carol"), Some(&5));
    a.stop().await;
    b.stop().await;
}
