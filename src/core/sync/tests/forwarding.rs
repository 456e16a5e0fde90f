//! Forwarding of new entries (hub behaviour): to the group and the other unicast peers,
//! never back to the source, never in a loop.

use super::*;
use crate::testing::node_addr;

/// Where each LOG_ENTRY in `actions` goes (`None`: the group), with its entry count.
fn log_entries(actions: Vec<Action>) -> Vec<(Option<SocketAddr>, usize)> {
    let mut out = Vec::new();
    for action in actions {
        let (to, bytes) = match action {
            Action::SendGroup(bytes) => (None, bytes),
            Action::SendTo(addr, bytes) => (Some(addr), bytes),
            Action::Persist { .. } => continue,
        };
        if let Body::LogEntry(entries) = wire::decode(&bytes).unwrap().body {
            out.push((to, entries.len()));
        }
    }
    out
}

#[test]
fn new_entries_from_a_unicast_peer_go_to_the_group_and_the_other_unicast_peers() {
    let mut hub = Peer::new(config(0), vec![], SeededRng::new(1), now(0));
    hub.start(now(0));
    let spokes: Vec<SocketAddr> = (1..=3u8)
        .map(|k| SocketAddr::from(([203, 0, 113, k], 40_000 + u16::from(k))))
        .collect();
    let hello = |name: &str| {
        Body::Hello(Hello {
            name: name.into(),
            fingerprint: Fingerprint::default(),
            newest: None,
        })
    };
    for (k, spoke) in spokes.iter().enumerate() {
        let node = 100 + k as u64;
        let d = clear_datagram(node, 47684, hello("spoke"));
        hub.handle_datagram(now(10), Channel::Whisper, *spoke, &d);
        // Each echoes the hub's cookie from its address: proven, so no 3x limit applies.
        let cookie = Some(hub.admission.cookie_for(*spoke));
        let d = clear_datagram(node, 47684, full_range_request(k as u64, cookie));
        hub.handle_datagram(now(20), Channel::Whisper, *spoke, &d);
    }
    // A peer on the hub's LAN, heard on the group.
    let lan = node_addr(5);
    let d = clear_datagram(55, lan.port(), hello("lan"));
    hub.handle_datagram(now(30), Channel::Group, lan, &d);
    hub.drain_actions();

    // An entry from spoke 0 goes to the group and spokes 1 and 2, not back to spoke 0.
    let d = clear_datagram(100, 47684, Body::LogEntry(vec![entry(1, "P")]));
    hub.handle_datagram(now(40), Channel::Whisper, spokes[0], &d);
    let out = log_entries(hub.drain_actions());
    assert_eq!(
        out,
        vec![(None, 1), (Some(spokes[1]), 1), (Some(spokes[2]), 1)]
    );
    // Heard again (a duplicate, or from another peer): not new, not forwarded.
    hub.handle_datagram(now(41), Channel::Whisper, spokes[1], &d);
    assert_eq!(log_entries(hub.drain_actions()), vec![]);
    // An entry from the LAN peer goes to the unicast peers only: the group heard it.
    let d = clear_datagram(55, lan.port(), Body::LogEntry(vec![entry(2, "P")]));
    hub.handle_datagram(now(50), Channel::Group, lan, &d);
    let out = log_entries(hub.drain_actions());
    assert_eq!(
        out,
        spokes.iter().map(|s| (Some(*s), 1)).collect::<Vec<_>>()
    );
    assert_eq!(hub.stats().entries_forwarded, 2);
    assert_eq!(hub.stats().unicast_withheld, 0);
}

#[test]
fn a_triangle_of_unicast_peers_forwards_each_entry_once_and_never_loops() {
    let mut world = World::new(SeededRng::new(0));
    for node in 0..3 {
        let config = config_builder(node).multicast(false).build();
        world.insert(Peer::new(
            config,
            vec![],
            SeededRng::new(node as u64),
            now(0),
        ));
        world.net.lan[node] = None;
    }
    for node in 0..3 {
        let others: Vec<SocketAddr> = (0..3).filter(|o| *o != node).map(node_addr).collect();
        world.act(node, |p, now| p.set_listed_peers(now, others));
        world.start(node);
    }
    world.run_until(5_000);
    world.record_datagrams();
    let request = AdjustRequest {
        actor: "officer".into(),
        target: "P".into(),
        delta: 5,
        reason: "boss".into(),
    };
    world.act(0, |p, now| {
        let entry = p.prepare_adjust(now, &request).unwrap();
        p.commit_local(now, entry);
    });
    world.run_until(60_000);
    assert!(world.converged());
    let log_entry_datagrams = world
        .recorded_datagrams()
        .iter()
        .filter(|d| matches!(wire::decode(d).unwrap().body, Body::LogEntry(_)))
        .count();
    // A to B and C; B forwards to C, C to B; each copy is old news where it lands.
    assert_eq!(log_entry_datagrams, 4);
    let forwarded: Vec<u64> = (0..3)
        .map(|i| world.peer(i).stats().entries_forwarded)
        .collect();
    assert_eq!(forwarded, vec![0, 1, 1]);
    let merged: Vec<u64> = (0..3)
        .map(|i| world.peer(i).stats().entries_merged)
        .collect();
    assert_eq!(merged, vec![0, 1, 1], "nothing came back to its author");
    assert_eq!(
        world.counters.sent_group, 0,
        "unicast-only peers never multicast"
    );
}

#[test]
fn a_hub_refilling_from_one_spoke_does_not_forward_the_log_to_the_others() {
    // Five spokes that cannot reach each other hold the same 400 entries; the hub restarted
    // empty. It pulls them from one spoke; the others reported that spoke's fingerprint, so
    // nothing is forwarded to them.
    let log: Vec<Entry> = (0..400).map(|i| entry(i, "P")).collect();
    let mut world = World::new(SeededRng::new(0));
    let hub = config_builder(0).multicast(false).build();
    world.insert(Peer::new(hub, vec![], SeededRng::new(1), now(0)));
    for node in 1..=5 {
        let config = config_builder(node).multicast(false).build();
        world.insert(Peer::new(
            config,
            log.clone(),
            SeededRng::new(node as u64 + 1),
            now(0),
        ));
    }
    for node in 0..=5 {
        world.net.lan[node] = None;
        for other in 1..=5 {
            world.net.blocked[node][other] |= node != 0 && node != other;
        }
    }
    for node in 1..=5 {
        world.act(node, |p, now| p.set_listed_peers(now, vec![node_addr(0)]));
    }
    for node in 0..=5 {
        world.start(node);
    }
    world.settle();
    assert!(world.converged());
    assert_eq!(world.peer(0).ledger().len(), 400);
    assert_eq!(world.peer(0).stats().entries_forwarded, 0);
    let packed = wire::pack_log_entries("raid", 1, 1, &log).len() as u64;
    let to_spokes: u64 = (1..=5).map(|s| world.counters.sent_to_node[s]).sum();
    assert!(
        to_spokes < packed,
        "{to_spokes} datagrams to the spokes; the log alone packs into {packed}"
    );
}
