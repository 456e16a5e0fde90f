//! Abuse limits: the 3x rule, token buckets, cookies and bounded tables.

use super::*;
use ::core::net::IpAddr;
use std::collections::HashMap;

#[test]
fn spoofed_request_flood_gets_answers_within_3x_budget() {
    let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
    let mut a = peer(0, entries, 1);
    sealed(&mut a, 7, 1);
    // A member spoofs requests "from" 40 victims (same victims again and again) and
    // from fresh addresses, with no cookie or a made-up one.
    let mut received: HashMap<SocketAddr, u64> = HashMap::new();
    let mut sent: HashMap<SocketAddr, u64> = HashMap::new();
    let mut rng = SeededRng::new(99);
    for i in 0..5_000u64 {
        let victim = if i % 2 == 0 {
            format!("10.0.0.{}", i % 40).parse().unwrap()
        } else {
            IpAddr::from((i as u32).to_be_bytes())
        };
        let port = 2000 + (i % 3) as u16;
        let cookie = (i % 3 == 0).then(|| rng.bytes::<8>());
        let body = if i % 5 == 0 {
            Body::SyncRequest(SyncRequest::Probe {
                fingerprint: Fingerprint::default(),
            })
        } else {
            full_range_request(i, cookie)
        };
        // Advertising another port changes nothing: a whisper datagram is answered at its
        // source address.
        let d = forged(7, 1_000_000 + i, 9, body);
        let reply_to = SocketAddr::new(victim, port);
        *received.entry(reply_to).or_insert(0) += d.len() as u64;
        a.handle_datagram(now(i), Channel::Whisper, reply_to, &d);
        for action in a.drain_actions() {
            if let Action::SendTo(to, bytes) = action {
                *sent.entry(to).or_insert(0) += bytes.len() as u64;
            }
        }
    }
    assert!(
        !sent.is_empty(),
        "unproven requesters still get a cookie back"
    );
    for (to, bytes) in &sent {
        let got = received.get(to).copied().unwrap_or(0);
        assert!(*bytes <= 3 * got, "{to}: sent {bytes} for {got} received");
    }
    let total_sent: u64 = sent.values().sum();
    let total_received: u64 = received.values().sum();
    assert!(total_sent <= 3 * total_received);
    assert!(a.stats().answers_limited > 0);
    assert!(a.tracked_sources() <= Tuning::default().max_sources);
    assert!(a.peers().count() <= Tuning::default().max_peers);
}

#[test]
fn request_token_bucket_limits_one_source() {
    let mut a = peer(0, vec![entry(1, "P")], 1);
    let from: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let burst = Tuning::default().request_burst as u64;
    // A burst at one instant: the bucket's size gets through, the rest is dropped.
    for i in 0..burst + 50 {
        let d = clear_datagram(5, 1001, full_range_request(i, None));
        a.handle_datagram(now(10), Channel::Whisper, from, &d);
    }
    assert_eq!(a.stats().dropped.get("rate_limited"), Some(&50));
    // Tokens come back with time.
    let d = clear_datagram(5, 1001, full_range_request(9999, None));
    a.handle_datagram(now(1_010), Channel::Whisper, from, &d);
    assert_eq!(a.stats().dropped.get("rate_limited"), Some(&50));
    // A proven source draws from its own, bigger bucket: the empty unproven one does
    // not hold it back.
    let whisper: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let cookie = Some(a.admission.cookie_for(whisper));
    let proven_burst = Tuning::default().proven_request_burst as u64;
    for i in 0..proven_burst + 7 {
        let d = clear_datagram(5, 1001, full_range_request(10_000 + i, cookie));
        a.handle_datagram(now(1_010), Channel::Whisper, from, &d);
    }
    // The proven bucket admits its burst and drops the rest.
    assert_eq!(a.stats().dropped.get("rate_limited"), Some(&(50 + 7)));
}

#[test]
fn honest_requester_proves_its_address_once_and_gets_the_full_budget() {
    let entries: Vec<Entry> = (0..5000).map(|i| entry(i, "P")).collect();
    let (a, b) = sealed_pair(entries, vec![]);
    let (a, b) = reconcile_at(0, a, b);
    assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
    // b learnt a's cookie from its summary or first answer; from then on every answer
    // was full size, so at most one answer was ever cut.
    assert!(a.stats().answers_limited <= 1, "{:?}", a.stats());
    assert!(b
        .peers()
        .all(|p| b.admission.cookie_from(p.whisper).is_some()));
    assert_eq!(b.stats().sessions_completed, 1);
    assert!(b.stats().requests_sent <= 80, "{}", b.stats().requests_sent);
}

#[test]
fn peer_and_source_tables_stay_bounded_under_fake_node_id_flood() {
    let entries: Vec<Entry> = (0..500).map(|i| entry(i, "P")).collect();
    let mut a = peer(0, entries.clone(), 1);
    sealed(&mut a, 7, 1);
    let tuning = Tuning::default();
    let flood = 20_000u64;
    for i in 0..flood {
        let ip = IpAddr::from((0x0a00_0000u32 + i as u32).to_be_bytes());
        let body = if i % 2 == 0 {
            Body::Hello(Hello {
                name: format!("fake{i}"),
                fingerprint: Fingerprint {
                    count: i,
                    sum: i as u128,
                },
                newest: None,
            })
        } else {
            Body::SyncRequest(SyncRequest::Probe {
                fingerprint: Fingerprint { count: i, sum: 1 },
            })
        };
        let d = forged(7, i + 10, 3000, body);
        a.handle_datagram(now(i / 10), Channel::Group, SocketAddr::new(ip, 3000), &d);
        a.drain_actions();
        assert!(a.peers().count() <= tuning.max_peers);
        assert!(a.tracked_sources() <= tuning.max_sources);
    }
    assert!(a.stats().peers_evicted >= flood - tuning.max_peers as u64);
    // An honest peer still reconciles afterwards.
    let mut b = peer(1, entries[..100].to_vec(), 2);
    sealed(&mut b, 7, 2);
    let mut world = World::new(SeededRng::new(0));
    world.run_until(flood);
    world.insert(a);
    world.insert(b);
    world.start(1);
    world.settle();
    assert_eq!(
        world.peer(1).ledger().fingerprint(),
        world.peer(0).ledger().fingerprint()
    );
}
