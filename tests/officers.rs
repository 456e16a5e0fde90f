//! Officer signatures with real daemons on loopback, every datagram also sealed with the
//! group key: only officers' entries count; forged entries injected as datagrams are dropped
//! and counted by every peer; unsigned entries and a non-officer's signed entries are kept
//! but count for nothing; a removed officer's later and backdated entries are rejected
//! everywhere. Plus the `keygen` / `officer` / `adjust` command line.

mod common;

use common::{config, init_tracing, points, run_cli, start, status, wait_until};
use loot_sync::config::Config;
use loot_sync::control::{Adjust, AdjustResult, Append, History, Request, RosterQuery, SwitchSync};
use loot_sync::core::ledger::HistoryRow;
use loot_sync::core::rng::SeededRng;
use loot_sync::core::roster::plan::{self, OfficerChange, RosterView};
use loot_sync::daemon::{DaemonOptions, RunningDaemon};
use loot_sync::proto::entry::{Entry, EntryKind};
use loot_sync::proto::hlc::Hlc;
use loot_sync::proto::keys::PublicKey;
use loot_sync::proto::signature::SecretKey;
use loot_sync::store::keyfile::KeyKind;
use loot_sync::store::keys::{
    create_group_key_file, create_signing_key_file, load_group_key, load_signing_key,
};
use loot_sync::testing::{whole_history_view, EntryBuilder};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(20);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A daemon's config with the group key, the root public key and its officer key, if any.
fn secured_config(
    dir: &Path,
    node: &str,
    port: u16,
    root: PublicKey,
    key: Option<&Path>,
) -> Config {
    let mut config = config(dir, node, port);
    config.security.group_key_file = Some(dir.join("group.key"));
    config.security.root_public_key = Some(root.to_string());
    config.security.officer_key_file = key.map(Path::to_path_buf);
    config.validate().unwrap();
    config
}

/// An entry stamped now with a random id, reason "roster", as a (possibly modified) client
/// makes one; a point for "player" by "officer" until told otherwise.
fn entry_now() -> EntryBuilder {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).unwrap();
    EntryBuilder::at_ms(unix_ms())
        .id_random(random)
        .reason("roster")
}

/// A roster change, as `lootsync officer add/remove` makes it, still to be signed.
fn roster_change_now(name: &str, kind: EntryKind) -> EntryBuilder {
    entry_now().actor("root").target(name).delta(0).kind(kind)
}

/// A roster change signed by `root`, as `lootsync officer add/remove` makes it.
fn roster_change(root: &SecretKey, name: &str, kind: EntryKind) -> Entry {
    roster_change_now(name, kind).signed(root)
}

async fn append(d: &RunningDaemon, entry: Entry) {
    d.request(Append {
        entry: Box::new(entry),
    })
    .await
    .expect("append");
}

/// Sends entries to every daemon's whisper socket as one LOG_ENTRY datagram sealed with the
/// group key in `dir`, as a modified client of a group member could (loopback unicast).
fn inject(dir: &Path, port: u16, daemons: &[&RunningDaemon], entries: Vec<Entry>) {
    let to: Vec<_> = daemons.iter().map(|d| d.whisper_addr).collect();
    common::send_log_entries(port, &to, entries, Some(&dir.join("group.key")));
}

async fn full_history(d: &RunningDaemon) -> Vec<HistoryRow> {
    d.request(History { player: None }).await.unwrap()
}

async fn adjust(d: &RunningDaemon, player: &str, delta: i64) -> Result<AdjustResult, String> {
    d.request(Adjust {
        player: player.into(),
        delta,
        reason: "raid".into(),
        actor: None,
    })
    .await
    .map_err(|e| e.to_string())
}

async fn counter(d: &RunningDaemon, name: &str) -> u64 {
    status(d).await.counters.get(name).copied().unwrap_or(0)
}

