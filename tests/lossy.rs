//! Real daemons on loopback multicast with 30 % of received datagrams dropped by the
//! driver's test hook: 8 daemons, 4 officers making 2,000 adjusts in all; all converge.

mod common;

use common::*;
use loot_sync::control::Adjust;
use loot_sync::daemon::DaemonOptions;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_daemons_with_30_percent_loss_converge() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemons = Vec::new();
    for i in 0..8 {
        let options = DaemonOptions {
            receive_drop_rate: 0.30,
            seed: Some(1000 + i),
            ..DaemonOptions::default()
        };
        daemons.push(start(&config(dir.path(), &format!("node{i}"), port), options).await);
    }
    // 4 officers (daemons 0..4) adjust the same 10 players concurrently.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (officer, daemon) in daemons.iter().take(4).enumerate() {
        let path = daemon.control_path.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            for i in 0..500i64 {
                let adjust = Adjust {
                    player: format!("player{}", i % 10),
                    delta: (officer as i64 + 1) * (if i % 3 == 0 { -1 } else { 1 }),
                    reason: format!("officer {officer} #{i}"),
                    actor: None,
                };
                loot_sync::control::call(&path, adjust).expect("adjust acknowledged");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    eprintln!("2000 adjusts acknowledged in {:?}", started.elapsed());
    // Expected totals computed from what was acknowledged.
    let mut expected = std::collections::BTreeMap::new();
    for officer in 0..4i64 {
        for i in 0..500i64 {
            *expected.entry(format!("player{}", i % 10)).or_insert(0) +=
                (officer + 1) * (if i % 3 == 0 { -1 } else { 1 });
        }
    }
    let took = wait_until(
        Duration::from_secs(90),
        "all 8 daemons hold all 2000 entries",
        || {
            let daemons = &daemons;
            let expected = &expected;
            async move {
                for d in daemons {
                    if status(d).await.entries != 2000 || points(d).await != *expected {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    eprintln!("converged {took:?} after the last adjust");
    let reference = history_ids(&daemons[0]).await;
    let mut hook_drops = 0;
    for d in &daemons {
        assert_eq!(history_ids(d).await, reference);
        hook_drops += status(d)
            .await
            .counters
            .get("dropped_by_test_hook")
            .copied()
            .unwrap_or(0);
    }
    assert!(
        hook_drops > 1000,
        "the hook really dropped datagrams: {hook_drops}"
    );
    for d in daemons {
        d.stop().await;
    }
}
