//! The group key and abuse limits between real daemons over real multicast on 127.0.0.1.
//! Each test uses its own group port so parallel tests never hear each other.

mod common;

use common::*;
use loot_sync::config::Config;
use loot_sync::daemon::{self, DaemonError, DaemonOptions, RunningDaemon};
use loot_sync::proto::entry::Entry;
use loot_sync::proto::seal::SEALED_VERSION;
use loot_sync::proto::wire::{self, Body, Envelope};
use loot_sync::store::keyfile::KeyFileError;
use loot_sync::store::keys::{create_group_key_file, load_group_key, GroupKeyError};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A new group key file in `dir`.
fn key_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    create_group_key_file(&path).expect("keygen");
    path
}

fn keyed(dir: &Path, node: &str, port: u16, key: &Path) -> Config {
    let mut config = config(dir, node, port);
    config.security.group_key_file = Some(key.to_path_buf());
    config.validate().expect("valid");
    config
}

/// A sender on loopback only (multicast interface 127.0.0.1, TTL 1).
fn loopback_sender() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let raw = socket2::SockRef::from(&socket);
    raw.set_multicast_if_v4(&LOOPBACK).unwrap();
    raw.set_multicast_ttl_v4(1).unwrap();
    socket
}

/// Multicast datagrams seen on the group, with their source.
type Captured = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// Joins the group on loopback and records every multicast datagram, as an eavesdropper on
/// the LAN would.
fn eavesdrop(port: u16) -> Captured {
    let socket = group_listener(port);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::downgrade(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Stops once the test drops its handle.
        while let Some(seen) = sink.upgrade() {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                seen.lock().unwrap().push((from, buf[..len].to_vec()));
            }
        }
    });
    seen
}

fn counter(status: &loot_sync::control::StatusResult, name: &str) -> u64 {
    status.counters.get(name).copied().unwrap_or(0)
}

fn entry(i: u64, player: &str) -> Entry {
    let ms = loot_sync::node::system_unix_ms();
    loot_sync::testing::EntryBuilder::at_ms(ms + i)
        .id_random([i as u8; 10])
        .actor("mallory")
        .target(player)
        .delta(1_000)
        .new_total(1_000)
        .reason("forged")
        .build()
}

