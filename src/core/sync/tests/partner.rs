//! Who starts a session, and with whom.

use super::*;

#[test]
fn with_no_majority_the_smaller_set_pulls_and_nothing_is_multicast() {
    // Two peers: neither view is a majority. Whichever hears the other first, only the
    // joiner starts a session, and the big log travels over whisper, not the group.
    for a_starts_first in [true, false] {
        let entries: Vec<Entry> = (0..2000).map(|i| entry(i, "P")).collect();
        let mut world = World::new(SeededRng::new(0));
        world.insert(peer(0, entries, 1));
        world.insert(peer(1, vec![], 2));
        if a_starts_first {
            world.start(0);
            world.start(1);
        } else {
            world.start(1);
            world.start(0);
        }
        world.settle();
        let (a, b) = (world.peer(0), world.peer(1));
        assert_eq!(b.ledger().len(), 2000);
        assert_eq!(a.stats().sessions_started, 0);
        assert_eq!(b.stats().sessions_started, 1);
        assert_eq!(a.stats().entries_pushed + b.stats().entries_pushed, 0);
    }
}

#[test]
fn serving_holdoff_ends_on_time_even_before_a_timer_runs() {
    let mut a = peer(0, vec![entry(1, "P")], 3);
    a.start(now(0));
    let from: SocketAddr = "127.0.0.1:1002".parse().unwrap();
    let request = RangesRequest {
        request_id: 1,
        runs: vec![],
        want: vec![],
        cookie: None,
        padding: vec![],
    };
    let request = clear_datagram(42, 1002, Body::SyncRequest(SyncRequest::Ranges(request)));
    a.handle_datagram(now(100), Channel::Whisper, from, &request);
    let hello = clear_datagram(
        42,
        1002,
        Body::Hello(Hello {
            name: "b".into(),
            fingerprint: Fingerprint { count: 2, sum: 5 },
            newest: None,
        }),
    );
    a.handle_datagram(now(600), Channel::Group, from, &hello);
    assert!(!a.in_session(), "b is asking us: held off");
    // The hold-off is over; no timer has run since.
    let after = 100 + Tuning::default().serving_holdoff_ms;
    a.handle_datagram(now(after), Channel::Group, from, &hello);
    assert!(a.in_session(), "hold-off over: b is a partner again");
}

/// A HELLO from `node` (whisper port 1002) reporting `count` entries, the newest made at
/// unix ms `newest_ms`.
fn hello_with_newest(count: u64, newest_ms: u64) -> Vec<u8> {
    let newest = EntryBuilder::at_ms(newest_ms).id_random([9; 10]).build();
    clear_datagram(
        42,
        1002,
        Body::Hello(Hello {
            name: "b".into(),
            fingerprint: Fingerprint { count, sum: 5 },
            newest: Some(newest.key()),
        }),
    )
}

#[test]
fn a_difference_that_may_be_in_flight_is_pulled_only_once_it_holds() {
    // B reports one entry more than we hold, made just now: it may be on its way to us.
    let heartbeat = config(0).heartbeat_ms;
    let from: SocketAddr = "127.0.0.1:1002".parse().unwrap();
    let mut a = peer(0, vec![entry(1, "P")], 3);
    a.start(now(0));
    let t = 5_000;
    let fresh = now(t).unix_ms - 10;
    a.handle_datagram(now(t), Channel::Group, from, &hello_with_newest(2, fresh));
    assert!(!a.in_session(), "in flight, perhaps: wait");
    // The same difference, reported again a heartbeat later: it holds, so something was
    // lost: pull.
    let later = t + heartbeat;
    a.handle_datagram(
        now(later),
        Channel::Group,
        from,
        &hello_with_newest(2, fresh),
    );
    assert!(a.in_session(), "the difference held: pull");
    // A difference whose newest entries are old cannot be in flight: pulled at once.
    let mut c = peer(0, vec![entry(1, "P")], 3);
    c.start(now(0));
    let old = now(t).unix_ms - 10 * heartbeat;
    c.handle_datagram(now(t), Channel::Group, from, &hello_with_newest(2, old));
    assert!(c.in_session(), "nothing in flight: pull at once");
}

#[test]
fn a_joiner_pulls_at_once_instead_of_waiting_for_a_heartbeat() {
    // A member that announced itself long ago answers a joiner's probe heard on the group
    // with a HELLO at once: the joiner trusts an address heard on the group (an answer
    // over whisper alone is unproven, see `request_allowance`), so it need not wait for
    // the member's next heartbeat (about 1,000 ms away here) to start pulling.
    let entries: Vec<Entry> = (0..200).map(|i| entry(i, "P")).collect();
    let mut world = World::new(SeededRng::new(0));
    let a = world.insert(peer(0, entries.clone(), 1));
    world.start(a);
    world.run_until(300);
    let b = world.insert(Peer::new(
        config(1),
        Vec::new(),
        SeededRng::new(2),
        now(300),
    ));
    world.start(b);
    world.run_until(360);
    assert_eq!(
        world.peer(b).ledger().len(),
        entries.len(),
        "{}",
        world.describe()
    );
    assert_eq!(world.peer(b).stats().sessions_completed, 1);
}

#[test]
fn probes_heard_on_the_group_cost_at_most_one_hello_per_tenth_of_a_heartbeat() {
    let mut a = peer(0, vec![entry(1, "P")], 1);
    let hub: SocketAddr = "198.51.100.7:47684".parse().unwrap();
    a.set_listed_peers(now(0), vec![hub]);
    a.start(now(0));
    // The hub answers: a live unicast peer, which gets every heartbeat's HELLO.
    let hub_hello = clear_datagram(
        55,
        hub.port(),
        Body::Hello(Hello {
            name: "hub".into(),
            fingerprint: Fingerprint::default(),
            newest: None,
        }),
    );
    a.handle_datagram(now(10), Channel::Whisper, hub, &hub_hello);
    a.drain_actions();
    let probe = clear_datagram(
        77,
        4000,
        Body::SyncRequest(SyncRequest::Probe {
            fingerprint: Fingerprint::default(),
        }),
    );
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut hellos_at = Vec::new();
    let mut unicast_hellos = 0;
    // A probe every 5 ms for 300 ms (under the request rate limit's burst); the heartbeat
    // is 1,000 ms, so the first comes at once and then one per 100 ms.
    for ms in (300..600).step_by(5) {
        a.handle_datagram(now(ms), Channel::Group, from, &probe);
        for action in a.drain_actions() {
            match action {
                Action::SendGroup(bytes)
                    if matches!(wire::decode(&bytes).unwrap().body, Body::Hello(_)) =>
                {
                    hellos_at.push(ms)
                }
                Action::SendTo(_, bytes)
                    if matches!(wire::decode(&bytes).unwrap().body, Body::Hello(_)) =>
                {
                    unicast_hellos += 1
                }
                _ => {}
            }
        }
    }
    assert_eq!(hellos_at, vec![300, 400, 500], "{hellos_at:?}");
    assert_eq!(unicast_hellos, 0, "probes on the LAN cost no WAN traffic");
    // Over whisper a probe is answered with a summary only: a HELLO to the group would not
    // reach a unicast peer anyway.
    a.handle_datagram(now(700), Channel::Whisper, from, &probe);
    let hellos = a
        .drain_actions()
        .into_iter()
        .filter(|action| matches!(action, Action::SendGroup(_)))
        .count();
    assert_eq!(hellos, 0);
}
