//! Entries and log bytes for the store's unit tests.

use crate::proto::entry::{new_entry_id, Entry, EntryKind};
use crate::proto::hlc::Hlc;
use crate::store::format::{encode_record, file_header, frame, FORMAT_VERSION};
use crate::store::{LogStore, OpenReport, StateLock, StoreError};
use std::path::Path;
use tempfile::TempDir;

/// The group the store's tests use.
pub(crate) const GROUP: &str = "raid";

/// A valid entry, distinct for each `i`.
pub(crate) fn entry(i: u64) -> Entry {
    let ms = 1_700_000_000_000 + i;
    Entry {
        id: new_entry_id(ms, [i as u8; 10]),
        at: Hlc::new(ms, 0),
        actor: "alice".into(),
        target: format!("Player{i}"),
        delta: i as i64 + 1,
        new_total: 10 * (i as i64 + 1),
        reason: format!("raid night {i}"),
        kind: EntryKind::Points,
        seal: None,
    }
}

/// Entries for every `i` in `range`.
pub(crate) fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(entry).collect()
}

/// The record for `e`.
pub(crate) fn record(e: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(e, &mut out).unwrap();
    out
}

/// A record with a correct checksum around an arbitrary payload, as a buggy or malicious
/// writer could produce.
pub(crate) fn raw_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame(payload, &mut out);
    out
}

/// The current file header.
pub(crate) fn header() -> Vec<u8> {
    file_header(FORMAT_VERSION).to_vec()
}

/// Header plus records for `es`, and the end offset of each record.
pub(crate) fn log_bytes(es: &[Entry]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = header();
    let mut ends = Vec::new();
    for e in es {
        bytes.extend_from_slice(&record(e));
        ends.push(bytes.len() as u64);
    }
    (bytes, ends)
}

/// A fresh state directory holding `bytes` as the log of [`GROUP`].
pub(crate) fn dir_with_log(bytes: &[u8]) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(log_file(dir.path()), bytes).unwrap();
    dir
}

/// Path of the log of [`GROUP`] in `dir`.
pub(crate) fn log_file(dir: &Path) -> std::path::PathBuf {
    crate::store::format::log_file_path(dir, GROUP)
}

/// Locks `dir` and opens the log of [`GROUP`] in it.
pub(crate) fn open_in(dir: &Path) -> Result<(LogStore, Vec<Entry>, OpenReport), StoreError> {
    LogStore::open(StateLock::acquire(dir)?, GROUP)
}
