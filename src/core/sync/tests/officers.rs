//! Groups with a root key: who may author, and what counts.

use super::super::merge::MAX_BAD_SEALS;
use super::*;
use crate::proto::entry::EntryKind;
use crate::proto::signature::SecretKey;

fn root() -> SecretKey {
    SecretKey::from_seed([100; 32])
}

/// A roster change about officer `name` at `ms`, signed by the root.
fn roster_change(ms: u64, seed: u8, name: &str, kind: EntryKind) -> Entry {
    EntryBuilder::roster_change(ms, name, kind)
        .id_random([seed; 10])
        .signed(&root())
}

/// Node `node` of a group with a root key, holding `officer`'s key.
fn secured_peer(node: usize, seed: u64, officer: Option<SecretKey>) -> Peer {
    let mut secured = peer(node, Vec::new(), seed);
    secured.set_roster(Some(root().public()), officer.map(Arc::new));
    secured
}

/// Peers `a` (no officer key) and `b` (holding `alice`'s key), both knowing that
/// alice is an officer.
fn alice_officer_on_b(alice: &SecretKey) -> (Peer, Peer) {
    let add = roster_change(
        1_700_000_000_000,
        1,
        "alice",
        EntryKind::OfficerAdd {
            public_key: alice.public(),
        },
    );
    let mut a = secured_peer(0, 1, None);
    let mut b = secured_peer(1, 2, Some(SecretKey::from_seed([1; 32])));
    a.commit_local(now(1), add.clone());
    b.commit_local(now(1), add);
    (a, b)
}

fn log_entry_datagram(entries: Vec<Entry>) -> Vec<u8> {
    clear_datagram(0xbad, 9, Body::LogEntry(entries))
}

#[test]
fn adjust_without_an_officer_key_fails_once_a_root_key_is_set() {
    let mut peer = secured_peer(0, 1, None);
    let request = AdjustRequest {
        actor: "a".into(),
        target: "Ann".into(),
        delta: 5,
        reason: "raid".into(),
    };
    assert_eq!(
        peer.prepare_adjust(now(1), &request),
        Err(EntryError::NoOfficerKey)
    );
    let mut open = Peer::new(config(1), Vec::new(), SeededRng::new(2), now(0));
    let entry = open.prepare_adjust(now(1), &request).unwrap();
    assert_eq!(entry.seal, None, "an open roster signs nothing");
}

#[test]
fn forged_entries_are_dropped_and_unsigned_ones_kept_but_rejected() {
    let officer = SecretKey::from_seed([1; 32]);
    let mut peer = secured_peer(0, 1, None);
    let mut forged = entry(1, "Ann");
    officer.sign(&mut forged);
    forged.delta = 1_000; // changed after signing
    let unsigned = entry(2, "Ann");
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    peer.handle_datagram(
        now(1),
        Channel::Group,
        from,
        &log_entry_datagram(vec![forged, unsigned.clone()]),
    );
    assert_eq!(peer.stats().dropped.get("bad_signature"), Some(&1));
    assert_eq!(peer.ledger().len(), 1, "the forgery is not stored");
    assert!(peer.ledger().contains(&unsigned.digest()));
    assert_eq!(
        peer.ledger().rejected(),
        1,
        "the unsigned entry counts for nothing"
    );
    assert_eq!(peer.ledger().total("Ann"), 0);
}

/// The same forgery arriving again is dropped from memory of it, without another
/// signature check (counted apart, so this test sees which path dropped it); the
/// memory is bounded.
#[test]
fn a_repeated_forgery_is_remembered_within_a_bound() {
    let officer = SecretKey::from_seed([1; 32]);
    let mut peer = secured_peer(0, 1, None);
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let forgery = |i: u64| {
        let mut e = entry(i, "Ann");
        officer.sign(&mut e);
        e.delta = 1_000;
        e
    };
    for round in 0..3 {
        peer.handle_datagram(
            now(round),
            Channel::Group,
            from,
            &log_entry_datagram(vec![forgery(1)]),
        );
    }
    assert_eq!(peer.stats().dropped.get("bad_signature"), Some(&1));
    assert_eq!(peer.stats().dropped.get("known_forgery"), Some(&2));
    assert_eq!(peer.forgeries.len(), (1, 1));
    for i in 0..(MAX_BAD_SEALS as u64 + 10) {
        peer.forgeries.remember(forgery(i + 2).digest());
    }
    assert_eq!(peer.forgeries.len(), (MAX_BAD_SEALS, MAX_BAD_SEALS));
    assert!(peer.ledger().is_empty());
}