async fn entry_count(d: &RunningDaemon) -> usize {
    status(d).await.entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_without_the_key_has_no_effect_and_learns_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = key_file(dir.path(), "group.key");
    let other_key = key_file(dir.path(), "other.key");
    let seen = eavesdrop(port);
    let alice = start(&keyed(dir.path(), "alice", port, &key), Default::default()).await;
    let bob = start(&keyed(dir.path(), "bob", port, &key), Default::default()).await;
    // Mallory runs with no key, Eve with a key of her own.
    let mallory = start(&config(dir.path(), "mallory", port), Default::default()).await;
    let eve = start(
        &keyed(dir.path(), "eve", port, &other_key),
        Default::default(),
    )
    .await;
    adjust(&alice, "Alice", 30, "secret-reason").await;
    adjust(&mallory, "Mallory", 1000, "stolen").await;
    adjust(&eve, "Eve", 1000, "stolen").await;
    wait_until(Duration::from_secs(5), "bob has alice's entry", || async {
        points(&bob).await.get("Alice") == Some(&30)
    })
    .await;
    // Let every daemon hear the others' heartbeats for a while: both members, so the checks
    // below cover what each of them did with the outsiders' traffic.
    wait_until(
        Duration::from_secs(5),
        "outsiders' traffic dropped",
        || async {
            for member in [&alice, &bob] {
                let s = status(member).await;
                if counter(&s, "dropped_unsealed") < 3 || counter(&s, "dropped_unknown_key") < 3 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        "outsiders drop members' traffic",
        || async {
            counter(&status(&mallory).await, "dropped_sealed_no_key") >= 3
                && counter(&status(&eve).await, "dropped_unknown_key") >= 3
        },
    )
    .await;

    for member in [&alice, &bob] {
        let totals = points(member).await;
        assert_eq!(totals.len(), 1, "outsider entries got in: {totals:?}");
        let s = status(member).await;
        assert_eq!(
            s.peers.len(),
            1,
            "members see only each other: {:?}",
            s.peers
        );
    }
    for outsider in [&mallory, &eve] {
        let s = status(outsider).await;
        assert!(s.peers.is_empty(), "outsider heard a member: {:?}", s.peers);
        assert_eq!(s.entries, 1, "outsider learnt entries");
        assert!(!points(outsider).await.contains_key("Alice"));
    }
    // On the wire: members' datagrams are all sealed and show no plaintext.
    let member_ports = [alice.whisper_addr.port(), bob.whisper_addr.port()];
    let captured = seen.lock().unwrap().clone();
    let from_members: Vec<&Vec<u8>> = captured
        .iter()
        .filter(|(from, _)| member_ports.contains(&from.port()))
        .map(|(_, d)| d)
        .collect();
    assert!(from_members.len() >= 4, "captured {}", from_members.len());
    let group = group_name(port);
    for d in from_members {
        assert_eq!(d[0], SEALED_VERSION);
        for needle in [
            &b"secret-reason"[..],
            b"Alice",
            b"alice",
            b"raid",
            group.as_bytes(),
        ] {
            assert!(!d.windows(needle.len()).any(|w| w == needle), "plaintext");
        }
    }
    for d in [alice, bob, mallory, eve] {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_a_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "group.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let config = keyed(dir.path(), "alice", free_port(), &key);
    let err = match daemon::start(config.clone(), DaemonOptions::default()).await {
        Ok(_) => panic!("daemon started with a group-readable key"),
        Err(err) => err,
    };
    assert!(matches!(
        err,
        DaemonError::Key(GroupKeyError::File(KeyFileError::TooOpen {
            mode: 0o640,
            ..
        }))
    ));
    let message = err.to_string();
    assert!(
        message.contains(&key.display().to_string()) && message.contains("0640"),
        "{message}"
    );
    // Nothing was opened: not even the state directory (log, lock, control socket) exists.
    assert!(!config.state_dir.exists());
    // The same for a previous key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let old = key_file(dir.path(), "old.key");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o604)).unwrap();
    let mut config = config;
    config.security.previous_key_files = vec![old.clone()];
    let err = daemon::start(config, DaemonOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains(&old.display().to_string()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_store_nothing_and_the_daemon_still_converges() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = key_file(dir.path(), "group.key");
    let key_id = load_group_key(&key).unwrap().id();
    let alice = start(&keyed(dir.path(), "alice", port, &key), Default::default()).await;
    adjust(&alice, "Alice", 5, "before the flood").await;
    let sender = loopback_sender();
    let targets = [SocketAddr::from((GROUP, port)), alice.whisper_addr];
    let forged = wire::encode(&Envelope {
        group: group_name(port),
        from: 0xbad,
        whisper_port: 9,
        body: Body::LogEntry(vec![entry(1, "Mallory")]),
    })
    .unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const FLOOD: usize = 100_000;
    for i in 0..FLOOD {
        let len = (next() % 1300) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 4 {
            // Looks sealed with our key id: reaches the tag check.
            0 if d.len() > 5 => {
                d[0] = SEALED_VERSION;
                d[1..5].copy_from_slice(&key_id.0);
            }
            // A well-formed clear LOG_ENTRY: refused because it is not sealed.
            1 => d = forged.clone(),
            _ => {}
        }
        let _ = sender.send_to(&d, targets[i % 2]);
        if i % 100 == 99 {
            // Pace the flood: the kernel's socket buffers would otherwise discard most of
            // it before the daemon sees it. Wait (briefly) until the batch was read.
            let want = i as u64 + 1 - (i as u64 + 1) / 50;
            for _ in 0..50 {
                if counter(&status(&alice).await, "datagrams_received") >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    wait_until(Duration::from_secs(10), "alice read the flood", || async {
        counter(&status(&alice).await, "datagrams_received") >= (FLOOD as u64) * 9 / 10
    })
    .await;
    let s = status(&alice).await;
    eprintln!("after the flood: {:?}", s.counters);
    assert_eq!(s.entries, 1, "a random datagram was stored");
    assert!(s.peers.is_empty(), "a random datagram became a peer");
    assert!(counter(&s, "dropped_unsealed") >= FLOOD as u64 / 5);
    assert!(counter(&s, "dropped_bad_key") >= FLOOD as u64 / 5);

    // Still a working member: a new peer converges with it both ways.
    let bob = start(&keyed(dir.path(), "bob", port, &key), Default::default()).await;
    adjust(&bob, "Bob", 7, "after the flood").await;
    wait_until(
        Duration::from_secs(10),
        "alice and bob converge",
        || async {
            let (a, b) = (points(&alice).await, points(&bob).await);
            a.len() == 2 && a == b
        },
    )
    .await;
    assert_eq!(entry_count(&alice).await, 2);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_old_datagrams_change_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = key_file(dir.path(), "group.key");
    let seen = eavesdrop(port);
    let alice = start(&keyed(dir.path(), "alice", port, &key), Default::default()).await;
    for i in 0..20 {
        adjust(&alice, &format!("P{}", i % 3), i + 1, "raid").await;
    }
    let bob = start(&keyed(dir.path(), "bob", port, &key), Default::default()).await;
    wait_until(Duration::from_secs(5), "bob catches up", || async {
        points(&bob).await == points(&alice).await
    })
    .await;
    let before = (history_ids(&alice).await, history_ids(&bob).await);
    let recorded: Vec<Vec<u8>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    assert!(recorded.len() >= 10, "recorded {}", recorded.len());
    // Replay everything recorded, three times over, to the group and to both whispers.
    let alice_received = counter(&status(&alice).await, "datagrams_received") as usize;
    let bob_received = counter(&status(&bob).await, "datagrams_received") as usize;
    let sender = loopback_sender();
    for _ in 0..3 {
        for d in &recorded {
            for to in [
                SocketAddr::from((GROUP, port)),
                alice.whisper_addr,
                bob.whisper_addr,
            ] {
                let _ = sender.send_to(d, to);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each daemon gets every replayed datagram twice a round (the group and its whisper);
    // wait until both have handled at least half of them before checking nothing changed.
    wait_until(Duration::from_secs(5), "replays processed", || async {
        let alice_now = counter(&status(&alice).await, "datagrams_received") as usize;
        let bob_now = counter(&status(&bob).await, "datagrams_received") as usize;
        alice_now >= alice_received + recorded.len() * 3
            && bob_now >= bob_received + recorded.len() * 3
    })
    .await;
    assert_eq!(
        (history_ids(&alice).await, history_ids(&bob).await),
        before,
        "a replay changed a ledger"
    );
    // Both still work afterwards.
    adjust(&bob, "Bob", 1, "after replay").await;
    wait_until(
        Duration::from_secs(5),
        "alice gets bob's new entry",
        || async { points(&alice).await.get("Bob") == Some(&1) },
    )
    .await;
    alice.stop().await;
    bob.stop().await;
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.key");
    let bin = env!("CARGO_BIN_EXE_lootsync");
    let out = std::process::Command::new(bin)
        .args(["keygen", "group"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let first = std::fs::read(&path).unwrap();
    let again = std::process::Command::new(bin)
        .args(["keygen", "group"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), first, "key overwritten");
}
