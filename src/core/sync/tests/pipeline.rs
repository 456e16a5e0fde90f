//! A late joiner's big pull keeps several requests in flight: an answer cut short by the
//! responder's budget hands back the rest of its span in sub-ranges, which the requester
//! spreads over its window (issue 13, item 4).

use super::*;

/// What one late-joiner catch-up in a world cost.
struct Pull {
    /// Virtual ms from start until both sides held the same set.
    took_ms: u64,
    /// Most requests the joiner had in flight at once, sampled every ms.
    most_in_flight: usize,
    /// Ms during which the joiner had two or more requests in flight.
    overlapped_ms: u64,
    /// Every byte delivered, both ways.
    bytes: u64,
    /// Range requests the joiner sent.
    requests: u64,
}

/// A late joiner (node 1, empty) catching up `count` entries from node 0, both with
/// `tuning`, on a network set up by `net`; `seed` drives the network's choices.
fn late_joiner_pull(
    count: u64,
    tuning: &Tuning,
    seed: u64,
    net: impl FnOnce(&mut crate::testing::Network),
) -> Pull {
    let entries: Vec<Entry> = (0..count).map(|i| entry(i, "P")).collect();
    let node = |index: usize, entries: Vec<Entry>| {
        let cfg = config_builder(index).tuning(tuning.clone()).build();
        Peer::new(cfg, entries, SeededRng::new(index as u64 + 1), now(0))
    };
    let mut world = World::new(SeededRng::new(seed));
    world.insert(node(0, entries));
    world.insert(node(1, Vec::new()));
    net(&mut world.net);
    world.start(0);
    world.start(1);
    let (mut most_in_flight, mut overlapped_ms) = (0, 0);
    let mut took_ms = None;
    for ms in 1..120_000 {
        world.run_until(ms);
        let in_flight = world.peer(1).requester.in_flight();
        most_in_flight = most_in_flight.max(in_flight);
        if in_flight >= 2 {
            overlapped_ms += 1;
        }
        if world.converged() {
            took_ms = Some(ms);
            break;
        }
    }
    let took_ms = took_ms.unwrap_or_else(|| panic!("no convergence: {}", world.describe()));
    world.settle();
    let (a, b) = (world.peer(0), world.peer(1));
    assert_eq!(b.ledger().len(), count as usize, "nothing lost");
    assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
    assert_eq!(a.ledger().len(), count as usize, "nothing made up");
    Pull {
        took_ms,
        most_in_flight,
        overlapped_ms,
        bytes: world.counters.bytes_delivered,
        requests: b.stats().requests_sent,
    }
}

/// Encoded size of the entries the joiner lacks.
fn entry_bytes(count: u64) -> u64 {
    (0..count)
        .map(|i| wire::encoded_len(&entry(i, "P")) as u64)
        .sum()
}

#[test]
fn a_cut_short_answer_hands_back_the_rest_of_its_span_in_parts() {
    let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
    let mut a = peer(0, entries, 1);
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    a.answer(
        77,
        to,
        full_ranges(9, Some(a.admission.cookie_for(to))),
        true,
    );
    let actions = a.drain_actions();
    let tuning = Tuning::default();
    assert_eq!(
        actions.len(),
        tuning.response_budget,
        "no more than the budget"
    );
    let (mut sent, mut handed_back) = (0u64, Vec::new());
    let mut cursor = Key::MIN;
    for action in actions {
        let Action::SendTo(_, bytes) = action else {
            panic!("expected unicast")
        };
        assert!(bytes.len() <= MAX_MESSAGE, "{}", bytes.len());
        let r = ranges_response(&bytes);
        sent += r.entries.len() as u64;
        for run in &r.runs {
            assert_eq!(run.lower, cursor, "coverage is contiguous");
            for item in &run.items {
                if let Mode::Fingerprint(fp) = item.mode {
                    handed_back.push((cursor, item.upper, fp));
                }
                cursor = item.upper;
            }
        }
    }
    // Together the answer covers the whole key space: what it did not send, it handed back
    // as sub-ranges of about equal counts, each with the responder's fingerprint.
    assert_eq!(cursor, Key::MAX);
    assert!(
        handed_back.len() >= 2,
        "the rest is handed back split: {handed_back:?}"
    );
    let counts: Vec<u64> = handed_back.iter().map(|(_, _, fp)| fp.count).collect();
    assert_eq!(sent + counts.iter().sum::<u64>(), 3000, "{counts:?}");
    let (least, most) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(most - least <= 1, "about equal parts: {counts:?}");
    for (lo, hi, fp) in handed_back {
        assert_eq!(a.ledger().range_fingerprint(lo, hi), fp);
    }
}

