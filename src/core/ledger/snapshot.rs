//! What a checkpoint holds of a ledger: the flat index as it lies in memory, plus the small
//! state replay computed (root key, totals, fingerprint, rejected count, the roster
//! entries and their verdicts' inputs, the target names), so a ledger is rebuilt from it
//! without replaying the log it covers.
//!
//! This module only turns a ledger into bytes and bytes back into a ledger; the store
//! decides which log prefix the bytes describe, writes and reads the file, and checks it.
//!
//! Layout (little-endian): snapshot version u16, 2 reserved bytes, length of the state u32,
//! entry count u64, the state (postcard), then the flat index's four sections.

use super::flat::{FlatEntry, FlatIndex, ENTRY_BYTES};
use super::index::{EntryIndex, EntryReader};
use super::replay::ReplayState;
use super::targets::Targets;
use super::Ledger;
use crate::core::roster::Roster;
use crate::proto::digest::Key;
use crate::proto::entry::{Entry, EntryKind};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use thiserror::Error;

/// The snapshot layout this build writes and reads; any other is refused.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Bytes before the state.
const HEAD_BYTES: usize = 16;

/// Why bytes are not a usable ledger snapshot. Each of these means a checkpoint to ignore
/// and rebuild (the log is the truth); none is a reason to stop.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Fewer bytes than the layout needs.
    #[error("the snapshot is cut short")]
    Truncated,
    /// Another snapshot layout.
    #[error("snapshot version {found} (this build reads version {SNAPSHOT_VERSION})")]
    Version {
        /// The version found.
        found: u16,
    },
    /// The state does not decode.
    #[error("the snapshot's state does not decode ({0})")]
    State(postcard::Error),
    /// The index keys are not in strictly increasing order.
    #[error("the snapshot's index is out of order at position {position}")]
    Unsorted {
        /// Where the order breaks.
        position: usize,
    },
    /// A digest-order position or target id points outside the index.
    #[error("the snapshot's index points outside itself")]
    BadPosition,
    /// The parts disagree with each other.
    #[error("the snapshot is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The small part of a snapshot, encoded with postcard.
#[derive(Serialize, Deserialize)]
struct State {
    root: Option<PublicKey>,
    fingerprint: Fingerprint,
    rejected: u64,
    totals: Vec<(String, i64)>,
    /// Every roster entry's key, valid or not.
    roster_keys: Vec<Key>,
    /// The valid roster changes (few: only the root key holder makes them).
    roster: Vec<Entry>,
    targets: Vec<String>,
}

/// A ledger's state captured for a checkpoint: cheap to take (the flat index is shared, the
/// rest is small), and encoded later, on whatever thread writes the file.
pub struct LedgerSnapshot {
    base: FlatIndex,
    overlay: Vec<FlatEntry>,
    targets: Arc<Targets>,
    state: State,
}

/// An encoded snapshot: its bytes, in parts to be written one after the other.
pub struct EncodedSnapshot {
    head: Vec<u8>,
    index: FlatIndex,
}

impl Ledger {
    /// Captures the ledger for a checkpoint, or `None` while some entry is not yet stored
    /// in the log (a checkpoint describes a log prefix, and such an entry is in none) or
    /// while the totals wait for a replay run elsewhere (they are stale).
    pub fn snapshot(&self) -> Option<LedgerSnapshot> {
        if self.replay_pending() {
            return None;
        }
        let (base, overlay, targets) = self.index.stored_parts()?;
        let replay = &self.replay;
        let state = State {
            root: replay.root(),
            fingerprint: self.fingerprint,
            rejected: replay.rejected(),
            totals: replay
                .totals()
                .iter()
                .map(|(name, total)| (name.clone(), *total))
                .collect(),
            roster_keys: replay.roster_keys().iter().copied().collect(),
            roster: replay.roster_changes().values().cloned().collect(),
            targets: Vec::new(),
        };
        Some(LedgerSnapshot {
            base,
            overlay,
            targets,
            state,
        })
    }

