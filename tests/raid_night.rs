//! An officer's raid night with the real binary: `import`, `award`, `decay` and `revert`
//! offline and through running daemons (batches reach a peer whole), all-or-nothing
//! refusals that name the bad item, a batch cut by a failed write leaving no part behind,
//! and text from a hostile peer printed escaped.

mod common;

use common::{free_port, run_cli, run_cli_with_file_size_limit, write_config_file};
use loot_sync::testing::EntryBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn ok(config: &Path, args: &[&str]) -> String {
    let out = run_cli(config, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(config: &Path, args: &[&str]) -> String {
    let out = run_cli(config, args);
    assert!(!out.status.success(), "{args:?} should be refused");
    String::from_utf8(out.stderr).unwrap()
}

fn points(config: &Path) -> BTreeMap<String, i64> {
    serde_json::from_str(&ok(config, &["points", "--json"])).unwrap()
}

fn history(config: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&ok(config, &["history", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The digest of the only entry for `player` with `delta`.
fn digest_of(config: &Path, player: &str, delta: i64) -> String {
    let rows: Vec<_> = history(config)
        .into_iter()
        .filter(|row| row["player"] == player && row["delta"] == delta)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0]["digest"].as_str().unwrap().to_string()
}

/// A config of its own in `dir/node` (its own state), on test group `port`.
fn node_config(dir: &Path, node: &str, port: u16) -> PathBuf {
    let home = dir.join(node);
    std::fs::create_dir_all(&home).unwrap();
    write_config_file(&home, node, port)
}

/// Kills and reaps the daemon when the test ends, even when it fails.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `lootsync run` on `config` and waits until its control socket answers.
fn spawn_daemon(config: &Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_lootsync"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let daemon = Daemon(child);
    let start = Instant::now();
    while !run_cli(config, &["status"]).status.success() {
        assert!(start.elapsed() < LIMIT, "daemon never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `export --format csv` writes for these standings (highest first).
const STANDINGS: &str = "player,points\r\nAlice,30\r\nZoë,12\r\n\"Bob, Jr.\",-5\r\n";

#[test]
fn an_offline_raid_night_import_award_decay_and_revert() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_file(dir.path(), "officer", free_port());
    let file = dir.path().join("standings.csv");
    std::fs::write(&file, STANDINGS).unwrap();
    let file = file.to_str().unwrap();

    // A dry run into no ledger shows the table and leaves nothing behind.
    let dry = ok(&config, &["import", file, "--dry-run"]);
    assert!(dry.contains("dry run, would write 3 entries"), "{dry}");
    assert!(dry.contains("Bob, Jr."), "{dry}");
    assert!(refused(&config, &["points"]).contains("no ledger here"));

    // Round trip: import into an empty ledger, export gives the same file.
    let out = run_cli(&config, &["import", file]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("(a new ledger)"));
    assert_eq!(ok(&config, &["export", "--format", "csv"]), STANDINGS);
    // Imported again: every total is already right, nothing is written.
    assert!(ok(&config, &["import", file]).contains("nothing to write"));
    assert_eq!(history(&config).len(), 3);

    // A bad line refuses the whole import, naming the line.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "player,points\nCy,5\nDee,five\n").unwrap();
    let err = refused(&config, &["import", bad.to_str().unwrap()]);
    assert!(err.contains("line 3: points \"five\""), "{err}");
    assert_eq!(history(&config).len(), 3, "nothing written");

    let dry = ok(
        &config,
        &[
            "award",
            "--delta",
            "10",
            "--reason",
            "r",
            "Alice",
            "--dry-run",
        ],
    );
    assert!(dry.contains("would write 1 entry"), "{dry}");
    assert_eq!(history(&config).len(), 3, "a dry run writes nothing");

    // Award: names in any case go to the existing player (said on stderr), more from a
    // file; one entry each.
    let players = dir.path().join("raid.txt");
    std::fs::write(&players, "Zoë\n\n  Newbie \n").unwrap();
    let out = run_cli(
        &config,
        &[
            "award",
            "--delta",
            "10",
            "--reason",
            "Onyxia kill",
            "alice",
            "--players-file",
            players.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is the existing player \"Alice\""), "{said}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("recorded 3 entries in one batch"), "{table}");
    let expected = BTreeMap::from([
        ("Alice".to_string(), 40),
        ("Bob, Jr.".to_string(), -5),
        ("Newbie".to_string(), 10),
        ("Zoë".to_string(), 22),
    ]);
    assert_eq!(points(&config), expected);
    // history --player matches in any case too.
    assert!(ok(&config, &["history", "--player", "ALICE"]).contains("Onyxia kill"));

    // All or nothing: a bad name, a duplicate or a hostile reason refuses the whole award.
    let bad_name = refused(
        &config,
        &[
            "award",
            "--delta",
            "5",
            "--reason",
            "r",
            "Cy",
            "Ev\u{1b}[2Jil",
        ],
    );
    assert!(
        bad_name.contains("item 2") && bad_name.contains("\\u{1b}"),
        "{bad_name}"
    );
    assert!(
        !bad_name.contains('\u{1b}'),
        "the refusal itself is escaped"
    );
    assert_eq!(
        bad_name.matches("item 2").count(),
        1,
        "said once: {bad_name}"
    );
    let twice = refused(
        &config,
        &["award", "--delta", "5", "--reason", "r", "Cy", "CY"],
    );
    assert!(twice.contains("same player as item 1"), "{twice}");
    let tab = refused(
        &config,
        &["award", "--delta", "5", "--reason", "a\tb", "Cy"],
    );
    assert!(tab.contains("invalid reason"), "{tab}");
    let esc = refused(
        &config,
        &[
            "adjust",
            "--player",
            "Cy",
            "--delta",
            "5",
            "--reason",
            "\u{1b}[31mred",
        ],
    );
    assert!(esc.contains("control or invisible"), "{esc}");
    assert_eq!(points(&config), expected, "nothing written");

    // Decay 10 %: truncated toward zero; -5 loses nothing (0.5 truncates to 0).
    let before = history(&config).len();
    let dry = ok(
        &config,
        &[
            "decay",
            "--percent",
            "10",
            "--reason",
            "weekly",
            "--dry-run",
        ],
    );
    assert!(dry.contains("would write 3 entries"), "{dry}");
    assert_eq!(history(&config).len(), before, "a dry run writes nothing");
    ok(&config, &["decay", "--percent", "10", "--reason", "weekly"]);
    let decayed = BTreeMap::from([
        ("Alice".to_string(), 36),
        ("Bob, Jr.".to_string(), -5),
        ("Newbie".to_string(), 9),
        ("Zoë".to_string(), 20),
    ]);
    assert_eq!(points(&config), decayed);
    assert!(
        refused(&config, &["decay", "--percent", "0", "--reason", "r"]).contains("more than 0")
    );

    // Revert Newbie's award by a digest prefix: linked both ways in history.
    let award = digest_of(&config, "Newbie", 10);
    let out = ok(
        &config,
        &["revert", &award[..8], "--reason", "was not there"],
    );
    assert!(out.contains("recorded 1 entry"), "{out}");
    assert_eq!(points(&config)["Newbie"], -1);
    let text = ok(&config, &["history", "--player", "Newbie"]);
    assert!(
        text.contains(&format!("[reverts {}]", &award[..8])),
        "{text}"
    );
    let rows = history(&config);
    let revert = rows
        .iter()
        .find(|r| r["reverts"] == award.as_str())
        .unwrap();
    let revert_digest = revert["digest"].as_str().unwrap();
    assert!(
        text.contains(&format!("[reverted by {}]", &revert_digest[..8])),
        "{text}"
    );
    assert_eq!(revert["delta"], -10);
    assert!(revert["reason"]
        .as_str()
        .unwrap()
        .ends_with(": was not there"));
    // Twice: refused, naming the revert.
    let again = refused(&config, &["revert", &award[..8]]);
    assert!(again.contains("already reverted"), "{again}");
    assert!(refused(&config, &["revert", "ffffffffffff"]).contains("no entry"));
    assert!(refused(&config, &["revert", "ab"]).contains("at least 4 hex digits"));
}

#[test]
fn a_batch_cut_by_a_failed_write_leaves_no_part_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_file(dir.path(), "officer", free_port());
    ok(
        &config,
        &["adjust", "--player", "Ann", "--delta", "1", "--reason", "r"],
    );
    let log = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "lootlog"))
        .unwrap();
    let before = std::fs::read(&log).unwrap();
    let args = [
        "award", "--delta", "7", "--reason", "raid", "Ann", "Bo", "Cy", "Dee", "Eve",
    ];
    // Room for the first record and part of the second: the write stops mid-batch.
    let out = run_cli_with_file_size_limit(&config, before.len() as u64 + 150, &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not recorded") && err.contains("the log is unchanged"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "no part of the batch kept"
    );
    assert_eq!(points(&config), BTreeMap::from([("Ann".to_string(), 1)]));
    ok(&config, &args);
    assert_eq!(points(&config).len(), 5);
    assert_eq!(points(&config)["Ann"], 8);
}

#[test]
fn batches_through_running_daemons_reach_a_peer_whole_and_hostile_text_prints_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let alice = node_config(dir.path(), "alice", port);
    let bob = node_config(dir.path(), "bob", port);
    let _a = spawn_daemon(&alice);
    let _b = spawn_daemon(&bob);

    let file = dir.path().join("standings.csv");
    std::fs::write(&file, STANDINGS).unwrap();
    let out = run_cli(&alice, &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("recorded directly"),
        "went through the daemon"
    );
    let fsyncs = || -> u64 {
        let status: serde_json::Value =
            serde_json::from_str(&ok(&alice, &["status", "--json"])).unwrap();
        status["counters"]["log_fsyncs"].as_u64().unwrap()
    };
    let before = fsyncs();
    ok(
        &alice,
        &[
            "award", "--delta", "10", "--reason", "raid", "Alice", "Zoë", "Cy",
        ],
    );
    assert_eq!(
        fsyncs() - before,
        1,
        "three entries, one write and one fsync"
    );
    ok(
        &alice,
        &["decay", "--percent", "50", "--reason", "season end"],
    );
    let cy = digest_of(&alice, "Cy", 10);
    ok(&alice, &["revert", &cy[..8]]);
    let expected = BTreeMap::from([
        ("Alice".to_string(), 20),
        ("Bob, Jr.".to_string(), -3),
        ("Cy".to_string(), -5),
        ("Zoë".to_string(), 11),
    ]);
    assert_eq!(points(&alice), expected);
    wait_for("bob holds alice's batches", || points(&bob) == expected);
    assert_eq!(history(&bob).len(), history(&alice).len());

    // An entry from an older or hostile peer, with escape sequences in its reason and
    // player name, sent straight to both whisper sockets.
    let hostile = EntryBuilder::at_ms(loot_sync::node::system_unix_ms())
        .id_random([9; 10])
        .actor("mallory")
        .target("Mal\u{202e}lory")
        .delta(1)
        .reason("\u{1b}[2J\u{1b}[31mfake row\nAlice +1000")
        .build();
    let whisper = |config: &Path| -> std::net::SocketAddr {
        let status: serde_json::Value =
            serde_json::from_str(&ok(config, &["status", "--json"])).unwrap();
        status["whisper"].as_str().unwrap().parse().unwrap()
    };
    common::send_log_entries(port, &[whisper(&alice), whisper(&bob)], vec![hostile], None);
    for config in [&alice, &bob] {
        wait_for("the hostile entry arrives", || {
            points(config).contains_key("Mal\u{202e}lory")
        });
        for args in [
            &["history"][..],
            &["points"],
            &["history", "--player", "mal\u{202e}lory"],
        ] {
            let text = ok(config, args);
            assert!(
                !text.chars().any(|c| c == '\u{1b}' || c == '\u{202e}'),
                "{args:?} printed raw control characters: {text:?}"
            );
            assert!(text.contains("Mal\\u{202e}lory"), "{args:?}: {text}");
        }
        let text = ok(config, &["history"]);
        assert!(
            text.contains("\\u{1b}[2J\\u{1b}[31mfake row\\u{a}Alice +1000"),
            "{text}"
        );
        assert_eq!(text.lines().count(), history(config).len(), "no faked row");
        // JSON stays JSON: the same text, escaped the JSON way.
        let json = ok(config, &["history", "--json"]);
        assert!(json.contains("\\u001b[2J"), "{json}");
    }
    let status = ok(&alice, &["status"]);
    assert!(status.contains("group key:   none"), "{status}");
    assert!(status.contains("officers:    open roster"), "{status}");
}
