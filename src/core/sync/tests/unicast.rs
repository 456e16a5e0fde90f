//! Unicast peers: answers at the NAT-visible source, nothing for datagrams that did not open,
//! listed peers retried with capped backoff forever, learned peers expiring and capped, and a
//! peer heard both ways being one peer.

use super::*;
use crate::proto::limits::MAX_DATAGRAM;

/// Node `node`'s config, multicast on or off.
fn unicast_config(node: usize, multicast: bool) -> PeerConfigBuilder {
    config_builder(node).multicast(multicast)
}

/// A HELLO from a node holding `count` entries (as long as a real one: the digest sum and
/// the newest key take their full size).
fn hello_body(name: &str, count: u64) -> Body {
    Body::Hello(Hello {
        name: name.into(),
        fingerprint: Fingerprint {
            count,
            sum: u128::MAX - u128::from(count),
        },
        newest: Some(entry(count, "P").key()),
    })
}

/// A HELLO from a node holding what an empty peer holds (no session is started with it).
fn empty_set_hello(name: &str) -> Body {
    Body::Hello(Hello {
        name: name.into(),
        fingerprint: Fingerprint::default(),
        newest: None,
    })
}

/// Where each datagram in `actions` goes (`None`: the group) and what it carries (clear
/// datagrams only).
fn sends(actions: Vec<Action>) -> Vec<(Option<SocketAddr>, Body)> {
    actions
        .into_iter()
        .filter_map(|action| match action {
            Action::SendGroup(bytes) => Some((None, wire::decode(&bytes).unwrap().body)),
            Action::SendTo(addr, bytes) => Some((Some(addr), wire::decode(&bytes).unwrap().body)),
            Action::Persist { .. } => None,
        })
        .collect()
}

/// Runs `peer`'s timers from `from` to `until` (as a driver would: at each time
/// `poll_timeout` names) and collects what it sends, with the time.
fn run_timers(peer: &mut Peer, from: u64, until: u64) -> Vec<(u64, Option<SocketAddr>, Body)> {
    let mut out = Vec::new();
    let mut t = from;
    while let Some(due) = peer.poll_timeout() {
        t = due.max(t);
        if t > until {
            break;
        }
        peer.handle_timeout(now(t));
        for (to, body) in sends(peer.drain_actions()) {
            out.push((t, to, body));
        }
    }
    out
}

#[test]
fn whisper_datagrams_are_answered_at_their_source_not_the_advertised_port() {
    let entries: Vec<Entry> = (0..50).map(|i| entry(i, "P")).collect();
    let mut a = Peer::new(
        unicast_config(0, false).build(),
        entries,
        SeededRng::new(1),
        now(0),
    );
    a.start(now(0));
    a.drain_actions();
    // A spoke behind NAT: it advertises whisper port 47684, its NAT sends from 40001.
    let nat: SocketAddr = "203.0.113.5:40001".parse().unwrap();
    let advertised: SocketAddr = "203.0.113.5:47684".parse().unwrap();
    let d = clear_datagram(77, 47684, hello_body("spoke", 0));
    a.handle_datagram(now(10), Channel::Whisper, nat, &d);
    let probe = clear_datagram(
        77,
        47684,
        Body::SyncRequest(SyncRequest::Probe {
            fingerprint: Fingerprint::default(),
        }),
    );
    a.handle_datagram(now(20), Channel::Whisper, nat, &probe);
    let d = clear_datagram(77, 47684, full_range_request(1, None));
    a.handle_datagram(now(30), Channel::Whisper, nat, &d);
    let out = sends(a.drain_actions());
    let kinds: Vec<&str> = out.iter().map(|(_, body)| body.kind()).collect();
    // The greeting (a summary with a cookie), the probe's summary, and the answer.
    assert_eq!(kinds, vec!["SYNC_RESPONSE"; 3]);
    assert!(matches!(
        &out[0].1,
        Body::SyncResponse(SyncResponse::Summary {
            cookie: Some(_),
            ..
        })
    ));
    for (to, body) in &out {
        assert_eq!(*to, Some(nat), "{} went to {to:?}", body.kind());
    }
    let info = a.peers().next().unwrap();
    assert_eq!(
        (info.node, info.whisper, info.reached),
        (77, nat, Reach::Learned)
    );
    // Its HELLOs every heartbeat go there too, and nothing ever to the advertised port.
    for (_, to, body) in run_timers(&mut a, 30, 4_000) {
        assert_ne!(to, Some(advertised), "{}", body.kind());
        assert_eq!(
            to,
            Some(nat),
            "{}: a unicast-only peer never multicasts",
            body.kind()
        );
    }
}

