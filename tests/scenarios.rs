//! The seed's scenarios between real daemons over real multicast on 127.0.0.1.
//! Each test picks a free group port so parallel tests (and checkouts) never hear each other.

mod common;

use common::*;
use loot_sync::control::{Adjust, History, SwitchSync};
use loot_sync::daemon::{DaemonOptions, OffsetClock};
use loot_sync::proto::entry::{new_entry_id, Entry};
use loot_sync::proto::hlc::Hlc;
use loot_sync::proto::wire::{self, Body, Envelope};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_catches_up_within_five_seconds() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = start(&config(dir.path(), "alice", port), DaemonOptions::default()).await;
    for i in 0..50 {
        adjust(&a, &format!("player{}", i % 7), i + 1, "attendance").await;
    }
    let expected = points(&a).await;
    assert_eq!(expected.values().sum::<i64>(), (1..=50).sum::<i64>());

    let b = start(&config(dir.path(), "bob", port), DaemonOptions::default()).await;
    let took = wait_until(
        Duration::from_secs(5),
        "late joiner has A's points",
        || async { points(&b).await == expected },
    )
    .await;
    eprintln!("late joiner converged in {took:?}");
    assert_eq!(history_ids(&a).await, history_ids(&b).await);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_officer_edits_with_a_clock_an_hour_behind_reach_everyone() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let clock_a = Arc::new(OffsetClock::new(0));
    let opts_a = DaemonOptions {
        clock: clock_a.clone(),
        ..DaemonOptions::default()
    };
    let cfg_b = config(dir.path(), "bob", port);
    let a = start(&config(dir.path(), "alice", port), opts_a).await;
    let b = start(&cfg_b, DaemonOptions::default()).await;
    adjust(&a, "Carol", 10, "raid night").await;
    adjust(&b, "Dave", 5, "raid night").await;
    wait_until(Duration::from_secs(5), "A and B in sync", || async {
        points(&a).await.len() == 2 && points(&b).await == points(&a).await
    })
    .await;

    // B leaves; while it is away B's officer edits offline (the CLI path: log opened
    // directly), so B holds entries A lacks, with the newest timestamps.
    b.stop().await;
    {
        let (mut peer, mut store) =
            loot_sync::node::open_offline(&cfg_b, loot_sync::node::system_unix_ms()).unwrap();
        let now = loot_sync::core::sync::Now {
            mono_ms: 0,
            unix_ms: loot_sync::node::system_unix_ms(),
        };
        loot_sync::node::apply(
            &mut peer,
            &mut store,
            "bob",
            now,
            Adjust {
                player: "Carol".into(),
                delta: -3,
                reason: "offline correction".into(),
                actor: None,
            },
        )
        .expect("offline adjust");
    }
    // A's clock now runs an hour behind: its new entries carry timestamps *older* than B's
    // newest entry, which the seed's "send me entries newer than my latest" would lose.
    clock_a.set_offset_ms(-HOUR_MS);
    let late = adjust(&a, "Carol", 7, "loot while B was away").await;
    let late_at = late.entry.at;

    let b = start(&cfg_b, DaemonOptions::default()).await;
    let b_newest_before_sync = {
        let rows = b.request(History { player: None }).await.unwrap();
        rows.last().unwrap().entry.at
    };
    assert!(
        late_at < b_newest_before_sync,
        "the test is only meaningful if A's entry sorts before B's newest"
    );
    wait_until(
        Duration::from_secs(8),
        "identical logs after B returns",
        || async {
            history_ids(&a).await.len() == 4 && history_ids(&a).await == history_ids(&b).await
        },
    )
    .await;
    let expected: std::collections::BTreeMap<String, i64> =
        [("Carol".to_string(), 14), ("Dave".to_string(), 5)].into();
    assert_eq!(points(&a).await, expected);
    assert_eq!(points(&b).await, expected);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_officers_adjusting_one_player_apart_both_count() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = start(&config(dir.path(), "alice", port), DaemonOptions::default()).await;
    let b = start(&config(dir.path(), "bob", port), DaemonOptions::default()).await;
    // They cannot hear each other: sync off on both (no group traffic at all).
    a.request(SwitchSync { enabled: false }).await.unwrap();
    b.request(SwitchSync { enabled: false }).await.unwrap();
    let sent_before = [
        status(&a).await.counters["datagrams_sent"],
        status(&b).await.counters["datagrams_sent"],
    ];
    adjust(&a, "Eve", 20, "attendance").await;
    adjust(&b, "Eve", -15, "loot: Thunderfury").await;
    // Nothing can have crossed: neither has handed a datagram to its sockets since sync went
    // off (a status reply counts everything the requests before it caused, and a peer with
    // sync off has no timers that could send later).
    let sent_after = [
        status(&a).await.counters["datagrams_sent"],
        status(&b).await.counters["datagrams_sent"],
    ];
    assert_eq!(sent_after, sent_before, "sync off sends no datagrams");
    assert_eq!(
        points(&a).await["Eve"],
        20,
        "nothing crossed while sync was off"
    );
    assert_eq!(points(&b).await["Eve"], -15);

    a.request(SwitchSync { enabled: true }).await.unwrap();
    b.request(SwitchSync { enabled: true }).await.unwrap();
    wait_until(Duration::from_secs(5), "both entries on both", || async {
        points(&a).await.get("Eve") == Some(&5) && points(&b).await.get("Eve") == Some(&5)
    })
    .await;
    assert_eq!(history_ids(&a).await, history_ids(&b).await);
    a.stop().await;
    b.stop().await;
}

