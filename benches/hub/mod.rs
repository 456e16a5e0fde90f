//! The hub figures (issue 12), sans-IO: peers in `loot_sync::testing::World` in virtual
//! time, spokes behind simulated NATs that reach each other only through the hub, every
//! datagram sealed with a group key (so byte counts are what a daemon sends). Each figure is
//! printed beside its baseline from the same run.
//!
//! * idle: a hub with 40 spokes, all in sync, for 60 virtual seconds at the daemon's default
//!   heartbeat: datagrams and bytes per second the hub sends and receives per spoke, beside
//!   the floor of one HELLO each way per heartbeat (what keeps a NAT mapping open).
//! * catch-up: a spoke missing 10,000 entries joins a hub that has 40 spokes in sync, beside
//!   the same spoke pulling them straight from one peer.
//! * propagation: an adjust on one spoke reaching the 39 others through the hub (two hops),
//!   beside 40 peers on one LAN (one multicast hop).

pub mod daemons;

use super::common::Figure;
use loot_sync::core::rng::SeededRng;
use loot_sync::core::sync::{Now, Peer, PeerConfig};
use loot_sync::proto::entry::Entry;
use loot_sync::proto::seal::{GroupKey, Keyring, NoncePrefix, Sealer};
use loot_sync::proto::wire;
use loot_sync::testing::{node_addr, PeerConfigBuilder, World};
use std::net::{IpAddr, Ipv4Addr};

/// The daemon's default heartbeat and peer timeout.
const HEARTBEAT_MS: u64 = 2_000;
const PEER_TIMEOUT_MS: u64 = 10_000;
const HUB: usize = 0;

fn now(ms: u64) -> Now {
    Now {
        mono_ms: ms,
        unix_ms: super::SANS_IO_UNIX_MS + ms,
    }
}

/// World node `node`'s config: unicast only, the daemon's timers.
fn config(node: usize) -> PeerConfig {
    PeerConfigBuilder::new(format!("p{node}"))
        .world_node(node)
        .multicast(false)
        .heartbeat_ms(HEARTBEAT_MS)
        .peer_timeout_ms(PEER_TIMEOUT_MS)
        .build()
}

/// A peer holding `entries`, sealing with the bench's group key.
fn sealed_peer(node: usize, entries: Vec<Entry>) -> Peer {
    let mut peer = Peer::new(
        config(node),
        entries,
        SeededRng::new(node as u64 + 1),
        now(0),
    );
    let keyring = Keyring::new(GroupKey::from_bytes(&[7; 32]), vec![]);
    let seed = node as u8;
    peer.set_group_key(Sealer::new(keyring, NoncePrefix([seed; 16])), [seed; 32]);
    peer
}

/// A world of `peers` where node 0 is the hub: lossless, 1 ms one way, nobody on a LAN, every
/// other node behind its own NAT and unable to reach the others except through node 0.
/// Nothing is started.
fn hub_world(peers: Vec<Peer>) -> World {
    let mut world = World::new(SeededRng::new(0));
    world.set_unix_base_ms(super::SANS_IO_UNIX_MS);
    let n = peers.len();
    for peer in peers {
        world.insert(peer);
    }
    for spoke in 0..n {
        world.net.lan[spoke] = None;
        if spoke == HUB {
            continue;
        }
        for other in 1..n {
            world.net.blocked[spoke][other] = other != spoke;
        }
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, spoke as u8));
        let nat = world.net.add_nat(ip, 30_000);
        world.net.put_behind_nat(spoke, nat, None);
    }
    world
}

/// Starts node `node`; a spoke lists the hub first.
fn join(world: &mut World, node: usize) {
    if node != HUB {
        world.act(node, |p, now| p.set_listed_peers(now, vec![node_addr(HUB)]));
    }
    world.start(node);
}

/// What the hub sent and received so far: (datagrams, bytes).
fn hub_traffic(world: &World) -> (u64, u64) {
    let s = world.peer(HUB).stats();
    (
        s.datagrams_sent + s.datagrams_received,
        s.bytes_sent + s.bytes_received,
    )
}