    /// The ledger a snapshot describes, its bytes being `buf[range]`, reading entry bodies
    /// through `reader`. The index is used where it lies in `buf` (no copy). Everything is
    /// checked that could make a later lookup fail or the ledger disagree with itself;
    /// whether it describes the log at hand is the caller's to check.
    pub fn from_snapshot(
        buf: Vec<u8>,
        range: Range<usize>,
        reader: Arc<dyn EntryReader>,
    ) -> Result<Ledger, SnapshotError> {
        let bytes = buf.get(range.clone()).ok_or(SnapshotError::Truncated)?;
        let head = bytes.get(..HEAD_BYTES).ok_or(SnapshotError::Truncated)?;
        let version = u16::from_le_bytes([head[0], head[1]]);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        let state_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut count = [0u8; 8];
        count.copy_from_slice(&head[8..16]);
        let count =
            usize::try_from(u64::from_le_bytes(count)).map_err(|_| SnapshotError::Truncated)?;
        let state_bytes = bytes
            .get(HEAD_BYTES..HEAD_BYTES.saturating_add(state_len))
            .ok_or(SnapshotError::Truncated)?;
        let mut state: State = postcard::from_bytes(state_bytes).map_err(SnapshotError::State)?;
        let index_start = range.start + HEAD_BYTES + state_len;
        if count.checked_mul(ENTRY_BYTES) != Some(range.end - index_start) {
            return Err(SnapshotError::Inconsistent(
                "the index is not as long as its entry count says",
            ));
        }
        let targets = Targets::from_names(std::mem::take(&mut state.targets));
        let (base, sum) = FlatIndex::from_bytes(Arc::new(buf), index_start, count, targets.len())?;
        let fingerprint = state.fingerprint;
        if sum != fingerprint {
            return Err(SnapshotError::Inconsistent(
                "the fingerprint does not match the index",
            ));
        }
        let replay = restore_replay(&base, state.root, state)?;
        let ledger = Ledger {
            fingerprint,
            index: EntryIndex::from_flat(base, targets, reader),
            replay,
            batching: false,
            replay_after_batch: false,
            deferral: Default::default(),
        };
        Ok(ledger)
    }
}

/// The replay state a snapshot holds, checked against its index.
fn restore_replay(
    base: &FlatIndex,
    root: Option<PublicKey>,
    state: State,
) -> Result<ReplayState, SnapshotError> {
    let roster_keys: BTreeSet<Key> = state.roster_keys.into_iter().collect();
    if roster_keys.iter().any(|key| base.find(key).is_none()) {
        return Err(SnapshotError::Inconsistent(
            "a roster entry is not in the index",
        ));
    }
    let mut roster = BTreeMap::new();
    for change in state.roster {
        let key = change.key();
        let valid = change.validate().is_ok()
            && change.kind != EntryKind::Points
            && Roster::is_valid_roster_change(root, &change)
            && roster_keys.contains(&key);
        if !valid {
            return Err(SnapshotError::Inconsistent(
                "a roster change is not a valid one of the index",
            ));
        }
        roster.insert(key, change);
    }
    let totals = state.totals.into_iter().collect();
    Ok(ReplayState::restore(
        root,
        roster_keys,
        roster,
        totals,
        state.rejected,
    ))
}

impl LedgerSnapshot {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.base.len() + self.overlay.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes it: merges the entries added since the last bulk load into the flat index
    /// (a copy of the whole index: do it off any thread that must stay responsive).
    pub fn encode(self) -> EncodedSnapshot {
        let LedgerSnapshot {
            base,
            overlay,
            targets,
            mut state,
        } = self;
        let index = match overlay.is_empty() {
            true => base,
            false => base.merged(&overlay),
        };
        state.targets = targets.names().map(str::to_string).collect();
        // postcard cannot fail on these types (no maps with non-string keys, no
        // unsupported types); an empty state would be refused when loading, never trusted.
        let state = postcard::to_stdvec(&state).unwrap_or_default();
        let mut head = Vec::with_capacity(HEAD_BYTES + state.len());
        head.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        head.extend_from_slice(&[0, 0]);
        head.extend_from_slice(&(state.len() as u32).to_le_bytes());
        head.extend_from_slice(&(index.len() as u64).to_le_bytes());
        head.extend_from_slice(&state);
        EncodedSnapshot { head, index }
    }
}