#[test]
fn a_source_whose_datagrams_do_not_open_with_the_group_key_gets_nothing() {
    let entries: Vec<Entry> = (0..50).map(|i| entry(i, "P")).collect();
    let mut a = Peer::new(
        unicast_config(0, true).build(),
        entries,
        SeededRng::new(1),
        now(0),
    );
    sealed(&mut a, 7, 1);
    a.start(now(0));
    a.drain_actions();
    let outsider: SocketAddr = "198.51.100.9:5000".parse().unwrap();
    let bodies = [
        hello_body("x", 0),
        Body::SyncRequest(SyncRequest::Probe {
            fingerprint: Fingerprint::default(),
        }),
        full_range_request(1, None),
        Body::LogEntry(vec![entry(999, "X")]),
    ];
    for (k, body) in bodies.iter().enumerate() {
        let t = 10 + k as u64;
        // Sealed with another key, in the clear, and garbage: none opens.
        let wrong_key = forged(8, 5, 5000, body.clone());
        let clear = clear_datagram(5, 5000, body.clone());
        for d in [
            &wrong_key,
            &clear,
            &vec![0xA1; 300],
            &vec![0u8; MAX_DATAGRAM],
        ] {
            a.handle_datagram(now(t), Channel::Whisper, outsider, d);
            a.handle_datagram(now(t), Channel::Group, outsider, d);
        }
    }
    let to_outsider = |actions: Vec<Action>| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::SendTo(to, _) if to.ip() == outsider.ip()))
            .count()
    };
    let mut sent_to_outsider = to_outsider(a.drain_actions());
    for t in (100..20_000).step_by(100) {
        a.handle_timeout(now(t));
        sent_to_outsider += to_outsider(a.drain_actions());
    }
    assert_eq!(sent_to_outsider, 0);
    assert_eq!(a.peers().count(), 0);
    assert_eq!(a.tracked_sources(), 0, "nothing was even counted for it");
    // The same HELLO sealed with the group key is answered at once: the test can fail.
    let d = forged(7, 5, 5000, hello_body("x", 0));
    a.handle_datagram(now(20_000), Channel::Whisper, outsider, &d);
    assert!(to_outsider(a.drain_actions()) >= 1);
}

