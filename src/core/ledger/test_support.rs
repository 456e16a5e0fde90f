//! Helpers shared by the ledger's unit tests: a plain point entry and an in-memory log.

use super::{BodyReadError, EntryReader};
use crate::proto::entry::{new_entry_id, Entry, EntryKind};
use crate::proto::hlc::Hlc;
use std::collections::HashMap;

/// An unsigned point entry at `ms`, distinguished by `seed`.
pub(super) fn entry(ms: u64, seed: u8, target: &str, delta: i64) -> Entry {
    Entry {
        id: new_entry_id(ms, [seed; 10]),
        at: Hlc::new(ms, 0),
        actor: "officer".into(),
        target: target.into(),
        delta,
        new_total: 0,
        reason: String::new(),
        kind: EntryKind::Points,
        seal: None,
    }
}

/// An in-memory stand-in for the log file: offset -> entry, counting reads.
#[derive(Default)]
pub(super) struct MemoryReader {
    records: std::sync::Mutex<HashMap<u64, Entry>>,
    /// How many bodies were read back.
    pub(super) reads: std::sync::atomic::AtomicUsize,
}

impl MemoryReader {
    /// Puts `entry` at `offset`.
    pub(super) fn put(&self, offset: u64, entry: Entry) {
        self.records.lock().unwrap().insert(offset, entry);
    }
}

impl EntryReader for MemoryReader {
    fn read_at(&self, offset: u64) -> Result<Entry, BodyReadError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.records
            .lock()
            .unwrap()
            .get(&offset)
            .cloned()
            .ok_or_else(|| BodyReadError::new(offset, "no record there"))
    }
}
