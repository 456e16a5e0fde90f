//! Helpers shared by the ledger's unit tests: a plain point entry and an in-memory log.

use super::{BodyReadError, EntryReader};
use crate::proto::entry::Entry;
use crate::proto::signature::SecretKey;
use crate::testing::EntryBuilder;
use std::collections::HashMap;

/// An unsigned point entry at `ms`, distinguished by `seed`.
pub(super) fn entry(ms: u64, seed: u8, target: &str, delta: i64) -> Entry {
    entry_builder(ms, seed, target, delta).build()
}

/// [`entry`] still to be built, for a test that sets another field or signs it.
pub(super) fn entry_builder(ms: u64, seed: u8, target: &str, delta: i64) -> EntryBuilder {
    EntryBuilder::at_ms(ms)
        .id_random([seed; 10])
        .target(target)
        .delta(delta)
}

/// The root key the roster tests sign roster changes with.
pub(super) fn root() -> SecretKey {
    SecretKey::from_seed([100; 32])
}

/// Officer key `n` of the roster tests.
pub(super) fn officer(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
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
