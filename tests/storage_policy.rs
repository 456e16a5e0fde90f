//! `storage.fsync` in a real daemon: under "always" every batch of entries merged from
//! peers is fsynced as it is appended; under "batch" merged entries are group-committed.

mod common;

use common::*;
use loot_sync::config::FsyncPolicy;
use loot_sync::daemon::{DaemonOptions, RunningDaemon};
use std::time::Duration;

async fn counter(d: &RunningDaemon, name: &str) -> u64 {
    status(d).await.counters.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_fsyncs_every_merged_batch_and_batch_group_commits() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let with = |node: &str, fsync: FsyncPolicy| {
        // The group name comes from the port and this process's id (`common::group_name`):
        // no other test or checkout shares this ledger, even on the same port.
        let mut config = config(dir.path(), node, port);
        config.storage.fsync = fsync;
        config.storage.batch_interval = Duration::from_secs(5);
        config
    };
    let source = start(
        &with("source", FsyncPolicy::Batch),
        DaemonOptions::default(),
    )
    .await;
    for i in 0..60 {
        adjust(&source, &format!("player{}", i % 5), i + 1, "attendance").await;
    }
    // Local adjusts are durable before success under either policy: one fsync each.
    assert_eq!(counter(&source, "log_fsyncs").await, 60);
    let expected = points(&source).await;

    let always = start(
        &with("always", FsyncPolicy::Always),
        DaemonOptions::default(),
    )
    .await;
    let batch = start(&with("batch", FsyncPolicy::Batch), DaemonOptions::default()).await;
    wait_until(
        Duration::from_secs(10),
        "both joiners caught up",
        || async { points(&always).await == expected && points(&batch).await == expected },
    )
    .await;

    let appends = counter(&always, "log_remote_appends").await;
    assert!(appends > 0);
    assert_eq!(
        counter(&always, "log_fsyncs").await,
        appends,
        "always: one fsync per merged batch, right away"
    );
    // batch: at most one group commit so far (normally none yet), however many batches
    // arrived...
    let batch_appends = counter(&batch, "log_remote_appends").await;
    assert!(batch_appends > 0);
    assert!(counter(&batch, "log_fsyncs").await <= 1);
    // ...and the commit does come, within the interval.
    wait_until(
        Duration::from_secs(5),
        "batch mode group commit",
        || async { counter(&batch, "log_fsyncs").await >= 1 },
    )
    .await;
    for d in [source, always, batch] {
        d.stop().await;
    }
}