/// The hub with 40 spokes in sync, idle (see the module docs).
pub fn idle_figures() -> Vec<Figure> {
    let spokes = 40;
    let entries = super::common::make_entries(1_000, 5);
    let peers: Vec<Peer> = (0..=spokes)
        .map(|i| sealed_peer(i, entries.clone()))
        .collect();
    let mut world = hub_world(peers);
    for node in 0..=spokes {
        join(&mut world, node);
    }
    let warmup_ms = 30_000;
    let seconds = 60;
    world.run_until(warmup_ms);
    let (datagrams_before, bytes_before) = hub_traffic(&world);
    let sent_before = world.peer(HUB).stats().datagrams_sent;
    world.run_until(warmup_ms + seconds * 1_000);
    let (datagrams_after, bytes_after) = hub_traffic(&world);
    let sent = world.peer(HUB).stats().datagrams_sent - sent_before;
    let per = |v: u64| v as f64 / spokes as f64 / seconds as f64;
    let datagrams = per(datagrams_after - datagrams_before);
    let bytes = per(bytes_after - bytes_before);
    // The floor: one sealed HELLO each way per heartbeat.
    let hello = hello_len(&world) as f64;
    let per_second = 1_000.0 / HEARTBEAT_MS as f64;
    let floor_datagrams = 2.0 * per_second;
    let floor_bytes = 2.0 * per_second * hello;
    let met = datagrams <= 1.0 && bytes <= 200.0;
    println!(
        "hub idle: 40 spokes behind NAT in sync, {seconds} virtual s at a {HEARTBEAT_MS} ms \
         heartbeat: per spoke per second the hub sends and receives {datagrams:.2} datagrams \
         ({:.2} sent), {bytes:.0} B (goal <= 1 and <= 200 B: {}) vs baseline one sealed HELLO \
         each way per heartbeat {floor_datagrams:.2} datagrams, {floor_bytes:.0} B",
        per(sent),
        if met { "met" } else { "MISSED" },
    );
    vec![
        Figure::at_most(
            "hub idle, 40 spokes, sans-IO: datagrams per spoke per second at the hub, sent + received (baseline: one HELLO each way per heartbeat)",
            datagrams,
            Some(floor_datagrams),
            "",
            1.0,
        ),
        Figure::at_most(
            "hub idle, 40 spokes, sans-IO: bytes per spoke per second at the hub, sent + received (baseline: one HELLO each way per heartbeat)",
            bytes,
            Some(floor_bytes),
            "B",
            200.0,
        ),
    ]
}

/// The size of the hub's sealed HELLO.
fn hello_len(world: &World) -> usize {
    let ledger = world.peer(HUB).ledger();
    let clear = wire::encode(&wire::Envelope {
        group: "raid".into(),
        from: world.peer(HUB).node_id(),
        whisper_port: node_addr(HUB).port(),
        body: wire::Body::Hello(wire::Hello {
            name: "p0".into(),
            fingerprint: ledger.fingerprint(),
            newest: ledger.newest(),
        }),
    })
    .expect("a HELLO encodes");
    clear.len()
        + Sealer::new(
            Keyring::new(GroupKey::from_bytes(&[7; 32]), vec![]),
            NoncePrefix([0; 16]),
        )
        .overhead()
}

/// What a catch-up cost: virtual ms until the joiner held everything, and the datagrams and
/// bytes the joiner received meanwhile.
struct CatchUp {
    ms: u64,
    datagrams: u64,
    bytes: u64,
}

/// Runs `world` until node `joiner` holds `total` entries (10 virtual minutes at most).
fn catch_up(world: &mut World, joiner: usize, total: usize) -> CatchUp {
    let start = world.now_ms();
    let before = world.peer(joiner).stats().clone();
    while world.peer(joiner).ledger().len() < total {
        assert!(
            world.now_ms() < start + 600_000,
            "catch-up stalled:\n{}",
            world.describe()
        );
        world.run_until(world.now_ms() + 1);
    }
    let after = world.peer(joiner).stats();
    CatchUp {
        ms: world.now_ms() - start,
        datagrams: after.datagrams_received - before.datagrams_received,
        bytes: after.bytes_received - before.bytes_received,
    }
}

