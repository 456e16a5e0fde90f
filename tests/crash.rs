//! Crash safety with the real binary: a daemon killed with SIGKILL keeps every adjust that
//! reported success, and a log with a torn last record opens with a warning and loses only
//! that record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lootsync");

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("lootsync.toml");
    let text = format!(
        r#"node = "crashy"
state_dir = "{}"
[group]
port = {port}
interface = "127.0.0.1"
ttl = 1
[whisper]
bind = "127.0.0.1:0"
[sync]
heartbeat = "200ms"
"#,
        dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run lootsync")
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
    let config = write_config(dir.path(), 47721);
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
    let config = write_config(dir.path(), 47722);
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
    let log = dir.path().join("state").join("raid.lootlog");
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
    let config = write_config(dir.path(), 47723);
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
    let log = dir.path().join("state").join("raid.lootlog");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[16 + 8 + 3] ^= 0xff; // inside the first record's payload
    std::fs::write(&log, &bytes).unwrap();
    let out = cli(&config, &["points"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("raid.lootlog") && stderr.contains("offset 16"),
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

#[test]
fn debug_on_off_switches_sync_lines_at_run_time_and_peers_lists_peers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 47724);
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = spawn_daemon_logging(&config, Stdio::from(log));
    let sync_lines = || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .matches("SYNC send HELLO")
            .count()
    };
    // Config level is "info": several 200 ms heartbeats pass without a SYNC debug line.
    std::thread::sleep(Duration::from_millis(700));
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
    std::thread::sleep(Duration::from_millis(700));
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
