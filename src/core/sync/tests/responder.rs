//! What the stateless responder sends back.

use super::*;

#[test]
fn response_datagrams_stay_under_limit_and_cover_request() {
    let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
    let mut a = peer(0, entries, 1);
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // A proven requester (it echoes our cookie) gets the full budget.
    let request = full_ranges(9, Some(a.admission.cookie_for(to)));
    a.answer(77, to, request, true);
    let actions = a.drain_actions();
    assert_eq!(actions.len(), Tuning::default().response_budget);
    let mut last_upper = Key::MIN;
    let mut entries_seen = 0;
    for action in actions {
        let Action::SendTo(_, bytes) = action else {
            panic!("expected unicast")
        };
        assert!(bytes.len() <= MAX_MESSAGE, "{}", bytes.len());
        let r = ranges_response(&bytes);
        // Every datagram's coverage starts where the previous one's ended, and covers
        // exactly the entries it carries.
        assert_eq!(r.runs[0].lower, last_upper);
        last_upper = r.runs.last().unwrap().items.last().unwrap().upper;
        for e in &r.entries {
            assert!(e.key() >= r.runs[0].lower && e.key() < last_upper);
        }
        entries_seen += r.entries.len();
    }
    assert!(entries_seen > 100);
    // The budget cut it short: the last datagram hands back the rest (see `pipeline`).
    assert_eq!(last_upper, Key::MAX);
}
