//! Entries made here, and sync switched off.

use super::*;

#[test]
fn local_adjust_is_multicast_and_stamped_after_seen_entries() {
    let far_future = entry_builder(1, "X")
        .stamped(Hlc::new(1_700_000_000_000 + 10_000, 0))
        .build();
    let mut a = peer(0, vec![far_future.clone()], 3);
    let request = AdjustRequest {
        actor: "a".into(),
        target: "Bob".into(),
        delta: 7,
        reason: "test".into(),
    };
    let e = a.prepare_adjust(now(0), &request).unwrap();
    assert!(e.key() > far_future.key());
    assert_eq!(e.new_total, 7);
    a.commit_local(now(0), e.clone());
    let actions = a.drain_actions();
    assert!(matches!(actions.as_slice(), [Action::SendGroup(_)]));
    assert_eq!(a.ledger().total("Bob"), 7);
}

#[test]
fn sync_off_sends_nothing_and_ignores_traffic() {
    let cfg = config_builder(0).sync_enabled(false).build();
    let mut a = Peer::new(cfg, vec![], SeededRng::new(3), now(0));
    a.start(now(0));
    a.handle_timeout(now(10_000));
    let e = a
        .prepare_adjust(
            now(0),
            &AdjustRequest {
                actor: "a".into(),
                target: "Bob".into(),
                delta: 1,
                reason: String::new(),
            },
        )
        .unwrap();
    a.commit_local(now(0), e);
    assert!(a.drain_actions().is_empty());
    a.handle_datagram(
        now(1),
        Channel::Group,
        "127.0.0.1:1".parse().unwrap(),
        b"junk",
    );
    assert_eq!(a.stats().dropped.get("sync_off"), Some(&1));
    a.set_sync_enabled(now(2), true);
    assert!(
        !a.drain_actions().is_empty(),
        "HELLO + probe on switching on"
    );
}
