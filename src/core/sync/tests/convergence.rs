//! Two peers holding different sets end up holding the same one.

use super::*;

#[test]
fn two_peers_with_disjoint_offline_edits_converge() {
    let common: Vec<Entry> = (0..500).map(|i| entry(i, "P")).collect();
    let mut a_entries = common.clone();
    a_entries.extend((1000..1040).map(|i| entry(i, "A")));
    let mut b_entries = common;
    // B's offline edits carry *older* timestamps (clock behind): must still arrive.
    b_entries.extend((100..130).map(|i| entry(i + 10_000_000, "B")));
    b_entries.push(entry_builder(5, "old-clock").id_random([0xee; 10]).build());
    let mut world = World::started(vec![peer(0, a_entries, 1), peer(1, b_entries, 2)]);
    world.settle();
    let (a, b) = (world.peer(0), world.peer(1));
    assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
    assert_eq!(a.ledger().len(), 500 + 40 + 31);
    assert_eq!(a.ledger().totals(), b.ledger().totals());
}

#[test]
fn longest_group_name_still_fits_every_datagram() {
    // Requests full of id lists and fingerprints must leave room for a 32-byte group
    // name; an over-long datagram cannot be sent and the session would stall.
    let long = |node: usize| {
        config_builder(node)
            .group("g".repeat(crate::proto::wire::MAX_GROUP_BYTES))
            .build()
    };
    let common: Vec<Entry> = (0..4000).map(|i| entry(i, "P")).collect();
    let mut a_entries = common.clone();
    let mut b_entries = common;
    // Many scattered differences: deep splits and full id lists on both sides.
    for i in 0..300u64 {
        let e = entry_builder(i * 13, "X")
            .id(crate::proto::entry::new_entry_id(
                1_700_000_000_000 + i,
                [7; 10],
            ))
            .build();
        if i % 2 == 0 {
            a_entries.push(e);
        } else {
            b_entries.push(e);
        }
    }
    // Node ids (from the seeds) and split points change every packing, so try many.
    for seed in 0..40 {
        let a = Peer::new(long(0), a_entries.clone(), SeededRng::new(seed), now(0));
        let b = Peer::new(long(1), b_entries.clone(), SeededRng::new(!seed), now(0));
        let mut world = World::started(vec![a, b]);
        world.settle();
        let (a, b) = (world.peer(0), world.peer(1));
        assert_eq!(a.stats().encode_failures + b.stats().encode_failures, 0);
        assert_eq!(a.ledger().len(), 4300);
        assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
    }
}

#[test]
fn empty_joiner_catches_up_from_large_peer() {
    let entries: Vec<Entry> = (0..5000).map(|i| entry(i, "P")).collect();
    let mut world = World::started(vec![peer(0, entries, 1), peer(1, vec![], 2)]);
    world.settle();
    let (a, b) = (world.peer(0), world.peer(1));
    assert_eq!(b.ledger().len(), 5000);
    assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
    assert_eq!(b.stats().sessions_completed, 1);
}