#[test]
fn a_silent_listed_peer_is_retried_with_backoff_capped_at_15_s_forever() {
    let config = unicast_config(0, false)
        .heartbeat_ms(1_000)
        .peer_timeout_ms(5_000)
        .build();
    assert_eq!(config.tuning.listed_retry_max_ms, 15_000, "the default");
    let mut a = Peer::new(config, vec![], SeededRng::new(3), now(0));
    let hub: SocketAddr = "198.51.100.7:47684".parse().unwrap();
    a.set_listed_peers(now(0), vec![hub]);
    a.start(now(0));
    let mut contacts: Vec<u64> = sends(a.drain_actions())
        .into_iter()
        .filter(|(to, _)| *to == Some(hub))
        .map(|_| 0)
        .collect();
    assert_eq!(contacts, vec![0], "contacted at once");
    let hour = 3_600_000;
    for (t, to, body) in run_timers(&mut a, 0, hour) {
        assert_eq!(to, Some(hub));
        assert_eq!(body.kind(), "HELLO", "a silent peer only gets HELLOs");
        contacts.push(t);
    }
    let gaps: Vec<u64> = contacts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(&gaps[..5], &[1_000, 2_000, 4_000, 8_000, 15_000]);
    assert!(gaps.iter().all(|gap| *gap <= 15_000), "{gaps:?}");
    assert!(
        *contacts.last().unwrap() > hour - 15_000,
        "never given up: {contacts:?}"
    );
    assert_eq!(a.stats().listed_retries, contacts.len() as u64);
    let listed: Vec<ListedPeer> = a.listed().collect();
    assert_eq!(
        listed,
        vec![ListedPeer {
            address: hub,
            node: None,
            last_heard_ms: None
        }]
    );

    // It answers: from now on it gets every HELLO, about one a heartbeat.
    let t0 = hour + 1;
    let d = clear_datagram(42, 47684, hello_body("hub", 0));
    a.handle_datagram(now(t0), Channel::Whisper, hub, &d);
    a.drain_actions();
    let mut answering = Vec::new();
    for k in 0..4 {
        // It keeps answering every heartbeat.
        let t = t0 + k * 1_000;
        a.handle_datagram(now(t), Channel::Whisper, hub, &d);
        answering.extend(run_timers(&mut a, t, t + 999));
    }
    let to_hub = answering
        .iter()
        .filter(|(_, to, body)| *to == Some(hub) && body.kind() == "HELLO")
        .count();
    assert!((3..=5).contains(&to_hub), "{to_hub} HELLOs in 4 s");
    assert_eq!(a.listed().next().unwrap().node, Some(42));
    assert_eq!(a.peers().next().unwrap().reached, Reach::Listed);
    // It falls silent again: the retries start over at one heartbeat.
    let silent_from = t0 + 3_000;
    let retries: Vec<u64> = run_timers(&mut a, t0 + 4_000, t0 + 40_000)
        .into_iter()
        .filter(|(_, to, body)| *to == Some(hub) && body.kind() == "HELLO")
        .map(|(t, _, _)| t)
        .collect();
    let first_retry = retries
        .iter()
        .position(|t| *t >= silent_from + 5_000)
        .expect("retried");
    let gaps: Vec<u64> = retries[first_retry..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(&gaps[..3], &[1_000, 2_000, 4_000], "{retries:?}");
}

#[test]
fn learned_peers_expire_after_the_peer_timeout_and_are_capped() {
    let config = unicast_config(0, false)
        .heartbeat_ms(1_000)
        .peer_timeout_ms(5_000)
        .max_learned_peers(4)
        .build();
    let mut a = Peer::new(config, vec![], SeededRng::new(3), now(0));
    a.start(now(0));
    a.drain_actions();
    // Our set (so no session), in a HELLO as long as a real one.
    let long_name = "s".repeat(60);
    let spoke = |k: u16| SocketAddr::from(([203, 0, 113, k as u8], 40_000 + k));
    for k in 1..=6u16 {
        let d = clear_datagram(100 + u64::from(k), 47684, empty_set_hello(&long_name));
        a.handle_datagram(now(u64::from(k)), Channel::Whisper, spoke(k), &d);
    }
    let learned: Vec<SocketAddr> = a
        .unicast
        .learned()
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    assert_eq!(
        learned,
        (3..=6).map(spoke).collect::<Vec<_>>(),
        "the stalest went"
    );
    assert_eq!(a.stats().learned_evicted, 2);
    a.drain_actions();
    // The next HELLO goes to the four (each sent one HELLO: within its 3x allowance).
    let hellos: Vec<Option<SocketAddr>> = run_timers(&mut a, 10, 1_200)
        .into_iter()
        .filter(|(_, _, body)| body.kind() == "HELLO")
        .map(|(_, to, _)| to)
        .collect();
    assert_eq!(hellos, (3..=6).map(|k| Some(spoke(k))).collect::<Vec<_>>());
    // Spoke 6 keeps talking; the others fall silent and expire.
    for t in (1_000..=9_000).step_by(1_000) {
        let d = clear_datagram(106, 47684, empty_set_hello(&long_name));
        a.handle_datagram(now(t), Channel::Whisper, spoke(6), &d);
        a.handle_timeout(now(t));
    }
    a.drain_actions();
    let learned: Vec<SocketAddr> = a
        .unicast
        .learned()
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    assert_eq!(learned, vec![spoke(6)]);
    let later: Vec<Option<SocketAddr>> = run_timers(&mut a, 9_000, 11_000)
        .into_iter()
        .filter(|(_, _, body)| body.kind() == "HELLO")
        .map(|(_, to, _)| to)
        .collect();
    assert!(!later.is_empty());
    assert!(later.iter().all(|to| *to == Some(spoke(6))), "{later:?}");
    assert_eq!(
        a.peers().count(),
        1,
        "the silent ones left the peer table too"
    );
}

#[test]
fn an_unproven_learned_peer_gets_at_most_3x_what_it_sent() {
    // A member forging one HELLO "from" a bystander: our HELLOs and forwards to that
    // address stop at 3x the bytes it sent, however long we run and however much we learn.
    let mut a = Peer::new(
        unicast_config(0, true).build(),
        vec![],
        SeededRng::new(3),
        now(0),
    );
    a.start(now(0));
    let victim: SocketAddr = "198.51.100.20:4000".parse().unwrap();
    // It claims our (empty) set: no session is started with it.
    let forged_hello = clear_datagram(9, 4000, empty_set_hello("v"));
    a.handle_datagram(now(5), Channel::Whisper, victim, &forged_hello);
    let mut to_victim = 0u64;
    let mut tally = |actions: Vec<Action>| {
        for action in actions {
            if let Action::SendTo(to, bytes) = action {
                if to == victim {
                    to_victim += bytes.len() as u64;
                }
            }
        }
    };
    tally(a.drain_actions());
    // Entries keep arriving from a LAN peer and are forwarded to the unicast peers.
    let lan: SocketAddr = "127.0.0.1:20005".parse().unwrap();
    for i in 0..20u64 {
        let t = 100 + i * 200;
        let d = clear_datagram(55, 20005, Body::LogEntry(vec![entry(i, "P")]));
        a.handle_datagram(now(t), Channel::Group, lan, &d);
        a.handle_timeout(now(t));
        tally(a.drain_actions());
    }
    assert!(to_victim > 0, "it was a learned peer");
    let received = forged_hello.len() as u64;
    assert!(
        to_victim <= 3 * received,
        "{to_victim} for {received} received"
    );
    assert!(a.stats().unicast_withheld > 0);
}

#[test]
fn a_peer_heard_both_ways_is_one_peer_reached_by_multicast() {
    // Two peers on one LAN that also list each other: one PeerInfo each, reached by
    // multicast, and no unicast copies once they hear each other on the group.
    let a = Peer::new(
        unicast_config(0, true).build(),
        vec![],
        SeededRng::new(1),
        now(0),
    );
    let b = Peer::new(
        unicast_config(1, true).build(),
        vec![entry(1, "P")],
        SeededRng::new(2),
        now(0),
    );
    let mut world = World::new(SeededRng::new(0));
    world.insert(a);
    world.insert(b);
    world.act(0, |p, now| {
        p.set_listed_peers(now, vec![crate::testing::node_addr(1)])
    });
    world.act(1, |p, now| {
        p.set_listed_peers(now, vec![crate::testing::node_addr(0)])
    });
    world.start(0);
    world.start(1);
    world.run_until(3_000);
    let whisper_before = world.counters.sent_to;
    world.run_until(20_000);
    assert!(world.converged());
    for i in 0..2 {
        let peers: Vec<&PeerInfo> = world.peer(i).peers().collect();
        assert_eq!(peers.len(), 1, "node {i}: {peers:?}");
        assert_eq!(peers[0].reached, Reach::Multicast);
        assert!(peers[0].last_group_ms.is_some() && peers[0].last_whisper_ms.is_some());
        assert!(world
            .peer(i)
            .listed()
            .next()
            .unwrap()
            .last_heard_ms
            .is_some());
    }
    assert_eq!(
        world.counters.sent_to, whisper_before,
        "17 s of HELLOs by multicast only"
    );
    // The group goes quiet one way (b stops hearing a's multicast): a is still one peer
    // for b, now reached as a listed peer.
    world.net.group_blocked[0][1] = true;
    world.run_until(40_000);
    let seen_by_b: Vec<&PeerInfo> = world.peer(1).peers().collect();
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].reached, Reach::Listed);
}