async fn all_hold(daemons: &[&RunningDaemon], what: &str, entries: usize) {
    wait_until(LIMIT, what, || async {
        for d in daemons {
            if status(d).await.entries != entries {
                return false;
            }
        }
        true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_officers_entries_count_on_every_peer_with_a_group_key() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let key = |name: &str| {
        let path = dir.path().join(format!("{name}.key"));
        let kind = match name {
            "root" => KeyKind::Root,
            _ => KeyKind::Officer,
        };
        (create_signing_key_file(&path, kind).unwrap(), path)
    };
    let (root, _) = key("root");
    let (alice_key, alice_path) = key("alice");
    let (bob_key, bob_path) = key("bob");
    // Mallory is a member with a key of her own making, never added to the roster.
    let (_, mallory_path) = key("mallory");
    let root_pub = root.public();
    // Both layers at once: every datagram sealed with the group key, every entry signed.
    create_group_key_file(&dir.path().join("group.key")).unwrap();
    let alice = start(
        &secured_config(dir.path(), "alice", port, root_pub, Some(&alice_path)),
        DaemonOptions::default(),
    )
    .await;
    let bob = start(
        &secured_config(dir.path(), "bob", port, root_pub, Some(&bob_path)),
        DaemonOptions::default(),
    )
    .await;
    let mallory = start(
        &secured_config(dir.path(), "mallory", port, root_pub, Some(&mallory_path)),
        DaemonOptions::default(),
    )
    .await;
    let carol = start(
        &secured_config(dir.path(), "carol", port, root_pub, None),
        DaemonOptions::default(),
    )
    .await;
    let everyone = [&alice, &bob, &mallory, &carol];

    // A member without an officer key cannot adjust at all.
    let refused = adjust(&carol, "Ann", 5).await.unwrap_err();
    assert!(refused.contains("no officer key"), "{refused}");

    append(
        &alice,
        roster_change(
            &root,
            "alice",
            EntryKind::OfficerAdd {
                public_key: alice_key.public(),
            },
        ),
    )
    .await;
    append(
        &alice,
        roster_change(
            &root,
            "bob",
            EntryKind::OfficerAdd {
                public_key: bob_key.public(),
            },
        ),
    )
    .await;
    all_hold(&everyone, "every peer holds the roster", 2).await;
    adjust(&alice, "Ann", 10).await.unwrap();
    adjust(&bob, "Ann", 20).await.unwrap();
    all_hold(&everyone, "every peer holds the officers' entries", 4).await;
    let group_key = load_group_key(&dir.path().join("group.key")).unwrap();
    for d in everyone {
        assert_eq!(points(d).await.get("Ann"), Some(&30));
        // status names the group key and counts the roster as this peer judges it.
        let shown = status(d).await;
        assert_eq!(shown.group_key_id, Some(group_key.id().to_string()));
        assert_eq!(shown.roster_size, Some(2));
    }

    // Mallory's own key is not on the roster, so her daemon refuses to adjust, and the
    // control socket appends only roster changes signed by the root key. With a modified
    // client she multicasts an entry signed by her key anyway: stored and synced everywhere,
    // counted nowhere.
    let refused = adjust(&mallory, "Ann", 1_000).await.unwrap_err();
    assert!(refused.contains("not on the officer roster"), "{refused}");
    let mallory_key = load_signing_key(&mallory_path, KeyKind::Officer).unwrap();
    let forged = entry_now()
        .actor("alice")
        .target("Ann")
        .delta(1_000)
        .new_total(1_030)
        .signed(&mallory_key);
    let refused = mallory
        .request(Append {
            entry: Box::new(forged.clone()),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("only roster changes"), "{refused}");
    inject(dir.path(), port, &[&mallory], vec![forged]);
    all_hold(&everyone, "every peer holds mallory's entry", 5).await;
    for d in everyone {
        assert_eq!(points(d).await.get("Ann"), Some(&30));
        assert_eq!(counter(d, "entries_rejected").await, 1);
    }
    let history = mallory
        .request(History {
            player: Some("Ann".into()),
        })
        .await
        .unwrap();
    let marked: Vec<&str> = history
        .iter()
        .filter_map(|row| row.rejected.as_deref())
        .collect();
    assert_eq!(marked, vec!["rejected: signer not an officer"]);

    // Forged datagrams: alice's entry with the delta changed after signing (dropped), and an
    // unsigned entry (kept, counting for nothing).
    let by_alice = entry_now().actor("root").target("Ann").delta(500);
    let mut tampered = by_alice.clone().signed(&alice_key);
    tampered.delta = 5_000;
    let unsigned = by_alice.delta(5_000).id_random([42; 10]).build();
    inject(dir.path(), port, &everyone, vec![tampered, unsigned]);
    for d in everyone {
        wait_until(LIMIT, "the forgery is counted", || async {
            counter(d, "dropped_bad_signature").await == 1 && status(d).await.entries == 6
        })
        .await;
        assert_eq!(counter(d, "entries_rejected").await, 2);
        assert_eq!(points(d).await.get("Ann"), Some(&30));
    }

    // Bob is removed while his daemon is cut off from the group, so it still signs his
    // adjust. The removal revokes his key, keeping the entry of his that counted (as
    // `officer remove` builds it). Once he rejoins, his later entry counts nowhere, and
    // neither does one he dates before the removal; alice's and his kept one still do.
    bob.request(SwitchSync { enabled: false }).await.unwrap();
    let kept: Vec<_> = full_history(&carol)
        .await
        .into_iter()
        .filter(|row| {
            row.rejected.is_none() && row.entry.seal.is_some_and(|s| s.signer == bob_key.public())
        })
        .map(|row| row.entry.digest())
        .collect();
    assert_eq!(kept.len(), 1, "bob's one adjust");
    let revocation = roster_change_now(
        "bob",
        EntryKind::OfficerRevoke {
            public_key: bob_key.public(),
            batch: [7; 8],
            part: 0,
            parts: 1,
            keep: kept,
        },
    )
    .stamped(Hlc::new(unix_ms() + 1, 0)) // after everything held
    .signed(&root);
    append(&carol, revocation.clone()).await;
    all_hold(
        &[&alice, &mallory, &carol],
        "the others hold the removal",
        7,
    )
    .await;
    adjust(&bob, "Ann", 300).await.unwrap();
    assert_eq!(
        points(&bob).await.get("Ann"),
        Some(&330),
        "bob has not heard"
    );
    let backdated = entry_now()
        .actor("bob")
        .target("Ann")
        .delta(7_000)
        .stamped(Hlc(revocation.at.0 - (1 << 16)))
        .signed(&bob_key);
    bob.request(SwitchSync { enabled: true }).await.unwrap();
    inject(dir.path(), port, &[&bob], vec![backdated]);
    adjust(&alice, "Ann", 1).await.unwrap();
    all_hold(&everyone, "every peer holds the later entries", 10).await;
    let fingerprint = status(&alice).await.fingerprint;
    for d in everyone {
        assert_eq!(points(d).await.get("Ann"), Some(&31));
        assert_eq!(counter(d, "entries_rejected").await, 4);
        assert_eq!(status(d).await.fingerprint, fingerprint);
    }
    for d in [alice, bob, mallory, carol] {
        d.stop().await;
    }
}

/// The command line end to end, offline (no daemon): keygen, officer add, adjust.
#[test]
fn keygen_officer_add_and_signed_adjust_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config_file(dir.path(), "alice", common::free_port());
    let keygen = |kind: &str, file: &str| {
        run_cli(
            &config,
            &["keygen", kind, &dir.path().join(file).to_string_lossy()],
        )
    };
    let root = keygen("root", "root.key");
    assert!(root.status.success(), "{root:?}");
    let root_pub = String::from_utf8(root.stdout).unwrap().trim().to_string();
    assert!(root_pub.parse::<PublicKey>().is_ok(), "{root_pub}");
    let again = keygen("root", "root.key");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let officer = keygen("officer", "alice.key");
    let officer_pub = String::from_utf8(officer.stdout)
        .unwrap()
        .trim()
        .to_string();

    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[security]\nroot_public_key = \"{root_pub}\"\n"));
    std::fs::write(&config, &text).unwrap();
    let adjust = || {
        run_cli(
            &config,
            &[
                "adjust", "--player", "Ann", "--delta", "7", "--reason", "raid",
            ],
        )
    };
    let refused = adjust();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no officer key"),
        "{refused:?}"
    );

    let root_key = dir.path().join("root.key");
    let added = run_cli(
        &config,
        &[
            "officer",
            "add",
            "alice",
            &officer_pub,
            "--root-key",
            &root_key.to_string_lossy(),
        ],
    );
    assert!(added.status.success(), "{added:?}");
    text.push_str(&format!(
        "officer_key_file = \"{}\"\n",
        dir.path().join("alice.key").display()
    ));
    std::fs::write(&config, &text).unwrap();
    // An officer key others can read is refused with the reason, not "no officer key".
    use std::os::unix::fs::PermissionsExt;
    let alice_key = dir.path().join("alice.key");
    std::fs::set_permissions(&alice_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let too_open = adjust();
    assert!(!too_open.status.success());
    assert!(
        String::from_utf8_lossy(&too_open.stderr).contains("chmod 600"),
        "{too_open:?}"
    );
    std::fs::set_permissions(&alice_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let done = adjust();
    assert!(done.status.success(), "{done:?}");
    let shown = run_cli(&config, &["points", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        r#"{"Ann":7}"#
    );

    // The roster as this peer judges it, and the root key it is judged under.
    let listed = run_cli(&config, &["officer", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.status.success(), "{listed:?}");
    assert!(text.contains(&format!("root key:  {root_pub}")), "{text}");
    let line = text.lines().find(|l| l.starts_with("alice")).expect(&text);
    assert!(
        line.contains("officer") && line.contains(&officer_pub) && line.contains(" 1  "),
        "{line}"
    );
    let listed = run_cli(&config, &["officer", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json["root_public_key"], root_pub.as_str());
    assert_eq!(json["officers"][0]["name"], "alice");
    assert_eq!(json["officers"][0]["state"], "active");
    assert_eq!(json["officers"][0]["entries_counted"], 1);
    assert_eq!(json["officers"][0]["added_by"], "root");
    // A roster change is not reverted: `officer` changes the roster.
    let trail = run_cli(&config, &["history", "--json"]);
    let trail: serde_json::Value = serde_json::from_slice(&trail.stdout).unwrap();
    let roster_digest = trail
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["kind"] == "officer_add")
        .map(|row| row["digest"].as_str().unwrap().to_string())
        .unwrap();
    let refused = run_cli(&config, &["revert", &roster_digest[..10]]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("lootsync officer add"),
        "{refused:?}"
    );

    let remove_alice_signed_by = |key_file: &str| {
        let key = dir.path().join(key_file).to_string_lossy().to_string();
        run_cli(&config, &["officer", "remove", "alice", "--root-key", &key])
    };
    // An officer key passed as the root key is named for what it is.
    let mixed_up = remove_alice_signed_by("alice.key");
    assert!(!mixed_up.status.success());
    assert_eq!(
        String::from_utf8_lossy(&mixed_up.stderr)
            .matches("an officer key, not the root key")
            .count(),
        1,
        "said once: {mixed_up:?}"
    );

    // A root key that is not the configured one is refused before anything is written.
    let other = keygen("root", "other.key");
    assert!(other.status.success());
    let wrong = remove_alice_signed_by("other.key");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not the root key"));

    let officer_cmd = |args: &[&str]| {
        let root = root_key.to_string_lossy().to_string();
        let mut all = vec!["officer"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--root-key", &root]);
        run_cli(&config, &all)
    };
    let stdout = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();
    let points_json = || {
        let shown = run_cli(&config, &["points", "--json"]);
        String::from_utf8_lossy(&shown.stdout).trim().to_string()
    };

    // Giving alice a new key revokes the old one, keeping the adjust it signed: the old key
    // can no longer sign anything that counts, so her adjust with it is refused.
    let new_key = keygen("officer", "alice-new.key");
    let new_pub = String::from_utf8(new_key.stdout)
        .unwrap()
        .trim()
        .to_string();
    let replaced = officer_cmd(&["add", "alice", &new_pub]);
    assert!(replaced.status.success(), "{replaced:?}");
    assert!(
        stdout(&replaced).contains("key replaced, key revoked (part 1/1: 1 of 1 entries kept)"),
        "{replaced:?}"
    );
    assert!(stdout(&replaced).contains("officer added"), "{replaced:?}");
    assert_eq!(points_json(), r#"{"Ann":7}"#);
    let refused = adjust();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is revoked"),
        "{refused:?}"
    );
    // A revoked key cannot be added back.
    let readd = officer_cmd(&["add", "alice", &officer_pub]);
    assert!(!readd.status.success());
    assert!(
        String::from_utf8_lossy(&readd.stderr).contains("is revoked for good"),
        "{readd:?}"
    );

    // Removing alice revokes her new key too (it signed nothing); the kept adjust stays.
    let removed = officer_cmd(&["remove", "alice"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(
        stdout(&removed).contains("officer removed, key revoked (part 1/1: 0 of 0 entries kept)"),
        "{removed:?}"
    );
    assert_eq!(points_json(), r#"{"Ann":7}"#);
    let again = officer_cmd(&["remove", "alice"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not an officer"),
        "{again:?}"
    );
    // A revoked key cannot award either: the whole award is refused, nothing written.
    let award = run_cli(
        &config,
        &["award", "--delta", "5", "--reason", "raid", "Ann", "Bo"],
    );
    assert!(!award.status.success());
    assert!(
        String::from_utf8_lossy(&award.stderr).contains("is revoked"),
        "{award:?}"
    );
    assert_eq!(points_json(), r#"{"Ann":7}"#);
    let listed = run_cli(&config, &["officer", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let states: Vec<&str> = json["officers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["revoked", "revoked"], "{json}");
}

/// A group's first roster change happens before any daemon ran: `officer add` starts the
/// ledger, says so, and refuses the root key itself or a key the officer already has.
#[test]
fn the_first_officer_add_starts_the_ledger_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config_file(dir.path(), "root-box", common::free_port());
    let keygen = |kind: &str, file: &str| {
        let out = run_cli(
            &config,
            &["keygen", kind, &dir.path().join(file).to_string_lossy()],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let root_pub = keygen("root", "root.key");
    let alice_pub = keygen("officer", "alice.key");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[security]\nroot_public_key = \"{root_pub}\"\nroot_key_file = \"{}\"\n",
        dir.path().join("root.key").display()
    ));
    std::fs::write(&config, &text).unwrap();

    // A refused first write leaves no empty ledger behind.
    let refused = run_cli(
        &config,
        &["adjust", "--player", "Ann", "--delta", "1", "--reason", "r"],
    );
    assert!(!refused.status.success(), "{refused:?}");
    let points = run_cli(&config, &["points"]);
    assert!(
        String::from_utf8_lossy(&points.stderr).contains("no ledger here"),
        "{points:?}"
    );

    let add = |key: &str| run_cli(&config, &["officer", "add", "alice", key]);
    let refused = add(&root_pub);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is the group's root key"),
        "{refused:?}"
    );
    let first = add(&alice_pub);
    assert!(first.status.success(), "{first:?}");
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("(a new ledger)"),
        "{first:?}"
    );
    assert!(String::from_utf8_lossy(&first.stdout).starts_with("officer added: alice ["));
    let again = add(&alice_pub);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already an officer with this key"),
        "{again:?}"
    );
    let history = run_cli(&config, &["history", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "one roster entry, not two"
    );
    // Names compare in any letter case, as the impersonation rule does: a new key for
    // "ALICE" replaces (and revokes) alice's.
    let new_pub = keygen("officer", "alice-2.key");
    let replaced = run_cli(&config, &["officer", "add", "ALICE", &new_pub]);
    assert!(replaced.status.success(), "{replaced:?}");
    assert!(
        String::from_utf8_lossy(&replaced.stdout).contains("key replaced, key revoked"),
        "{replaced:?}"
    );

    // A daemon whose root_public_key is not the one that signed the roster says so loudly
    // at start-up (otherwise nothing counts on it while its set matches everyone's).
    let mistyped = text.replace(&root_pub, &alice_pub);
    std::fs::write(&config, &mistyped).unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_lootsync"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("NO VALID ROSTER") || started.elapsed() > Duration::from_secs(10) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(log.contains("NO VALID ROSTER"), "{log}");
    assert!(log.contains("security.root_public_key"), "{log}");
}

/// Injects `entries` into `d` as sealed datagrams (a few per datagram, sent again until
/// it holds `total` entries: loopback may drop a burst).
async fn inject_all(dir: &Path, port: u16, d: &RunningDaemon, entries: &[Entry], total: usize) {
    wait_until(LIMIT, "the daemon holds the injected entries", || async {
        if status(d).await.entries >= total {
            return true;
        }
        for chunk in entries.chunks(4) {
            inject(dir, port, &[d], chunk.to_vec());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        false
    })
    .await;
}

/// `officer add`/`officer remove` now ask the daemon about the one officer name instead of
/// fetching and re-judging the whole history: the daemon's answer plans exactly the
/// entries the whole-history judgement planned, for adds and removals of officers with
/// kept entries over several revocation parts, a name with two keys (in two letter cases),
/// a revoked key, impersonating, unsigned and strangers' entries; and the command line
/// run against the daemon appends that plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_roster_view_plans_what_the_whole_history_planned() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    create_group_key_file(&dir.path().join("group.key")).unwrap();
    let root_file = dir.path().join("root.key");
    let root = create_signing_key_file(&root_file, KeyKind::Root).unwrap();
    let config = secured_config(dir.path(), "alice", port, root.public(), None);
    let d = start(&config, DaemonOptions::default()).await;
    let key = |n: u8| SecretKey::from_seed([n; 32]);
    let add = |name: &str, n: u8| {
        roster_change(
            &root,
            name,
            EntryKind::OfficerAdd {
                public_key: key(n).public(),
            },
        )
    };
    for change in [add("alice", 1), add("bob", 2), add("carol", 3)] {
        append(&d, change).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let point = |actor: &str, n: Option<u8>| {
        let entry = entry_now().actor(actor).target("Ann").delta(1);
        match n {
            Some(n) => entry.signed(&key(n)),
            None => entry.build(),
        }
    };
    let mut made = Vec::new();
    for i in 0..30 {
        made.push(point("alice", Some(1)));
        made.push(point("raidbox", Some(2)));
        if i % 10 == 0 {
            made.push(point("carol", Some(3)));
            // Signed by alice's key as bob, by a stranger, unsigned: none counts.
            made.push(point("bob", Some(1)));
            made.push(point("mallory", Some(9)));
            made.push(point("alice", None));
        }
    }
    inject_all(dir.path(), port, &d, &made, 3 + made.len()).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // "ALICE" gets a second key (alice's first is not revoked); carol's key is revoked.
    append(&d, add("ALICE", 4)).await;
    let revoke_carol = EntryKind::OfficerRevoke {
        public_key: key(3).public(),
        batch: [1; 8],
        part: 0,
        parts: 1,
        keep: vec![],
    };
    append(&d, roster_change(&root, "carol", revoke_carol)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Not as "alice" or "ALICE": each name is now the other key's too, so that would be
    // signing as another officer.
    let late = [point("raidbox", Some(4)), point("raidbox", Some(1))];
    let total = 5 + made.len() + late.len();
    inject_all(dir.path(), port, &d, &late, total).await;

    let rows = full_history(&d).await;
    assert_eq!(rows.len(), total);
    let changes = [
        OfficerChange::Add {
            public_key: key(5).public(),
        },
        OfficerChange::Add {
            public_key: key(1).public(),
        },
        OfficerChange::Add {
            public_key: key(3).public(),
        },
        OfficerChange::Remove { revoke_all: false },
        OfficerChange::Remove { revoke_all: true },
    ];
    let first_at = Hlc::new(unix_ms(), 0);
    let mut planned = 0;
    for name in ["alice", "Alice", "bob", "carol", "dave"] {
        let asked = RosterQuery {
            name: name.into(),
            root_public_key: root.public(),
        };
        let view = d.request(asked).await.unwrap();
        let judged = whole_history_view(rows.clone(), root.public(), name);
        assert_eq!(view, judged, "{name}");
        for change in changes {
            let plan = |view: &RosterView| {
                plan::officer_change(view, name, change, &root, first_at, &mut SeededRng::new(3))
            };
            let (ours, theirs) = (plan(&view), plan(&judged));
            assert_eq!(ours, theirs, "{name} {change:?}");
            planned += ours.map_or(0, |entries| entries.len());
        }
    }
    let alice = d
        .request(RosterQuery {
            name: "alice".into(),
            root_public_key: root.public(),
        })
        .await
        .unwrap();
    let kept: Vec<usize> = alice.keys.iter().map(|k| k.counted.len()).collect();
    let mut expected = vec![(key(1).public(), 31), (key(4).public(), 1)];
    expected.sort();
    assert_eq!(
        alice
            .keys
            .iter()
            .map(|k| k.key)
            .zip(kept)
            .collect::<Vec<_>>(),
        expected
    );
    assert!(alice.is_revoked(&key(3).public()));
    assert!(planned > 20, "the plans are not all refusals: {planned}");

    // The command line, run against the daemon, removes bob keeping his 30 entries.
    let file = dir.path().join("cli.toml");
    std::fs::write(
        &file,
        format!(
            "node = \"cli\"\nstate_dir = \"{}\"\n[group]\nname = \"{}\"\n[http]\nenabled = false\n\
             [security]\nroot_public_key = \"{}\"\nroot_key_file = \"{}\"\n",
            config.state_dir.display(),
            config.group.name,
            root.public(),
            root_file.display()
        ),
    )
    .unwrap();
    let before = points(&d).await;
    let cli = tokio::task::spawn_blocking(move || run_cli(&file, &["officer", "remove", "Bob"]))
        .await
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(
        said.contains("officer removed, key revoked (part 2/2: 6 of 30 entries kept)"),
        "{said}"
    );
    assert!(!said.contains("no daemon running"), "{cli:?}");
    assert_eq!(status(&d).await.entries, total + 2);
    // Bob's 30 entries still count; and with his key revoked "bob" is no officer's name,
    // so alice's three entries labelled "bob" count now too.
    assert_eq!(points(&d).await["Ann"], before["Ann"] + 3);
    d.stop().await;
}

/// The roster query is parsed as strictly as every request and refused when the daemon
/// judges under another root key or none; the daemon goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_roster_queries_get_error_replies() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    create_group_key_file(&dir.path().join("group.key")).unwrap();
    let root = SecretKey::from_seed([7; 32]);
    let other = SecretKey::from_seed([8; 32]);
    let secured = start(
        &secured_config(dir.path(), "secured", port, root.public(), None),
        DaemonOptions::default(),
    )
    .await;
    let open = start(&config(dir.path(), "open", port), DaemonOptions::default()).await;
    let query = |name: &str, key: &SecretKey| RosterQuery {
        name: name.into(),
        root_public_key: key.public(),
    };
    let line = |query: RosterQuery| {
        let mut line = serde_json::to_string(&Request::from(query)).unwrap();
        line.push('\n');
        line
    };
    let good = line(query("alice", &root));
    let hex = root.public().to_string();
    let cases: Vec<(String, &str)> = vec![
        (r#"{"cmd":"roster"}"#.to_string() + "\n", "missing field"),
        (
            r#"{"cmd":"roster","name":"alice"}"#.to_string() + "\n",
            "missing field `root_public_key`",
        ),
        (
            good.replacen("\"name\"", "\"extra\":1,\"name\"", 1),
            "unknown field",
        ),
        (
            r#"{"cmd":"roster","name":"alice","root_public_key":[1,2,3]}"#.to_string() + "\n",
            "invalid length",
        ),
        (
            format!("{{\"cmd\":\"roster\",\"name\":\"alice\",\"root_public_key\":\"{hex}\"}}\n"),
            "invalid type",
        ),
        (
            r#"{"cmd":"roster","name":7,"root_public_key":[]}"#.to_string() + "\n",
            "invalid type",
        ),
        (
            line(query("alice", &other)),
            "judges the roster under root key",
        ),
    ];
    let path = secured.control_path.clone();
    let open_path = open.control_path.clone();
    let no_root = line(query("alice", &root));
    tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader, Write};
        let converse = |stream: &mut std::os::unix::net::UnixStream, line: &str| {
            stream.write_all(line.as_bytes()).unwrap();
            let mut reply = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut reply)
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&reply).expect("replies are JSON")
        };
        let connect = |path: &Path| {
            let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
        };
        let mut stream = connect(&path);
        for (line, expected) in &cases {
            let reply = converse(&mut stream, line);
            assert_eq!(reply["ok"], false, "{line}: {reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
        // A name no officer has, however odd, is just nobody's.
        let odd = "\u{1b}[31m".repeat(1000);
        let reply = converse(&mut stream, &line(query(&odd, &root)));
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["result"]["keys"], serde_json::json!([]));
        // The same connection still serves the good query.
        let reply = converse(&mut stream, &good);
        assert_eq!(reply["ok"], true, "{reply}");
        // A daemon with no root key judges no roster: it says so and how to fix it.
        let reply = converse(&mut connect(&open_path), &no_root);
        assert_eq!(reply["ok"], false, "{reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(
            error.contains("runs without security.root_public_key"),
            "{error}"
        );
    })
    .await
    .unwrap();
    assert_eq!(status(&secured).await.entries, 0);
    secured.stop().await;
    open.stop().await;
}

/// A roster change merged late that sorts before entries the daemon holds (an officer
/// removed on the other side of a partition, as in the soak) is replayed on the daemon's
/// replay thread, not inside the merge on its core thread: the totals come right once it
/// is done, the daemon counts the replay, and no replay is left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_change_merged_late_is_replayed_on_the_replay_thread() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    create_group_key_file(&dir.path().join("group.key")).unwrap();
    let root = create_signing_key_file(&dir.path().join("root.key"), KeyKind::Root).unwrap();
    let alice_path = dir.path().join("alice.key");
    let alice_key = create_signing_key_file(&alice_path, KeyKind::Officer).unwrap();
    let config = secured_config(dir.path(), "alice", port, root.public(), Some(&alice_path));
    let d = start(&config, DaemonOptions::default()).await;
    let added_at = unix_ms() - 10_000;
    let add = EntryBuilder::roster_change(
        added_at,
        "alice",
        EntryKind::OfficerAdd {
            public_key: alice_key.public(),
        },
    )
    .id_random([1; 10])
    .signed(&root);
    append(&d, add).await;
    const ADJUSTS: usize = 40;
    for _ in 0..ADJUSTS {
        adjust(&d, "Ann", 1).await.unwrap();
    }
    assert_eq!(points(&d).await.get("Ann"), Some(&(ADJUSTS as i64)));
    assert_eq!(counter(&d, "replays").await, 0);

    // Removed 5 s after the add, on a peer this one had not heard from: before every adjust.
    let removal = EntryBuilder::roster_change(added_at + 5_000, "alice", EntryKind::OfficerRemove)
        .id_random([2; 10])
        .signed(&root);
    inject_all(dir.path(), port, &d, &[removal], ADJUSTS + 2).await;
    wait_until(LIMIT, "the replay's totals taken in", || async {
        counter(&d, "replay_pending").await == 0
            && points(&d).await.get("Ann").is_none_or(|t| *t == 0)
    })
    .await;
    assert!(
        counter(&d, "replays").await >= 1,
        "replayed on the replay thread"
    );
    assert_eq!(counter(&d, "entries_rejected").await, ADJUSTS as u64);
    // What the whole history gives, judged again on its own.
    let rows = full_history(&d).await;
    assert_eq!(
        rows.iter().filter(|row| row.rejected.is_some()).count(),
        ADJUSTS
    );
    d.stop().await;
}
