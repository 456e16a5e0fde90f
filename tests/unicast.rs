//! Beyond one LAN, on loopback: daemons with no multicast at all that list each other by
//! address, a hub that lists nobody with spokes that list only the hub (store and forward
//! between spokes never online together), listed host names (one that resolves, one that
//! never can), and `config check` for the new keys.
//!
//! Every socket is on 127.0.0.1 and every port is a free one picked per test; group names
//! are the test's own. No test here sends multicast, and one checks that none was sent.

mod common;

use common::*;
use loot_sync::config::Config;
use loot_sync::control::{Adjust, PeerReach, StatusResult};
use loot_sync::daemon::{DaemonOptions, RunningDaemon};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lootsync");

/// Records an adjustment on a stopped daemon's log, as an officer does offline.
fn adjust_offline(config: &Config, player: &str, delta: i64, reason: &str) {
    let (mut peer, mut store) =
        loot_sync::node::open_offline(config, loot_sync::node::system_unix_ms()).unwrap();
    let now = loot_sync::core::sync::Now {
        mono_ms: 0,
        unix_ms: loot_sync::node::system_unix_ms(),
    };
    loot_sync::node::apply(
        &mut peer,
        &mut store,
        &config.node,
        now,
        Adjust {
            player: player.into(),
            delta,
            reason: reason.into(),
            actor: None,
        },
    )
    .expect("offline adjust");
}

/// Whether every daemon's history is the same, with `len` entries.
async fn identical(daemons: &[&RunningDaemon], len: usize) -> bool {
    let first = history_ids(daemons[0]).await;
    if first.len() != len {
        return false;
    }
    for d in &daemons[1..] {
        if history_ids(d).await != first {
            return false;
        }
    }
    true
}