fn sample_entry() -> Entry {
    let ms = loot_sync::node::system_unix_ms();
    Entry {
        id: new_entry_id(ms, [42; 10]),
        at: Hlc::new(ms, 0),
        actor: "officer".into(),
        target: "Frank".into(),
        delta: 9,
        new_total: 9,
        reason: "duplicated datagram".into(),
        kind: loot_sync::proto::entry::EntryKind::Points,
        seal: None,
    }
}

/// A sender on loopback only (multicast interface 127.0.0.1, TTL 1).
fn loopback_sender() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let raw = socket2::SockRef::from(&socket);
    raw.set_multicast_if_v4(&LOOPBACK).unwrap();
    raw.set_multicast_ttl_v4(1).unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_log_entry_datagram_twice_is_stored_once() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = start(&config(dir.path(), "alice", port), DaemonOptions::default()).await;
    let datagram = wire::encode(&Envelope {
        group: common::group_name(port),
        from: 0xfeed,
        whisper_port: 9,
        body: Body::LogEntry(vec![sample_entry()]),
    })
    .unwrap();
    let sender = loopback_sender();
    let group = SocketAddr::from((GROUP, port));
    sender.send_to(&datagram, group).unwrap();
    sender.send_to(&datagram, group).unwrap();
    // Alice also hears her own heartbeats (looped back, dropped as her own): both copies
    // are in once two other datagrams are.
    wait_until(Duration::from_secs(3), "both copies received", || async {
        let counters = status(&a).await.counters;
        let own = counters.get("dropped_own").copied().unwrap_or(0);
        counters["datagrams_received"] - own >= 2
    })
    .await;
    assert_eq!(history_ids(&a).await.len(), 1);
    assert_eq!(points(&a).await["Frank"], 9);
    assert_eq!(status(&a).await.counters["entries_merged"], 1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_group_port_is_dropped_and_sync_continues() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = start(&config(dir.path(), "alice", port), DaemonOptions::default()).await;
    let b = start(&config(dir.path(), "bob", port), DaemonOptions::default()).await;
    let sender = loopback_sender();
    let group = SocketAddr::from((GROUP, port));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut valid_prefix = wire::encode(&Envelope {
        group: common::group_name(port),
        from: 7,
        whisper_port: 9,
        body: Body::LogEntry(vec![sample_entry()]),
    })
    .unwrap();
    valid_prefix.truncate(valid_prefix.len() / 2);
    for i in 0..500 {
        let mut junk: Vec<u8> = (0..(x % 1400) as usize)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if i % 3 == 0 && !junk.is_empty() {
            junk[0] = wire::WIRE_VERSION; // get past the version check
        }
        if i % 50 == 0 {
            junk = valid_prefix.clone(); // a truncated real message
        }
        let _ = sender.send_to(&junk, group);
    }
    adjust(&a, "Grace", 3, "still syncing").await;
    wait_until(
        Duration::from_secs(5),
        "B gets A's entry despite garbage",
        || async { points(&b).await.get("Grace") == Some(&3) },
    )
    .await;
    let counters = status(&b).await.counters;
    let dropped: u64 = counters
        .iter()
        .filter(|(k, _)| k.starts_with("dropped_") && *k != "dropped_own")
        .map(|(_, v)| v)
        .sum();
    assert!(
        dropped >= 400,
        "garbage is counted as dropped: {counters:?}"
    );
    a.stop().await;
    b.stop().await;
}
