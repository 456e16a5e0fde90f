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
