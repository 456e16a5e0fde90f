//! What a merge hands the driver to store: each new entry once, as the bytes its digest
//! hashes, while the ledger holds the entry itself.

use super::*;
use crate::core::ledger::Ledger;

#[test]
fn a_merge_persists_each_new_entry_encoded_once_under_its_key() {
    let held: Vec<Entry> = (0..5).map(|i| entry(i, "Ann")).collect();
    let mut a = peer(0, held.clone(), 1);
    a.drain_actions();
    let new: Vec<Entry> = (10..16)
        .map(|i| {
            entry_builder(i, ["Bo", "Ümit", "Cy"][i as usize % 3])
                .reason("x".repeat(i as usize * 3))
                .build()
        })
        .collect();
    // Held ones, new ones, and a new one twice over, in one datagram.
    let mut sent = vec![held[1].clone(), new[0].clone()];
    sent.extend(new[1..].iter().cloned());
    sent.extend([held[4].clone(), new[2].clone()]);
    let d = clear_datagram(100, 47684, Body::LogEntry(sent));
    a.handle_datagram(now(40), Channel::Whisper, crate::testing::node_addr(1), &d);

    let batches: Vec<EncodedBatch> = a
        .drain_actions()
        .into_iter()
        .filter_map(|action| match action {
            Action::Persist(batch) => Some(batch),
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 1, "one append per datagram");
    let batch = &batches[0];
    let keys: Vec<Key> = new.iter().map(Entry::key).collect();
    assert_eq!(batch.keys(), keys, "each new entry once, in arrival order");
    for (payload, e) in batch.payloads().zip(&new) {
        assert_eq!(
            payload,
            postcard::to_stdvec(e).unwrap(),
            "the entry's own bytes"
        );
    }
    assert_eq!(batch.decode().unwrap(), new);
    assert!(!batch.has_roster_changes());

    // The ledger holds the same entries, under the same digests, as one built from them.
    let (expected, _) = Ledger::from_entries(held.iter().chain(&new).cloned());
    assert_eq!(a.ledger().fingerprint(), expected.fingerprint());
    assert_eq!(a.ledger().totals(), expected.totals());
    for e in &new {
        assert_eq!(a.ledger().get(&e.digest()).as_ref(), Some(e));
    }
    assert_eq!(a.stats().entries_merged, new.len() as u64);
}