/// The peers of `status` that are reached `how`, by name.
fn reached(status: &StatusResult, how: PeerReach) -> Vec<String> {
    let mut names: Vec<String> = status
        .peers
        .iter()
        .filter(|p| p.reached == how && p.last_heard_ms_ago.is_some())
        .map(|p| p.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_without_multicast_that_list_each_other_converge() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let group = free_port();
    // Joined to the group the daemons would use had they multicast: it must stay silent.
    let eavesdropper = group_listener(group);
    let ports = [free_port(), free_port(), free_port()];
    let names = ["alice", "bob", "carol"];
    let cfg = |i: usize| {
        let others: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| loopback(ports[j]))
            .collect();
        unicast_config(dir.path(), names[i], group, ports[i], &others)
    };

    // Late joiner: Bob starts after Alice made 50 adjusts.
    let a = start(&cfg(0), DaemonOptions::default()).await;
    for i in 0..50 {
        adjust(&a, &format!("player{}", i % 7), i + 1, "attendance").await;
    }
    let expected = points(&a).await;
    let b = start(&cfg(1), DaemonOptions::default()).await;
    let took = wait_until(
        Duration::from_secs(10),
        "late joiner has Alice's points over unicast",
        || async { points(&b).await == expected },
    )
    .await;
    eprintln!("late joiner converged over unicast in {took:?}");
    let c = start(&cfg(2), DaemonOptions::default()).await;
    wait_until(Duration::from_secs(10), "three identical logs", || async {
        identical(&[&a, &b, &c], 50).await
    })
    .await;

    // Each sees the other two as listed peers, at the addresses it listed, in sync.
    wait_until(
        Duration::from_secs(10),
        "every daemon hears the other two as listed peers, in sync",
        || async {
            for (i, d) in [&a, &b, &c].into_iter().enumerate() {
                let s = status(d).await;
                let mut want: Vec<String> = (0..3)
                    .filter(|&j| j != i)
                    .map(|j| names[j].to_owned())
                    .collect();
                want.sort();
                if reached(&s, PeerReach::Listed) != want || !s.peers.iter().all(|p| p.in_sync) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let s = status(&a).await;
    assert_eq!(s.multicast, None, "no multicast without [group] address");
    let mut addresses: Vec<String> = s.peers.iter().map(|p| p.address.clone()).collect();
    addresses.sort();
    let mut listed = vec![loopback(ports[1]), loopback(ports[2])];
    listed.sort();
    assert_eq!(addresses, listed, "{s:?}");
    assert_eq!(s.listed.len(), 2);
    assert!(s
        .listed
        .iter()
        .all(|l| l.error.is_none() && l.resolved.len() == 1));

    // Offline officer: Bob stops and edits on his log; Alice adjusts meanwhile. When Bob
    // is back (on the same port, as listed), all three converge on both changes.
    let cfg_b = cfg(1);
    b.stop().await;
    adjust_offline(&cfg_b, "player1", -10, "offline correction");
    adjust(&a, "player2", 4, "while Bob was away").await;
    let b = start(&cfg_b, DaemonOptions::default()).await;
    let took = wait_until(
        Duration::from_secs(10),
        "all three hold both changes",
        || async { identical(&[&a, &b, &c], 52).await },
    )
    .await;
    eprintln!("offline officer converged over unicast in {took:?}");
    assert_eq!(points(&c).await, points(&b).await);

    // Hundreds of datagrams went between them; none of them to the group.
    let mut buf = [0u8; 2048];
    match eavesdropper.recv_from(&mut buf) {
        Ok((len, from)) => panic!("a daemon without multicast sent {len} bytes from {from}"),
        Err(err) => assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        ),
    }
    // `sync off/on` without a group has no group to leave or join, and works.
    b.request(loot_sync::control::SwitchSync { enabled: false })
        .await
        .unwrap();
    b.request(loot_sync::control::SwitchSync { enabled: true })
        .await
        .unwrap();
    adjust(&c, "player3", 1, "after bob's sync off/on").await;
    wait_until(Duration::from_secs(10), "bob syncs again", || async {
        identical(&[&a, &b, &c], 53).await
    })
    .await;
    for d in [a, b, c] {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_relays_between_spokes_and_stores_and_forwards() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let group = free_port();
    let hub_port = free_port();
    // The hub lists nobody: it hears the spokes because they contact it.
    let hub_cfg = unicast_config(dir.path(), "hub", group, hub_port, &[]);
    // Spokes list only the hub, on ports of the kernel's choosing (as behind a NAT).
    let spoke = |name: &str| unicast_config(dir.path(), name, group, 0, &[loopback(hub_port)]);
    let (cfg_a, cfg_b) = (spoke("alice"), spoke("bob"));
    let hub = start(&hub_cfg, DaemonOptions::default()).await;
    let a = start(&cfg_a, DaemonOptions::default()).await;
    let b = start(&cfg_b, DaemonOptions::default()).await;

    // An adjust on spoke A reaches spoke B through the hub.
    adjust(&a, "Aria", 10, "through the hub").await;
    let took = wait_until(
        Duration::from_secs(10),
        "bob has alice's adjust",
        || async { identical(&[&a, &b, &hub], 1).await },
    )
    .await;
    eprintln!("spoke to spoke through the hub in {took:?}");
    wait_until(
        Duration::from_secs(10),
        "the hub learned both spokes; each spoke hears only the hub, listed",
        || async {
            let (h, sa, sb) = (status(&hub).await, status(&a).await, status(&b).await);
            reached(&h, PeerReach::Learned) == ["alice", "bob"]
                && reached(&sa, PeerReach::Listed) == ["hub"]
                && reached(&sb, PeerReach::Listed) == ["hub"]
                && sa.peers.len() == 1
                && sb.peers.len() == 1
        },
    )
    .await;
    let h = status(&hub).await;
    assert_eq!(h.multicast, None);
    assert!(h.listed.is_empty(), "the hub lists nobody");

    // Store and forward: B is away while A adjusts; A leaves before B is back. They are
    // never online together, and B still gets A's entry, from the hub.
    b.stop().await;
    adjust(&a, "Brann", 5, "while bob is away").await;
    wait_until(Duration::from_secs(10), "the hub holds it", || async {
        identical(&[&a, &hub], 2).await
    })
    .await;
    a.stop().await;
    let b = start(&cfg_b, DaemonOptions::default()).await;
    let took = wait_until(
        Duration::from_secs(10),
        "bob gets alice's entry from the hub",
        || async { identical(&[&b, &hub], 2).await },
    )
    .await;
    eprintln!("store and forward through the hub in {took:?}");
    assert_eq!(
        points(&b).await,
        BTreeMap::from([("Aria".to_string(), 10), ("Brann".to_string(), 5)])
    );

    // And the other way: B's offline edit reaches A through the hub, A never meeting B.
    b.stop().await;
    adjust_offline(&cfg_b, "Aria", -3, "bob's offline correction");
    let b = start(&cfg_b, DaemonOptions::default()).await;
    wait_until(
        Duration::from_secs(10),
        "the hub holds bob's edit",
        || async { identical(&[&b, &hub], 3).await },
    )
    .await;
    b.stop().await;
    let a = start(&cfg_a, DaemonOptions::default()).await;
    wait_until(
        Duration::from_secs(10),
        "alice gets it from the hub",
        || async { identical(&[&a, &hub], 3).await },
    )
    .await;
    assert_eq!(points(&a).await["Aria"], 7);
    a.stop().await;
    hub.stop().await;
}

/// Kills the daemon process if the test fails before stopping it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the real binary with `args` on a blocking thread; returns (success, stdout, stderr).
async fn cli(config: &Path, args: &[&str]) -> (bool, String, String) {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run lootsync");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The status of the daemon behind `config`, if one answers.
async fn status_json(config: &Path) -> Option<serde_json::Value> {
    let (ok, out, _) = cli(config, &["status", "--json"]).await;
    ok.then(|| serde_json::from_str(&out).expect("status --json is JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_host_names_resolve_and_one_that_never_can_is_a_warning_not_a_failure() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let group = free_port();
    let a_port = free_port();
    // Alice (in process) lists nobody; Bob (the real binary) lists her by host name, and
    // a reserved `.invalid` name (RFC 6761) that can never resolve.
    let a = start(
        &unicast_config(dir.path(), "alice", group, a_port, &[]),
        DaemonOptions::default(),
    )
    .await;
    let bad = format!("nobody.invalid:{a_port}");
    let good = format!("localhost:{a_port}");
    let bob_dir = dir.path().join("bob");
    std::fs::create_dir_all(&bob_dir).unwrap();
    let config: PathBuf = bob_dir.join("lootsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"node = "bob"
state_dir = "{}"
[group]
name = "{}"
[whisper]
bind = "127.0.0.1:0"
[peers]
addresses = ["{good}", "{bad}"]
resolve_interval = "1s"
[sync]
heartbeat = "200ms"
peer_timeout = "1500ms"
"#,
            bob_dir.join("state").display(),
            group_name(group)
        ),
    )
    .unwrap();
    let log_path = bob_dir.join("daemon.log");
    let daemon = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .expect("spawn daemon");
    let pid = daemon.id() as i32;
    let mut daemon = KillOnDrop(Some(daemon));

    // The bad name fails again and again, and the daemon keeps serving and syncing.
    wait_until(
        Duration::from_secs(20),
        "bob retried the bad name 3 times and resolved localhost",
        || async {
            let Some(s) = status_json(&config).await else {
                return false;
            };
            let listed = &s["listed"];
            listed[0]["address"] == good.as_str()
                && listed[0]["resolved"] == serde_json::json!([loopback(a_port)])
                && listed[1]["address"] == bad.as_str()
                && listed[1]["failures"].as_u64().unwrap_or(0) >= 3
        },
    )
    .await;
    adjust(&a, "Aria", 10, "to bob by host name").await;
    wait_until(
        Duration::from_secs(10),
        "bob has alice's adjust",
        || async {
            let (ok, out, _) = cli(&config, &["points", "--json"]).await;
            ok && serde_json::from_str::<BTreeMap<String, i64>>(&out).unwrap()
                == BTreeMap::from([("Aria".to_string(), 10)])
        },
    )
    .await;
    let (ok, _, err) = cli(
        &config,
        &[
            "adjust",
            "--player",
            "Brann",
            "--delta",
            "2",
            "--reason",
            "back to alice",
        ],
    )
    .await;
    assert!(ok, "{err}");
    wait_until(
        Duration::from_secs(10),
        "alice has bob's adjust",
        || async { points(&a).await.get("Brann") == Some(&2) },
    )
    .await;

    // What status and peers say.
    let s = status_json(&config).await.unwrap();
    assert_eq!(s["multicast"], serde_json::Value::Null, "{s}");
    assert!(
        s["listed"][1]["error"]
            .as_str()
            .unwrap()
            .contains("RFC 6761"),
        "{s}"
    );
    let alice = s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "alice")
        .unwrap_or_else(|| panic!("alice among bob's peers: {s}"));
    assert_eq!(alice["reached"], "listed", "{s}");
    assert_eq!(alice["address"], loopback(a_port).as_str());
    let (_, text, _) = cli(&config, &["status"]).await;
    assert!(text.contains("multicast:   off"), "{text}");
    assert!(text.contains(&good) && text.contains(&bad), "{text}");
    assert!(text.contains("does not resolve"), "{text}");
    // In sync once Bob has heard Alice's fingerprint after her last merge (next HELLO).
    wait_until(
        Duration::from_secs(10),
        "`peers` shows alice listed and in sync",
        || async {
            let (_, peers, _) = cli(&config, &["peers"]).await;
            peers
                .lines()
                .any(|l| l.contains("alice") && l.contains("listed") && l.contains("in sync"))
        },
    )
    .await;

    // Alice's side: Bob contacted her, so he is a learned peer there.
    let sa = status(&a).await;
    assert_eq!(reached(&sa, PeerReach::Learned), ["bob"], "{sa:?}");

    // SIGTERM, then the log: one warning for the bad name however often it was retried,
    // and the good name's resolution.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let exit = daemon.0.take().unwrap().wait().unwrap();
    assert!(exit.success(), "daemon exit status {exit}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&bad))
        .count();
    assert_eq!(warnings, 1, "one warning per name per change:\n{log}");
    assert!(
        log.contains(&format!("{good} resolves to {}", loopback(a_port))),
        "{log}"
    );
    a.stop().await;
}

#[test]
fn config_check_explains_peers_and_refuses_bad_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lootsync.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        Command::new(BIN)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap()
    };

    // A hub: no multicast, nobody listed, a fixed whisper port.
    let out = check("[group]\nport = 5000\n[whisper]\nbind = \"0.0.0.0:47684\"\n");
    assert!(out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stderr.contains("multicast: off"), "{stderr}");
    assert!(stderr.contains("are ignored"), "{stderr}");
    assert!(
        stderr.contains("only talks to peers that contact it"),
        "{stderr}"
    );
    assert!(!stdout.contains("address ="), "{stdout}");
    assert!(stdout.contains("[peers]"), "{stdout}");
    assert!(stdout.contains("resolve_interval = \"1m\""), "{stdout}");

    // A home: listed hub and friend.
    let out = check(
        "[whisper]\nbind = \"0.0.0.0:0\"\n\
         [peers]\naddresses = [\"hub.example.org:47684\", \"198.51.100.7:47684\"]\n\
         resolve_interval = \"5m\"\n",
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listed peers: hub.example.org:47684, 198.51.100.7:47684"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"hub.example.org:47684\""), "{stdout}");

    // Every bad value names its key.
    for (text, key) in [
        (
            "[peers]\naddresses = [\"hub.example.org\"]\n",
            "peers.addresses",
        ),
        (
            "[peers]\naddresses = [\"hub.example.org:0\"]\n",
            "peers.addresses",
        ),
        ("[peers]\naddresses = [\":47684\"]\n", "peers.addresses"),
        (
            "[peers]\naddresses = [\"[2001:db8::1]:47684\"]\n",
            "peers.addresses",
        ),
        (
            "[peers]\nresolve_interval = \"0s\"\n",
            "peers.resolve_interval",
        ),
        // The default whisper.bind (127.0.0.1) cannot reach another machine.
        (
            "[peers]\naddresses = [\"198.51.100.7:47684\"]\n",
            "peers.addresses",
        ),
        ("[group]\naddress = \"10.0.0.1\"\n", "group.address"),
        ("[peers]\nhub = \"x:1\"\n", "hub"),
    ] {
        let out = check(text);
        assert!(!out.status.success(), "{text:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{text:?}: {stderr}");
    }
}