/// A spoke missing 10,000 entries: through a hub with 40 spokes, and straight from one peer.
pub fn catch_up_figures() -> Vec<Figure> {
    let total = 10_000;
    let entries = super::common::make_entries(total, 40);
    // Through the hub: the hub and 40 spokes in sync; spoke 41 comes with nothing.
    let spokes = 40;
    let mut peers: Vec<Peer> = (0..=spokes)
        .map(|i| sealed_peer(i, entries.clone()))
        .collect();
    peers.push(sealed_peer(spokes + 1, Vec::new()));
    let mut world = hub_world(peers);
    for node in 0..=spokes {
        join(&mut world, node);
    }
    world.run_until(10_000);
    join(&mut world, spokes + 1);
    let hub = catch_up(&mut world, spokes + 1, total);
    // Directly: the joiner lists one peer holding everything (no NAT, no hub).
    let peers = vec![sealed_peer(0, entries), sealed_peer(1, Vec::new())];
    let mut world = World::new(SeededRng::new(0));
    world.set_unix_base_ms(super::SANS_IO_UNIX_MS);
    for peer in peers {
        world.insert(peer);
    }
    world.net.lan = vec![None, None];
    world.start(0);
    world.run_until(10_000);
    join(&mut world, 1);
    let direct = catch_up(&mut world, 1, total);
    println!(
        "hub catch-up: a spoke missing {total} entries, 1 ms one way, sealed: through a hub with \
         40 spokes {} ms ({} datagrams, {} B received) vs baseline straight from one peer {} ms \
         ({} datagrams, {} B)",
        hub.ms, hub.datagrams, hub.bytes, direct.ms, direct.datagrams, direct.bytes
    );
    vec![
        Figure::ratio_goal(
            "catch-up of a spoke missing 10,000 entries through a hub with 40 spokes, sans-IO, 1 ms one way (baseline: straight from one peer)",
            hub.ms as f64,
            direct.ms as f64,
            "ms",
            1.5,
        ),
        Figure::ratio_goal(
            "bytes the spoke received for that catch-up through the hub (baseline: straight from one peer)",
            hub.bytes as f64,
            direct.bytes as f64,
            "B",
            1.2,
        ),
    ]
}

/// Virtual ms until every other node of `world` holds an adjust made on `author`, for
/// `adjusts` adjusts on nodes `authors` picked in turn.
fn propagation_samples(world: &mut World, authors: &[usize], adjusts: usize) -> Vec<f64> {
    let mut samples = Vec::new();
    for k in 0..adjusts {
        let author = authors[k % authors.len()];
        let request = loot_sync::proto::entry::AdjustRequest {
            actor: "officer".into(),
            target: format!("P{}", k % 13),
            delta: 1,
            reason: format!("loot {k}"),
        };
        let entry = world.adjust(author, &request);
        let digest = entry.key().digest;
        let start = world.now_ms();
        let everyone =
            |world: &World| (0..world.len()).all(|i| world.peer(i).ledger().contains(&digest));
        while !everyone(world) {
            assert!(world.now_ms() < start + 60_000, "adjust {k} did not spread");
            world.run_until(world.now_ms() + 1);
        }
        samples.push((world.now_ms() - start) as f64);
        // Apart enough that adjusts do not overlap.
        world.run_until(world.now_ms() + 37);
    }
    samples
}

/// An adjust on one spoke reaching the 39 others through the hub, beside 40 peers on one
/// LAN reached by multicast (both 1 ms one way, virtual time).
pub fn propagation_figures() -> Vec<Figure> {
    let spokes = 40;
    let adjusts = 200;
    let entries = super::common::make_entries(1_000, 5);
    let peers: Vec<Peer> = (0..=spokes)
        .map(|i| sealed_peer(i, entries.clone()))
        .collect();
    let mut world = hub_world(peers);
    for node in 0..=spokes {
        join(&mut world, node);
    }
    world.run_until(10_000);
    let authors: Vec<usize> = (1..=spokes).collect();
    let mut hub = propagation_samples(&mut world, &authors, adjusts);
    // The baseline: 40 peers on one LAN.
    let mut lan = World::new(SeededRng::new(0));
    lan.set_unix_base_ms(super::SANS_IO_UNIX_MS);
    for node in 0..spokes {
        let config = PeerConfigBuilder::new(format!("p{node}"))
            .world_node(node)
            .heartbeat_ms(HEARTBEAT_MS)
            .peer_timeout_ms(PEER_TIMEOUT_MS)
            .build();
        lan.insert(Peer::new(
            config,
            entries.clone(),
            SeededRng::new(node as u64),
            now(0),
        ));
        lan.start(node);
    }
    lan.run_until(10_000);
    let authors: Vec<usize> = (0..spokes).collect();
    let mut direct = propagation_samples(&mut lan, &authors, adjusts);
    let p99 = super::common::percentile(&mut hub, 99.0);
    let p99_lan = super::common::percentile(&mut direct, 99.0);
    println!(
        "hub propagation: {adjusts} adjusts, each from one of 40 spokes to the 39 others through \
         the hub, 1 ms one way: p99 {p99:.0} virtual ms vs baseline 40 peers on one LAN \
         (multicast) p99 {p99_lan:.0} ms"
    );
    vec![Figure::reported(
        "propagation p99 from one spoke to the 39 others through the hub, sans-IO, 1 ms one way (baseline: 40 peers on one LAN)",
        p99,
        Some(p99_lan),
        "ms",
    )]
}