/// A peer that held unsigned entries before the group set a root key still
/// reconciles with one that never had them: they end up on both, counting nowhere.
#[test]
fn unsigned_entries_from_before_the_root_key_still_reconcile() {
    let old: Vec<Entry> = (0..50).map(|i| entry(i, "Ann")).collect();
    let mut a = peer(0, old, 1);
    a.set_roster(Some(root().public()), None);
    let b = secured_peer(1, 2, None);
    assert_eq!(a.ledger().total("Ann"), 0);
    let (a, b) = reconcile_at(0, a, b);
    assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
    assert_eq!(b.ledger().len(), 50);
    assert_eq!(b.ledger().rejected(), 50);
    assert_eq!(b.ledger().total("Ann"), 0);
}

/// A group member without an officer key copies an officer entry's id into a body of
/// its own and races it to one peer. Entries are identified by content, so both
/// bodies end up everywhere, the officer's counting and the copy rejected, instead of
/// the first one seen hiding the other for good.
#[test]
fn a_second_body_under_an_entrys_id_cannot_hide_the_first() {
    let alice = SecretKey::from_seed([1; 32]);
    let mallory = SecretKey::from_seed([66; 32]);
    let (mut a, mut b) = alice_officer_on_b(&alice);
    let request = AdjustRequest {
        actor: "alice".into(),
        target: "Ann".into(),
        delta: 5,
        reason: "raid".into(),
    };
    let legit = b.prepare_adjust(now(10), &request).unwrap();
    b.commit_local(now(10), legit.clone());
    let mut copy = legit.clone();
    copy.delta = 1_000;
    copy.target = "Mallory".into();
    mallory.sign(&mut copy);
    assert_eq!(copy.id, legit.id);
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    a.handle_datagram(
        now(11),
        Channel::Group,
        from,
        &log_entry_datagram(vec![copy.clone()]),
    );
    a.drain_actions();
    b.drain_actions();
    let (a, b) = reconcile_at(200, a, b);
    for peer in [&a, &b] {
        assert!(peer.ledger().contains(&legit.digest()));
        assert!(peer.ledger().contains(&copy.digest()));
        assert_eq!(peer.ledger().total("Ann"), 5);
        assert_eq!(peer.ledger().total("Mallory"), 0);
        assert_eq!(peer.ledger().rejected(), 1);
    }
    assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
}

/// Alice is an officer; the root removes her on peer A while she keeps adjusting on
/// peer B, partitioned. Once they sync, both agree exactly which of her entries count,
/// whichever way the timestamps fall.
#[test]
fn a_removal_racing_with_adjusts_resolves_identically_on_both_peers() {
    let alice = SecretKey::from_seed([1; 32]);
    let (mut a, mut b) = alice_officer_on_b(&alice);
    a.drain_actions();
    b.drain_actions();
    // B adjusts before and after the moment of the removal (its HLC follows now()).
    let request = |delta| AdjustRequest {
        actor: "alice".into(),
        target: "Ann".into(),
        delta,
        reason: "raid".into(),
    };
    let before = b.prepare_adjust(now(10), &request(1)).unwrap();
    b.commit_local(now(10), before);
    let remove = roster_change(1_700_000_000_000 + 50, 2, "alice", EntryKind::OfficerRemove);
    a.commit_local(now(50), remove);
    let after = b.prepare_adjust(now(100), &request(10)).unwrap();
    b.commit_local(now(100), after);
    assert_eq!(
        b.ledger().total("Ann"),
        11,
        "B has not heard of the removal"
    );
    a.drain_actions();
    b.drain_actions();
    let (a, mut b) = reconcile_at(200, a, b);
    assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
    assert_eq!(
        a.ledger().total("Ann"),
        1,
        "only the entry before the removal counts"
    );
    assert_eq!(b.ledger().totals(), a.ledger().totals());
    assert_eq!(b.ledger().rejected(), 1);
    assert_eq!(a.ledger().history(None), b.ledger().history(None));
    // Now that B has heard of the removal, it refuses to sign for alice at all.
    assert!(matches!(
        b.prepare_adjust(now(5_000), &request(3)),
        Err(EntryError::NotAnOfficer(_))
    ));
}