/// An id-list request cut short (the requester holds a few of the span's entries and
/// lists them, plus two the responder lacks) hands back the rest too: coverage runs from the
/// span's lower bound to its upper one with no gap, the listed entries are not sent, the
/// unknown ids come back as wants, and every entry of the span is either sent or counted in
/// a handed-back part.
#[test]
fn a_cut_short_id_list_answer_hands_back_the_rest_of_its_span() {
    let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
    let keys: Vec<Key> = entries.iter().map(Entry::key).collect();
    let mut a = peer(0, entries, 1);
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (lo, hi) = (keys[100], keys[2900]);
    let held: Vec<crate::proto::digest::Digest> = keys[100..110].iter().map(|k| k.digest).collect();
    let unknown = [entry(5000, "Q").key().digest, entry(5001, "Q").key().digest];
    let mut listed = held.clone();
    listed.extend(unknown);
    let mut request = full_ranges(9, Some(a.admission.cookie_for(to)));
    request.runs = vec![Run {
        lower: lo,
        items: vec![RangeItem {
            upper: hi,
            mode: Mode::Ids(listed),
        }],
    }];
    a.answer(77, to, request, true);
    let (mut sent, mut handed_back, mut wants) = (Vec::new(), 0u64, Vec::new());
    let mut cursor = lo;
    for action in a.drain_actions() {
        let Action::SendTo(_, bytes) = action else {
            panic!("expected unicast")
        };
        let r = ranges_response(&bytes);
        sent.extend(r.entries.iter().map(|e| e.key()));
        wants.extend(r.want);
        for run in &r.runs {
            assert_eq!(run.lower, cursor, "coverage is contiguous");
            for item in &run.items {
                if let Mode::Fingerprint(fp) = item.mode {
                    assert_eq!(a.ledger().range_fingerprint(cursor, item.upper), fp);
                    handed_back += fp.count;
                }
                cursor = item.upper;
            }
        }
    }
    assert_eq!(cursor, hi, "the answer covers the span to its end");
    assert!(handed_back > 0, "the budget cut the answer short");
    assert!(
        sent.iter().all(|k| !held.contains(&k.digest)),
        "listed entries are not sent"
    );
    assert!(sent.iter().all(|k| lo <= *k && *k < hi));
    assert_eq!(wants, unknown.to_vec());
    assert_eq!(sent.len() as u64 + handed_back, 2800 - held.len() as u64);
}

