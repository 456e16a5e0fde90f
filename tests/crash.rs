//! Crash safety with the real binary: a daemon killed with SIGKILL keeps every adjust that
//! reported success, and a log with a torn last record opens with a warning and loses only
//! that record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_lootsync");

/// Writes a config for a test of its own (its own port and group name); returns the config
/// path and the path the group's log will have.
fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
    let port = common::free_port();
    let config = common::write_config_file(dir, "crashy", port);
    let log = dir
        .join("state")
        .join(format!("{}.lootlog", common::group_name(port)));
    (config, log)
}

fn cli(config: &Path, args: &[&str]) -> Output {
    common::run_cli(config, args)
}

fn points(config: &Path) -> BTreeMap<String, i64> {
    let out = cli(config, &["points", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("points --json prints one JSON object")
}

/// Starts `lootsync run`; the caller kills and waits for the child.
fn spawn_daemon(config: &Path) -> Child {
    spawn_daemon_logging(config, Stdio::null())
}

/// Starts `lootsync run` with its stderr (the log) going to `stderr`.
#[allow(clippy::zombie_processes)]
fn spawn_daemon_logging(config: &Path, stderr: Stdio) -> Child {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn daemon");
    // Poll until the daemon answers on its control socket.
    let start = Instant::now();
    loop {
        let out = cli(config, &["status", "--json"]);
        if out.status.success() {
            return child;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daemon did not come up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_keeps_every_acknowledged_adjust() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path());
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for round in 0..3 {
        let mut daemon = spawn_daemon(&config);
        for i in 0..10 {
            let player = format!("p{}", i % 3);
            let delta = (round * 10 + i + 1) as i64;
            let out = cli(
                &config,
                &[
                    "adjust",
                    "--player",
                    &player,
                    "--delta",
                    &delta.to_string(),
                    "--reason",
                    "x",
                ],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            *expected.entry(player).or_insert(0) += delta;
        }
        daemon.kill().unwrap(); // SIGKILL: no shutdown, no flush
        daemon.wait().unwrap();
        // No daemon now: points opens the log directly.
        assert_eq!(points(&config), expected, "after kill -9 in round {round}");
    }
    // A second daemon on the same state directory is refused while one runs.
    let mut daemon = spawn_daemon(&config);
    // The daemon keeps only an index in memory: history reads every entry back from the log.
    let out = cli(&config, &["history", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 30);
    let mut from_history: BTreeMap<String, i64> = BTreeMap::new();
    for row in &rows {
        let player = row["player"].as_str().unwrap().to_string();
        *from_history.entry(player).or_insert(0) += row["delta"].as_i64().unwrap();
    }
    assert_eq!(from_history, expected, "history read back from the log");
    // A new adjust through the daemon is readable right away, too.
    let out = cli(
        &config,
        &[
            "adjust",
            "--player",
            "p0",
            "--delta",
            "100",
            "--reason",
            "after restart",
        ],
    );
    assert!(out.status.success());
    let out = cli(&config, &["history", "--player", "p0", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let last = rows.last().unwrap();
    assert_eq!(last["reason"], "after restart");
    assert_eq!(last["total"].as_i64().unwrap(), expected["p0"] + 100);
    let second = cli(&config, &["run"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("locked by another lootsync process"),
        "{stderr}"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[test]
fn torn_last_record_is_cut_with_a_warning_and_only_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = write_config(dir.path());
    for delta in [5, 7, 11] {
        let out = cli(
            &config,
            &[
                "adjust",
                "--player",
                "Hank",
                "--delta",
                &delta.to_string(),
                "--reason",
                "r",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let len = std::fs::metadata(&log).unwrap().len();
    // A crash in the middle of writing the last record.
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(len - 10).unwrap();
    drop(file);

    let out = cli(&config, &["points", "--json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("torn"), "warning expected, got: {stderr}");
    let totals: BTreeMap<String, i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(totals["Hank"], 12, "only the torn record (11) is lost");
    // The log was repaired: the next open is silent and an append works.
    let out = cli(
        &config,
        &[
            "adjust", "--player", "Hank", "--delta", "1", "--reason", "r",
        ],
    );
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("torn"));
    assert_eq!(points(&config)["Hank"], 13);
}

#[test]
fn damage_before_intact_records_is_refused_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = write_config(dir.path());
    for delta in [1, 2, 3] {
        assert!(cli(
            &config,
            &[
                "adjust",
                "--player",
                "Ivy",
                "--delta",
                &delta.to_string(),
                "--reason",
                "r"
            ]
        )
        .status
        .success());
    }
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[16 + 8 + 3] ^= 0xff; // inside the first record's payload
    std::fs::write(&log, &bytes).unwrap();
    let out = cli(&config, &["points"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&log.file_name().unwrap().to_string_lossy().to_string())
            && stderr.contains("offset 16"),
        "{stderr}"
    );
    // Nothing was cut: the damaged file is left for inspection.
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
}

fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's count of datagrams sent (heartbeats, for a lone daemon), from `status`.
fn datagrams_sent(config: &Path) -> u64 {
    let out = cli(config, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["counters"]["datagrams_sent"]
        .as_u64()
        .expect("status counts datagrams sent")
}

/// Waits until the daemon has sent `count` more datagrams: for a lone daemon, heartbeats,
/// each of which logs a SYNC line at debug level.
fn wait_for_heartbeats(config: &Path, count: u64) {
    let target = datagrams_sent(config) + count;
    wait_for(
        Duration::from_secs(10),
        &format!("{count} more heartbeats"),
        || datagrams_sent(config) >= target,
    );
}

#[test]
fn debug_on_off_switches_sync_lines_at_run_time_and_peers_lists_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path());
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = spawn_daemon_logging(&config, Stdio::from(log));
    let sync_lines = || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .matches("SYNC send HELLO")
            .count()
    };
    // Config level is "info": heartbeats go out without a SYNC debug line.
    wait_for_heartbeats(&config, 3);
    assert_eq!(sync_lines(), 0, "no debug lines at level info");

    let out = cli(&config, &["debug", "on"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(5),
        "SYNC debug lines after `debug on`",
        || sync_lines() >= 2,
    );

    let out = cli(&config, &["debug", "off"]);
    assert!(out.status.success());
    let after_off = sync_lines();
    // One heartbeat may have been logging while the level changed.
    wait_for_heartbeats(&config, 3);
    assert!(
        sync_lines() <= after_off + 1,
        "debug lines stop after `debug off`"
    );

    let out = cli(&config, &["peers", "--json"]);
    assert!(out.status.success());
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(peers, serde_json::json!([]), "a lone daemon hears no peers");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

fn adjust(config: &Path, player: &str, delta: i64) -> Output {
    cli(
        config,
        &[
            "adjust",
            "--player",
            player,
            "--delta",
            &delta.to_string(),
            "--reason",
            "r",
        ],
    )
}

#[test]
fn verify_reports_damage_and_repair_keeps_every_intact_record() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = write_config(dir.path());
    for delta in [1, 2, 4, 8, 16] {
        let out = adjust(&config, "Jo", delta);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    adjust(&config, "Kim", 3);
    let out = cli(&config, &["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["entries:  6", "players:  2", "status:   ok"] {
        assert!(stdout.contains(line), "{line:?} missing in:\n{stdout}");
    }

    // Damage the second record (delta 2): its checksum no longer matches.
    let mut bytes = std::fs::read(&log).unwrap();
    let first_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    let second = 16 + 8 + first_len;
    bytes[second + 12] ^= 0x55;
    std::fs::write(&log, &bytes).unwrap();

    let out = cli(&config, &["verify"]);
    assert!(!out.status.success(), "verify must fail on damage");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("at offset {second}")), "{stdout}");
    assert!(
        stdout.contains("entries:  5") && stdout.contains("DAMAGED"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("lootsync repair"));

    // Repair is refused while a daemon holds the state directory (the daemon itself refuses
    // the damaged log, so hold the lock the way a daemon does: through a running command).
    let lock_holder = loot_sync::store::StateLock::acquire(&dir.path().join("state")).unwrap();
    let out = cli(&config, &["repair"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop the daemon"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "refused repair touched nothing"
    );
    drop(lock_holder);

    let out = cli(&config, &["repair"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 intact entries"), "{stdout}");
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!(
                    "{}.damaged-",
                    log.file_name().unwrap().to_string_lossy()
                ))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        bytes,
        "damaged file kept as it was"
    );
    assert_eq!(points(&config)["Jo"], 1 + 4 + 8 + 16);
    assert_eq!(points(&config)["Kim"], 3);
    let out = cli(&config, &["verify"]);
    assert!(out.status.success());

    // A running daemon also makes verify and repair refuse.
    let mut daemon = spawn_daemon(&config);
    for command in ["verify", "repair"] {
        let out = cli(&config, &[command]);
        assert!(!out.status.success(), "{command} while a daemon runs");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("locked by a running lootsync daemon"),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

/// Runs `lootsync adjust` with the file size limit set so the log cannot grow past
/// `max_file_bytes`, the way a full disk stops a write part-way.
fn adjust_with_file_size_limit(config: &Path, max_file_bytes: u64, delta: i64) -> Output {
    common::run_cli_with_file_size_limit(
        config,
        max_file_bytes,
        &[
            "adjust",
            "--player",
            "Lee",
            "--delta",
            &delta.to_string(),
            "--reason",
            "a reason long enough that the record is cut part-way",
        ],
    )
}

#[test]
fn full_disk_fails_the_adjust_clearly_and_leaves_a_valid_log() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = write_config(dir.path());
    for delta in [10, 20] {
        assert!(adjust(&config, "Lee", delta).status.success());
    }
    let before = std::fs::read(&log).unwrap();
    // Room for a few bytes of the record, not all of it; and then for none at all.
    for room in [30u64, 0] {
        let out = adjust_with_file_size_limit(&config, before.len() as u64 + room, 5);
        assert!(
            !out.status.success(),
            "adjust must fail when the write fails"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("adjustment not recorded") && stderr.contains("File too large"),
            "{stderr}"
        );
        assert!(stderr.contains("the log is unchanged"), "{stderr}");
        // The partial record was cut back: the file is byte for byte what it was.
        assert_eq!(std::fs::read(&log).unwrap(), before, "room {room}");
    }
    let out = cli(&config, &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(points(&config)["Lee"], 30, "nothing acknowledged lost");
    // With space again, adjusts work and land after the intact records.
    assert!(adjust(&config, "Lee", 1).status.success());
    assert_eq!(points(&config)["Lee"], 31);
}