#[test]
fn a_forged_hello_cannot_aim_a_session_at_a_bystander_beyond_3x() {
    // A member forges HELLOs "from" a bystander, claiming a set bigger than ours: we would
    // pull from it at once (majority rule) and keep at it (retries, the stalemate rule).
    // Every byte we send there, session requests included, stays within 3x what came
    // from that address.
    let mut a = Peer::new(
        unicast_config(0, false).build(),
        vec![],
        SeededRng::new(3),
        now(0),
    );
    a.start(now(0));
    a.drain_actions();
    let victim: SocketAddr = "198.51.100.20:4000".parse().unwrap();
    let mut received = 0u64;
    let mut to_victim = 0u64;
    let mut tally = |actions: Vec<Action>| {
        for action in actions {
            if let Action::SendTo(to, bytes) = action {
                if to == victim {
                    to_victim += bytes.len() as u64;
                }
            }
        }
    };
    for i in 0..10u64 {
        let t = 5 + i * 2_000;
        let forged_hello = clear_datagram(9, 4000, hello_body("v", 500));
        received += forged_hello.len() as u64;
        a.handle_datagram(now(t), Channel::Whisper, victim, &forged_hello);
        tally(a.drain_actions());
        // Its timers until the next HELLO: request timeouts and retries.
        let mut at = t;
        while let Some(due) = a.poll_timeout() {
            at = due.max(at);
            if at >= t + 2_000 {
                break;
            }
            a.handle_timeout(now(at));
            tally(a.drain_actions());
        }
    }
    assert!(
        a.stats().sessions_started > 0,
        "it tried to pull from the claimed bigger set"
    );
    assert!(
        to_victim <= 3 * received,
        "{to_victim} bytes sent to the bystander for {received} received"
    );
    assert!(a.stats().requests_withheld > 0);
}