#[test]
fn an_unproven_requesters_small_answer_still_hands_back_the_rest() {
    let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
    let mut a = peer(0, entries, 1);
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // A first request padded to a full datagram, as requesters send it: an allowance of
    // three datagrams back, as before.
    let mut request = full_ranges(5, None);
    let bare = clear_datagram(
        42,
        9,
        Body::SyncRequest(SyncRequest::Ranges(request.clone())),
    );
    request.padding = vec![0; MAX_MESSAGE - bare.len() - 2];
    let datagram = clear_datagram(42, 9, Body::SyncRequest(SyncRequest::Ranges(request)));
    let padded = datagram.len() as u64;
    assert!(padded <= MAX_MESSAGE as u64);
    a.handle_datagram(now(1), Channel::Whisper, to, &datagram);
    let answers = unicasts(&mut a);
    let sent: u64 = answers.iter().map(|d| d.len() as u64).sum();
    assert!(answers.len() >= 2, "{} datagrams", answers.len());
    assert!(
        sent <= 3 * padded,
        "{sent} bytes for a {padded}-byte request"
    );
    let last = answers.last().expect("an answer");
    let r = ranges_response(last);
    let upper = r.runs.last().unwrap().items.last().unwrap().upper;
    assert_eq!(upper, Key::MAX, "the rest is handed back");
}

/// Without the hand-back, the pull is one span asked again after every answer: one request
/// in flight at a time, whatever the window. With it, the window fills and the catch-up
/// takes about half the round trips of a window of one.
#[test]
fn a_late_joiners_pull_keeps_the_window_full() {
    const COUNT: u64 = 12_000;
    let pipelined = late_joiner_pull(COUNT, &Tuning::default(), 0, |_| {});
    let serial = late_joiner_pull(
        COUNT,
        &Tuning {
            window: 1,
            ..Tuning::default()
        },
        0,
        |_| {},
    );
    assert!(
        pipelined.most_in_flight >= 2,
        "{} in flight at most",
        pipelined.most_in_flight
    );
    assert!(
        pipelined.overlapped_ms * 2 >= pipelined.took_ms,
        "two requests in flight for {} of {} ms",
        pipelined.overlapped_ms,
        pipelined.took_ms
    );
    assert!(
        pipelined.took_ms * 10 <= serial.took_ms * 7,
        "window 2: {} ms, window 1: {} ms",
        pipelined.took_ms,
        serial.took_ms
    );
    // The sub-ranges cost a few more requests and bytes, not a storm of duplicates.
    let needed = entry_bytes(COUNT);
    for pull in [&pipelined, &serial] {
        assert!(
            pull.bytes * 100 <= needed * 115,
            "{} bytes for {needed} bytes of entries",
            pull.bytes
        );
    }
    assert!(
        pipelined.requests <= serial.requests + serial.requests / 2,
        "{} requests against {}",
        pipelined.requests,
        serial.requests
    );
}

/// A wider window keeps more requests in flight (the answers hand back enough sub-ranges)
/// and finishes sooner again.
#[test]
fn a_wider_window_is_filled_too() {
    const COUNT: u64 = 12_000;
    let four = late_joiner_pull(
        COUNT,
        &Tuning {
            window: 4,
            ..Tuning::default()
        },
        0,
        |_| {},
    );
    let two = late_joiner_pull(COUNT, &Tuning::default(), 0, |_| {});
    assert!(four.most_in_flight >= 4, "{}", four.most_in_flight);
    assert!(
        four.took_ms < two.took_ms,
        "window 4: {} ms, window 2: {} ms",
        four.took_ms,
        two.took_ms
    );
}

/// Lost, delayed and reordered datagrams: the sub-ranges nobody answered are asked again,
/// nothing is lost, and the repeats stay bounded.
#[test]
fn a_pipelined_pull_converges_through_loss_and_reordering() {
    const COUNT: u64 = 6_000;
    for seed in 0..3 {
        let pull = late_joiner_pull(
            COUNT,
            &Tuning {
                window: 4,
                ..Tuning::default()
            },
            seed,
            |net| {
                net.set_loss_everywhere(0.03);
                // Datagrams of one answer overtake each other.
                net.min_delay_ms = 1;
                net.max_delay_ms = 6;
            },
        );
        assert!(pull.most_in_flight >= 2, "seed {seed}");
        let needed = entry_bytes(COUNT);
        assert!(
            pull.bytes <= needed * 2,
            "seed {seed}: {} bytes for {needed} bytes of entries",
            pull.bytes
        );
    }
}
