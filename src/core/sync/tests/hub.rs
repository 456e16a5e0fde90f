//! Beyond one LAN: some side always starts reconciling (a spoke holding more than its hub,
//! one-way multicast), and a spoke behind NAT talks to its hub through the NAT.

use super::*;
use crate::testing::node_addr;

/// A world of a hub (node 0) and `spokes` (nodes 1..), unicast only; the spokes cannot
/// reach each other (with `nat`, each sits behind its own NAT). Nothing is started: see
/// [`join`].
fn hub_world(hub: Vec<Entry>, spokes: Vec<Vec<Entry>>, nat: bool) -> World {
    let mut world = World::new(SeededRng::new(0));
    let n = spokes.len() + 1;
    for (node, entries) in std::iter::once(hub).chain(spokes).enumerate() {
        let config = config_builder(node).multicast(false).build();
        world.insert(Peer::new(
            config,
            entries,
            SeededRng::new(node as u64 + 10),
            now(0),
        ));
        world.net.lan[node] = None;
    }
    for a in 1..n {
        for b in 1..n {
            world.net.blocked[a][b] = a != b;
        }
        if nat {
            let ip = ::core::net::IpAddr::from([198, 51, 100, a as u8]);
            let home = world.net.add_nat(ip, 30_000);
            world.net.put_behind_nat(a, home, None);
        }
    }
    world
}

/// Starts node `node` (a spoke lists the hub first, as the daemon does).
fn join(world: &mut World, node: usize) {
    if node != 0 {
        world.act(node, |p, now| p.set_listed_peers(now, vec![node_addr(0)]));
    }
    world.start(node);
}

#[test]
fn a_spoke_holding_more_than_the_hub_converges() {
    // The hub and spoke 2 agree; spoke 1 holds five more. The hub is the majority (it waits
    // for spoke 1 to pull); spoke 1 hears only the hub, a tie in which the bigger set waits.
    // The stalemate rule breaks it, and spoke 2 gets the five through the hub.
    let base: Vec<Entry> = (0..200).map(|i| entry(i, "P")).collect();
    let mut more = base.clone();
    more.extend((1000..1005).map(|i| entry(i, "Q")));
    for more_lacks_some in [false, true] {
        let mut spoke1 = more.clone();
        if more_lacks_some {
            // ...and also lacks one the others hold: both sides have something to give.
            spoke1.remove(7);
        }
        let mut world = hub_world(base.clone(), vec![spoke1, base.clone()], false);
        // The hub and spoke 2 agree first; then spoke 1 comes.
        join(&mut world, 0);
        join(&mut world, 2);
        world.run_until(3_000);
        join(&mut world, 1);
        let converged = world.run_until_converged(30_000, 10);
        let at = converged.unwrap_or_else(|| panic!("stalled:\n{}", world.describe())) - 3_000;
        assert_eq!(world.peer(2).ledger().len(), 205);
        let heartbeats = at / 1_000;
        assert!(
            heartbeats <= 2 * crate::core::sync::partner::STALEMATE_HEARTBEATS + 3,
            "took {at} ms"
        );
        let broken: u64 = (0..3)
            .map(|i| world.peer(i).stats().stalemates_broken)
            .sum();
        assert!(
            broken >= 1,
            "the majority rule alone cannot do it\n{}",
            world.describe()
        );
        world.settle();
    }
}

#[test]
fn one_way_multicast_converges_through_whisper() {
    // Two peers on one LAN; node 0's multicast does not reach node 1 (node 0 hears node 1).
    // Node 1 never learns node 0's fingerprint from the group; what node 0 holds must still
    // reach node 1, and the other way round.
    let base: Vec<Entry> = (0..100).map(|i| entry(i, "P")).collect();
    let variants: [(Vec<u64>, Vec<u64>); 3] = [
        (vec![1000, 1001], vec![]),
        (vec![], vec![2000, 2001, 2002]),
        (vec![1000], vec![2000]),
    ];
    for (extra0, extra1) in variants {
        for seed in 0..4u64 {
            let mut e0 = base.clone();
            e0.extend(extra0.iter().map(|i| entry(*i, "A")));
            let mut e1 = base.clone();
            e1.extend(extra1.iter().map(|i| entry(*i, "B")));
            let mut world = World::new(SeededRng::new(seed));
            world.insert(Peer::new(config(0), e0, SeededRng::new(seed), now(0)));
            world.insert(Peer::new(config(1), e1, SeededRng::new(!seed), now(0)));
            world.net.group_blocked[0][1] = true;
            world.start(0);
            world.start(1);
            let at = world.run_until_converged(30_000, 10).unwrap_or_else(|| {
                panic!(
                    "{extra0:?} / {extra1:?}, seed {seed}: stalled\n{}",
                    world.describe()
                )
            });
            assert!(at <= 15_000, "{extra0:?} / {extra1:?}: took {at} ms");
            assert_eq!(
                world.peer(0).ledger().len(),
                100 + extra0.len() + extra1.len()
            );
        }
    }
}

#[test]
fn a_spoke_behind_nat_reaches_its_hub_and_the_hub_answers_the_nat() {
    let log: Vec<Entry> = (0..300).map(|i| entry(i, "P")).collect();
    let mut world = hub_world(log, vec![vec![], vec![entry(5000, "S")]], true);
    for node in 0..3 {
        join(&mut world, node);
    }
    world
        .run_until_converged(30_000, 10)
        .unwrap_or_else(|| panic!("{}", world.describe()));
    world.run_until(world.now_ms() + 60_000);
    assert!(world.converged());
    let now_ms = world.now_ms();
    let hub_view: Vec<(SocketAddr, Reach)> = world
        .peer(0)
        .peers()
        .map(|p| (p.whisper, p.reached))
        .collect();
    let mut expected: Vec<(SocketAddr, Reach)> = [1, 2]
        .iter()
        .map(|s| (world.net.public_addr(*s, now_ms).unwrap(), Reach::Learned))
        .collect();
    expected.sort();
    let mut hub_view_sorted = hub_view.clone();
    hub_view_sorted.sort();
    assert_eq!(
        hub_view_sorted, expected,
        "the NAT's address, not the spoke's own"
    );
    for (addr, _) in &hub_view {
        assert_ne!(addr.port(), node_addr(1).port());
        assert_ne!(addr.port(), node_addr(2).port());
    }
    for spoke in 1..3 {
        let seen: Vec<(SocketAddr, Reach)> = world
            .peer(spoke)
            .peers()
            .map(|p| (p.whisper, p.reached))
            .collect();
        assert_eq!(seen, vec![(node_addr(0), Reach::Listed)]);
    }
    // Heartbeats kept the mappings open for a minute past convergence: no datagram from
    // the hub was dropped at a NAT once the spokes had spoken.
    assert_eq!(
        world.counters.unknown_dest + world.counters.unreachable,
        0,
        "{}",
        world.describe()
    );
    assert_eq!(world.counters.nat_dropped, 0, "{}", world.describe());
}

#[test]
fn without_keepalives_a_nat_drops_what_the_hub_sends() {
    // The check above can fail: a NAT timeout shorter than the heartbeat closes the mapping
    // between two HELLOs, and the hub's datagrams are dropped.
    let mut world = hub_world(vec![], vec![vec![]], true);
    world.net.nats[0].timeout_ms = 500;
    join(&mut world, 0);
    join(&mut world, 1);
    world.run_until(20_000);
    assert!(world.counters.nat_dropped > 0);
}
