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
    let requests: Vec<Vec<u8>> = b
        .drain_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::SendTo(_, d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].len() > MAX_DATAGRAM - 8 && requests[0].len() <= MAX_DATAGRAM,
        "padded to a full datagram: {}",
        requests[0].len()
    );
    a.handle_datagram(now(2), Channel::Whisper, addr, &requests[0]);
    let answers: Vec<Vec<u8>> = a
        .drain_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::SendTo(_, d) => Some(d),
            _ => None,
        })
        .collect();
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
