//! How the requester walks the key space and proves its address.

use super::super::requester::{subtract_spans, Span, SpanKind};
use super::*;
use crate::proto::digest::Digest;
use crate::proto::limits::MAX_DATAGRAM;

#[test]
fn subtract_spans_leaves_gaps() {
    let k = |i: u64| Key {
        at: Hlc(i),
        digest: Digest::default(),
    };
    let span = Span {
        lower: k(0),
        upper: k(100),
        kind: SpanKind::Fingerprint,
    };
    let left = subtract_spans(&[span], vec![(k(10), k(20)), (k(0), k(5)), (k(50), k(200))]);
    let bounds: Vec<(u64, u64)> = left.iter().map(|s| (s.lower.at.0, s.upper.at.0)).collect();
    assert_eq!(bounds, vec![(5, 10), (20, 50)]);
    assert!(subtract_spans(&[span], vec![(k(0), k(100))]).is_empty());
}

#[test]
fn first_request_without_a_cookie_is_padded_and_its_answer_carries_entries() {
    let entries: Vec<Entry> = (0..5000).map(|i| entry(i, "P")).collect();
    let (mut a, mut b) = sealed_pair(entries, vec![]);
    let addr: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    // b hears a's HELLO (no probe, so no summary cookie) and starts reconciling.
    a.start(now(0));
    for action in a.drain_actions() {
        if let Action::SendGroup(d) = action {
            let clear = a.outbox.sealer().open(&d).unwrap().into_owned();
            if matches!(wire::decode(&clear).unwrap().body, Body::Hello(_)) {
                b.handle_datagram(now(1), Channel::Group, addr, &d);
            }
        }
    }
    assert!(b.in_session());
    let requests = unicasts(&mut b);
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].len() > MAX_DATAGRAM - 8 && requests[0].len() <= MAX_DATAGRAM,
        "padded to a full datagram: {}",
        requests[0].len()
    );
    a.handle_datagram(now(2), Channel::Whisper, addr, &requests[0]);
    let answers = unicasts(&mut a);
    let sent: usize = answers.iter().map(Vec::len).sum();
    assert!(
        answers.len() >= 2 && sent <= 3 * requests[0].len(),
        "{sent}"
    );
    for d in &answers {
        b.handle_datagram(now(3), Channel::Whisper, addr, d);
    }
    assert!(
        b.ledger().len() >= 10,
        "first answer carried {}",
        b.ledger().len()
    );
    assert!(
        b.peers()
            .all(|p| b.admission.cookie_from(p.whisper).is_some()),
        "cookie learnt"
    );
}

/// A partner that answers every request, but only after a second (a CPU-starved responder,
/// as in the soak test): the requester learns the round trip and waits for it, where a
/// fixed 300 ms timeout abandoned the session after eight silent requests.
#[test]
fn slow_but_steady_partner_completes_the_session() {
    let entries: Vec<Entry> = (0..600).map(|i| entry(i, "P")).collect();
    let a = peer(0, entries, 1);
    let b = peer(1, vec![], 2);
    let mut world = world_at(0, vec![a, b]);
    // 500 ms each way: every answer comes a second after its request.
    world.net.min_delay_ms = 500;
    world.net.max_delay_ms = 500;
    let took = world.run_until_converged(120_000, 50);
    assert!(took.is_some(), "{}", world.describe());
    let (a, b) = two(world);
    for (name, peer) in [("a", &a), ("b", &b)] {
        let stats = peer.stats();
        assert_eq!(stats.sessions_aborted, 0, "{name} abandoned a session");
    }
    assert!(
        a.stats().sessions_completed + b.stats().sessions_completed >= 1,
        "a session completed"
    );
}

/// A partner that answers nothing after the session started is still given up on, within
/// a bounded time: the timeout doubles per round of timeouts up to its ceiling.
#[test]
fn silent_partner_is_given_up_within_a_bounded_time() {
    let entries: Vec<Entry> = (0..50).map(|i| entry(i, "P")).collect();
    // Partners are never forgotten here, so only the silence can end the session.
    let patient = |node: usize, entries: Vec<Entry>, seed: u64| {
        let cfg = config_builder(node).peer_timeout_ms(600_000).build();
        Peer::new(cfg, entries, SeededRng::new(seed), now(0))
    };
    let mut world = world_at(0, vec![patient(0, entries, 1), patient(1, vec![], 2)]);
    // Run until a session starts, then cut every link.
    let mut started_at = None;
    for ms in 0..10_000 {
        world.run_until(ms);
        if world.peer(0).in_session() || world.peer(1).in_session() {
            started_at = Some(ms);
            break;
        }
    }
    let started_at = started_at.expect("a session started");
    for rows in [&mut world.net.blocked, &mut world.net.group_blocked] {
        for row in rows.iter_mut() {
            row.iter_mut().for_each(|b| *b = true);
        }
    }
    let tuning = crate::core::sync::Tuning::default();
    // Each silent round costs at most the ceiling; the window's requests time out together.
    let bound = u64::from(tuning.max_silent_requests + 1) * tuning.request_timeout_max_ms;
    let mut ended_at = None;
    for ms in (started_at..started_at + bound + 1_000).step_by(5) {
        world.run_until(ms);
        if !world.peer(0).in_session() && !world.peer(1).in_session() {
            ended_at = Some(ms);
            break;
        }
    }
    let ended_at = ended_at.expect("the session was given up");
    let waited = ended_at - started_at;
    assert!(waited <= bound, "gave up after {waited} ms (bound {bound})");
    // Longer than the fixed 300 ms x 8 of before: the backoff waited for a slow answer.
    assert!(waited > 3_000, "gave up after only {waited} ms");
    let aborted = world.peer(0).stats().sessions_aborted + world.peer(1).stats().sessions_aborted;
    assert_eq!(aborted, 1);
}
