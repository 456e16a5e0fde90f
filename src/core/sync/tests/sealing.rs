//! Sealed datagrams: members talk, outsiders and replays change nothing, keys rotate.

use super::*;

#[test]
fn sealed_peers_converge_and_other_keys_or_clear_text_are_dropped() {
    let entries: Vec<Entry> = (0..2000).map(|i| entry(i, "P")).collect();
    let (a, b) = sealed_pair(entries, vec![]);
    let (mut a, b) = reconcile_at(0, a, b);
    assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
    assert_eq!(a.stats().encode_failures + b.stats().encode_failures, 0);
    // Outsiders: another key, and no key at all. Each sends everything it would.
    let mut other_key = peer(2, vec![entry(99_999, "X")], 3);
    sealed(&mut other_key, 8, 3);
    let mut clear = peer(3, vec![entry(88_888, "Y")], 4);
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let before = a.ledger().fingerprint();
    for outsider in [&mut other_key, &mut clear] {
        outsider.start(now(10));
        outsider.commit_local(now(10), entry(77_777, "Z"));
        for action in outsider.drain_actions() {
            if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
                a.handle_datagram(now(20), Channel::Group, from, &d);
            }
        }
    }
    assert_eq!(a.ledger().fingerprint(), before);
    assert_eq!(a.peers().count(), 1, "only b is known");
    assert!(a.stats().dropped.get("unknown_key").copied().unwrap_or(0) >= 3);
    assert!(a.stats().dropped.get("unsealed").copied().unwrap_or(0) >= 3);
    // And what a sealed peer sends teaches an outsider nothing.
    a.commit_local(now(30), entry(66_666, "Secret"));
    for action in a.drain_actions() {
        if let Action::SendGroup(d) = action {
            assert!(
                !d.windows(6).any(|w| w == b"Secret"),
                "plaintext on the wire"
            );
            clear.handle_datagram(now(30), Channel::Group, from, &d);
            other_key.handle_datagram(now(30), Channel::Group, from, &d);
        }
    }
    assert_eq!(clear.ledger().len(), 2);
    assert_eq!(other_key.ledger().len(), 2);
    assert_eq!(clear.stats().dropped.get("sealed_no_key"), Some(&1));
    assert_eq!(other_key.stats().dropped.get("unknown_key"), Some(&1));
}

#[test]
fn replayed_datagrams_change_nothing() {
    let a_entries: Vec<Entry> = (0..300).map(|i| entry(i, "A")).collect();
    let b_entries: Vec<Entry> = (300..400).map(|i| entry(i, "B")).collect();
    let (a, b) = sealed_pair(a_entries, b_entries);
    // Record every datagram of a whole reconciliation, as an eavesdropper would.
    let mut world = World::new(SeededRng::new(0));
    world.record_datagrams();
    world.insert(a);
    world.insert(b);
    world.start(0);
    world.start(1);
    let t = world.settle();
    let recorded = world.recorded_datagrams().to_vec();
    let (mut a, mut b) = two(world);
    assert_eq!(a.ledger().len(), 400);
    assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
    assert!(recorded.len() > 10);
    let (fa, fb) = (a.ledger().fingerprint(), b.ledger().fingerprint());
    let (ma, mb) = (a.stats().entries_merged, b.stats().entries_merged);
    // Replay all of it, twice, at both peers, much later.
    let addr: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    for round in 0..2 {
        for d in &recorded {
            a.handle_datagram(now(t + 60_000 + round), Channel::Whisper, addr, d);
            b.handle_datagram(now(t + 60_000 + round), Channel::Whisper, addr, d);
        }
    }
    assert_eq!(
        (a.ledger().fingerprint(), b.ledger().fingerprint()),
        (fa, fb)
    );
    assert_eq!(
        (a.stats().entries_merged, b.stats().entries_merged),
        (ma, mb)
    );
    let persisted = a
        .drain_actions()
        .into_iter()
        .chain(b.drain_actions())
        .filter(|x| matches!(x, Action::Persist { .. }))
        .count();
    assert_eq!(persisted, 0, "a replay stored something");
}

#[test]
fn key_rotation_keeps_peers_talking_at_every_step() {
    let (old, new) = (
        GroupKey::from_bytes(&[1; 32]),
        GroupKey::from_bytes(&[2; 32]),
    );
    let install = |peer: &mut Peer, current: &GroupKey, previous: &[&GroupKey], seed: u8| {
        let keyring = Keyring::new(
            current.clone(),
            previous.iter().map(|k| (*k).clone()).collect(),
        );
        peer.set_group_key(Sealer::new(keyring, NoncePrefix([seed; 16])), [seed; 32]);
    };
    let mut world = World::started(vec![peer(0, vec![], 1), peer(1, vec![], 2)]);
    // Each step reconfigures one side at a time (a rolling restart) and both must still
    // exchange a new entry each way.
    let steps: [(&GroupKey, &[&GroupKey], &GroupKey, &[&GroupKey]); 4] = [
        (&old, &[], &old, &[]),
        (&old, &[&new], &old, &[]),     // a learns the new key first
        (&old, &[&new], &old, &[&new]), // then everyone does
        (&new, &[&old], &old, &[&new]), // a sends with the new key before b switches
    ];
    for (step, (a_cur, a_prev, b_cur, b_prev)) in steps.iter().enumerate() {
        world.act(0, |a, _| install(a, a_cur, a_prev, 10 + step as u8));
        world.act(1, |b, _| install(b, b_cur, b_prev, 20 + step as u8));
        let i = step as u64 * 2;
        for (node, (actor, target)) in [("a", "P"), ("b", "Q")].into_iter().enumerate() {
            world.act(node, |peer, now| {
                let request = AdjustRequest {
                    actor: actor.into(),
                    target: target.into(),
                    delta: 1,
                    reason: format!("step {step}"),
                };
                let e = peer.prepare_adjust(now, &request);
                peer.commit_local(now, e.unwrap());
            });
        }
        world.settle();
        let (a, b) = (world.peer(0), world.peer(1));
        assert_eq!(a.ledger().len() as u64, i + 2, "step {step}");
        assert_eq!(
            a.ledger().fingerprint(),
            b.ledger().fingerprint(),
            "step {step}"
        );
    }
    let dropped = |p: &Peer| {
        p.stats()
            .dropped
            .keys()
            .filter(|k| k.contains("key"))
            .count()
    };
    assert_eq!(
        dropped(world.peer(0)) + dropped(world.peer(1)),
        0,
        "no datagram lost to the rotation"
    );
}

/// Regression for fuzz finding `fuzz/regressions/sealed_datagram/crash-6101f2c8…` (its
/// sealing half is in `proto::seal`'s tests): a 1247-byte sealed datagram, over the limit,
/// is dropped as too large and counted, and the peer answers nothing.
#[test]
fn fuzz_regression_sealed_datagram_over_the_limit_is_counted_and_dropped() {
    let mut message = vec![0x7a, 0x01, 0x03, 0x00, 0x01, 0x03, 0x01];
    message.resize(1202, 0x16);
    let keyring = Keyring::new(GroupKey::from_bytes(&[7; 32]), vec![]);
    let datagram = Sealer::new(keyring, NoncePrefix([2; 16]))
        .seal(message)
        .unwrap();
    assert_eq!(datagram.len(), 1247);
    let mut a = peer(0, vec![], 1);
    sealed(&mut a, 7, 1);
    let from: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    a.handle_datagram(now(0), Channel::Whisper, from, &datagram);
    assert_eq!(a.stats().dropped.get("too_large"), Some(&1));
    assert!(a.drain_actions().is_empty());
}
