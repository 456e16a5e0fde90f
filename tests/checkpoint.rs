//! Checkpoints end to end: offline commands print the same with and without one (the real
//! binary, no daemon), write one once enough of the log lies past the last, and a daemon
//! writes one at shutdown that its restart loads.

mod common;

use common::{config, free_port, group_name, start, status};
use loot_sync::daemon::DaemonOptions;
use loot_sync::proto::entry::{Entry, EntryKind};
use loot_sync::store::{checkpoint_path, LogStore, StateLock};
use loot_sync::testing::EntryBuilder;
use std::path::{Path, PathBuf};

/// `count` entries for a few players, one of them a (rejected: no root key) roster entry
/// every hundred.
fn log_entries(from: u64, count: u64) -> Vec<Entry> {
    (from..from + count)
        .map(|i| {
            let builder = EntryBuilder::at_ms(1_700_000_000_000 + i * 1000)
                .id_random([(i % 251) as u8, (i / 251) as u8, 3, 4, 5, 6, 7, 8, 9, 10])
                .actor("alice")
                .reason(format!("raid night {i}"));
            match i % 100 {
                99 => builder
                    .target("bob")
                    .delta(0)
                    .kind(EntryKind::OfficerRemove)
                    .build(),
                _ => builder
                    .target(["Ann", "Bo", "Cy", "Dee", "Eve"][i as usize % 5])
                    .delta(match (i % 17) as i64 - 8 {
                        0 => 9,
                        delta => delta,
                    })
                    .build(),
            }
        })
        .collect()
}

/// Appends `entries` to the log of `group` in `state` (created if missing).
fn append(state: &Path, group: &str, entries: &[Entry]) {
    std::fs::create_dir_all(state).unwrap();
    let lock = StateLock::acquire(state).unwrap();
    let (mut store, _, _) = LogStore::open(lock, group).unwrap();
    store.append(entries).unwrap();
    store.sync().unwrap();
}

fn run(config: &Path, args: &[&str]) -> (String, String) {
    let out = common::run_cli(config, args);
    assert!(
        out.status.success(),
        "lootsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// What an adjust prints, without the new entry's id (random on each run).
fn without_id(adjusted: &str) -> String {
    adjusted
        .rsplit_once(" [")
        .map_or(adjusted, |(text, _)| text)
        .to_string()
}

const READS: [&[&str]; 8] = [
    &["points"],
    &["points", "--json"],
    &["history", "--player", "Cy"],
    &["history", "--player", "bob"],
    &["history", "--player", "nobody"],
    &["history", "--json"],
    &["export"],
    &["export", "--history", "--format", "json"],
];

#[test]
fn offline_commands_print_the_same_with_and_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let group = group_name(port);
    let config = common::write_config_file(dir.path(), "alice", port);
    let state = dir.path().join("state");
    let log = LogStore::log_path(&state, &group);
    let checkpoint = checkpoint_path(&log);
    append(&state, &group, &log_entries(0, 1500));

    // Without a checkpoint: each command replays the whole log (and, finding more than
    // OFFLINE_CHECKPOINT_RECORDS uncovered, writes one, removed again before the next).
    let mut without = Vec::new();
    for args in READS {
        let _ = std::fs::remove_file(&checkpoint);
        without.push(run(&config, args));
        assert!(checkpoint.exists(), "{args:?} wrote a checkpoint");
    }
    // With one: the same bytes on stdout and stderr.
    for (args, expected) in READS.iter().zip(&without) {
        assert_eq!(&run(&config, args), expected, "{args:?}");
    }
    let written = std::fs::read(&checkpoint).unwrap();

    // An adjust on a copy without the checkpoint and on one with it: the same answer, the
    // same standings after.
    let other_dir = tempfile::tempdir().unwrap();
    let other_config = common::write_config_file(other_dir.path(), "alice", port);
    let other_state = other_dir.path().join("state");
    std::fs::create_dir_all(&other_state).unwrap();
    std::fs::copy(&log, LogStore::log_path(&other_state, &group)).unwrap();
    let adjust = [
        "adjust", "--player", "Cy", "--delta", "5", "--reason", "late",
    ];
    let (with_out, with_err) = run(&config, &adjust);
    let (plain_out, plain_err) = run(&other_config, &adjust);
    assert_eq!(without_id(&with_out), without_id(&plain_out));
    // stderr names the log written to, which differs; nothing else may.
    let (here, there) = (
        dir.path().to_str().unwrap(),
        other_dir.path().to_str().unwrap(),
    );
    assert_eq!(with_err, plain_err.replace(there, here));
    assert_eq!(run(&config, &["points"]), run(&other_config, &["points"]));
    // One record past the checkpoint: it stays as it was, and is still used.
    assert_eq!(std::fs::read(&checkpoint).unwrap(), written);

    // Enough records past it: the next offline command writes a new one.
    append(&state, &group, &log_entries(5000, 1100));
    run(&config, &["points"]);
    let rewritten = std::fs::read(&checkpoint).unwrap();
    assert!(
        rewritten.len() > written.len(),
        "a checkpoint of more entries"
    );
    for args in READS {
        let _ = run(&config, args);
    }
}

/// Written at a graceful stop, loaded by the restart (the `checkpoint_entries` counter
/// says how many entries came from it) with the same ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_writes_a_checkpoint_at_shutdown_and_its_restart_uses_it() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), "alice", port);
    append(&cfg.state_dir, &cfg.group.name, &log_entries(0, 300));
    let checkpoint: PathBuf = checkpoint_path(&LogStore::log_path(&cfg.state_dir, &cfg.group.name));

    let daemon = start(&cfg, DaemonOptions::default()).await;
    for i in 0..3 {
        common::adjust(&daemon, "Zed", i + 1, "checkpoint test").await;
    }
    let totals = common::points(&daemon).await;
    let history = common::history_ids(&daemon).await;
    daemon.stop().await;
    assert!(checkpoint.exists(), "written at shutdown");

    let daemon = start(&cfg, DaemonOptions::default()).await;
    let counters = status(&daemon).await.counters;
    assert_eq!(
        counters.get("checkpoint_entries"),
        Some(&303),
        "{counters:?}"
    );
    assert_eq!(common::points(&daemon).await, totals);
    assert_eq!(common::history_ids(&daemon).await, history);
    daemon.stop().await;
}