impl EncodedSnapshot {
    /// The bytes, in parts to write one after the other.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, self.index.sections()]
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::test_support::{entry, MemoryReader};
    use crate::core::ledger::LedgerBuilder;
    use crate::core::rng::SeededRng;

    /// A ledger over an in-memory log: `stored` entries from a bulk load, `added` ones
    /// inserted and marked stored afterwards (they sit in the overlay).
    fn ledger(stored: u64, added: u64) -> (Ledger, Arc<MemoryReader>) {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        for i in 0..stored {
            let e = entry(i * 7 % 101, i as u8, ["Ann", "Bo", "Cy"][i as usize % 3], 1);
            reader.put(1000 + i, e.clone());
            builder.push(&e, 1000 + i);
        }
        let (mut ledger, _) = builder.finish(reader.clone());
        for i in 0..added {
            let e = entry(50 + i * 3, 200 + i as u8, "Dee", i as i64 + 1);
            reader.put(5000 + i, e.clone());
            assert!(ledger.insert(e.clone()));
            ledger.mark_stored(&e.key(), 5000 + i);
        }
        (ledger, reader)
    }

    fn encoded(ledger: &Ledger) -> Vec<u8> {
        let encoded = ledger.snapshot().expect("every entry stored").encode();
        encoded.parts().concat()
    }

    #[test]
    fn a_snapshot_gives_back_the_same_ledger() {
        let (ledger, reader) = ledger(40, 9);
        let bytes = encoded(&ledger);
        let mut buf = vec![0xee; 5];
        buf.extend_from_slice(&bytes);
        let end = buf.len();
        let loaded = Ledger::from_snapshot(buf, 5..end, reader).unwrap();
        assert_eq!(loaded.len(), 49);
        assert_eq!(loaded.fingerprint(), ledger.fingerprint());
        assert_eq!(loaded.totals(), ledger.totals());
        assert_eq!(loaded.history(None), ledger.history(None));
        assert_eq!(loaded.history(Some("Dee")), ledger.history(Some("Dee")));
        assert_eq!(loaded.resident_len(), 0);
        // Not every entry stored: no snapshot.
        let mut unstored = ledger.clone();
        unstored.insert(entry(999, 99, "Eve", 1));
        assert!(unstored.snapshot().is_none());
    }

    /// Bytes that are not a snapshot are refused, never a panic: every single-byte change
    /// of the head and state, random cuts and random bytes.
    #[test]
    fn bad_snapshot_bytes_are_refused_not_a_panic() {
        let (ledger, reader) = ledger(30, 4);
        let good = encoded(&ledger);
        let load = |bytes: Vec<u8>| {
            let end = bytes.len();
            Ledger::from_snapshot(bytes, 0..end, reader.clone())
        };
        assert!(load(good.clone()).is_ok());
        let index_start = good.len() - 34 * 40;
        let mut rng = SeededRng::new(5);
        for at in 0..good.len() {
            // Every byte before the index; a sample of the index.
            if at >= index_start && rng.below(4) != 0 {
                continue;
            }
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                // Either refused, or (a change that keeps every rule, such as a target id
                // or an offset) a ledger of the same size.
                if let Ok(loaded) = load(bad) {
                    assert_eq!(loaded.len(), ledger.len(), "byte {at}");
                }
            }
        }
        for len in 0..good.len() {
            if len < 64 || rng.below(16) == 0 {
                assert!(load(good[..len].to_vec()).is_err(), "cut to {len}");
            }
        }
        for len in [0usize, 16, 100, 5000] {
            let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert!(load(noise).is_err());
        }
        let inverted = Range { start: 10, end: 5 };
        assert!(Ledger::from_snapshot(good.clone(), inverted, reader.clone()).is_err());
        assert!(Ledger::from_snapshot(good.clone(), 0..good.len() + 1, reader.clone()).is_err());
    }
}
