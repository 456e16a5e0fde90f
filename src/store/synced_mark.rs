//! The synced mark: a small file beside the log recording how much of it the last
//! successful fdatasync covered, so an open can tell unsynced damage (a power cut under batch
//! fsync) from damage to records that were acknowledged as durable.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The file beside the log that records the log length the last successful fdatasync
/// covered (`<group>.lootlog.synced`): 8 bytes little-endian and their CRC32C.
pub fn synced_mark_path(log: &Path) -> PathBuf {
    log.with_extension("lootlog.synced")
}

/// The open mark file of a log (see [`synced_mark_path`]): 8 bytes of length, 8 bytes of
/// the log file's inode number (a mark describes one file: a repaired, upgraded or restored
/// log is a new file, whose old mark is ignored) and a CRC32C of both.
#[derive(Debug)]
pub(crate) struct SyncedMark {
    file: Option<File>,
    inode: u64,
    /// The largest length recorded: a group commit that began before a later local sync
    /// finishes after it, and the mark must not move back.
    recorded: u64,
}

impl SyncedMark {
    const LEN: usize = 20;

    /// Opens (or creates) the mark file of the log at `log`, open as `log_file`; without
    /// one, marks are simply not kept. It gets the log's owner, so a command run with sudo
    /// does not leave a mark the daemon's user cannot update.
    pub(crate) fn open(log: &Path, log_file: &File) -> SyncedMark {
        let meta = log_file.metadata().ok();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(synced_mark_path(log))
            .and_then(|file| {
                if let Some(meta) = &meta {
                    std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
                }
                Ok(file)
            });
        if let Err(err) = &file {
            tracing::debug!("cannot keep the synced length of {}: {err}", log.display());
        }
        SyncedMark {
            file: file.ok(),
            inode: meta.map_or(0, |meta| meta.ino()),
            recorded: 0,
        }
    }

    /// Records that the first `len` bytes of the log are durable. Written after the log's
    /// fdatasync returned and not synced itself: if a power cut loses this write, the mark
    /// on disk is older (smaller), and the next open treats more of the log as unsynced, so
    /// damage there is repaired (every intact record kept, the damaged file kept aside)
    /// rather than refused. Best effort: a failure only means no mark.
    pub(crate) fn record(&mut self, len: u64) {
        let Some(file) = &self.file else {
            return;
        };
        if len <= self.recorded {
            return;
        }
        self.recorded = len;
        let mut bytes = [0u8; Self::LEN];
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.inode.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..16]);
        bytes[16..].copy_from_slice(&crc.to_le_bytes());
        if let Err(err) = std::os::unix::fs::FileExt::write_all_at(file, &bytes, 0) {
            tracing::debug!("cannot record the synced length of the log: {err}");
        }
    }

    /// Notes that the mark on disk already records `len` (read at open), so it is not
    /// written again until a sync covers more.
    pub(crate) fn covers(&mut self, len: u64) {
        self.recorded = self.recorded.max(len);
    }

    /// The length the last successful fdatasync of `log_file` covered, if a valid mark for
    /// this very file is on disk.
    pub(crate) fn read(log: &Path, log_file: &File) -> Option<u64> {
        let bytes = fs::read(synced_mark_path(log)).ok()?;
        let bytes: [u8; Self::LEN] = bytes.try_into().ok()?;
        let crc = u32::from_le_bytes(bytes[16..].try_into().ok()?);
        if crc32c::crc32c(&bytes[..16]) != crc {
            return None;
        }
        let inode = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
        (inode == log_file.metadata().ok()?.ino())
            .then(|| u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()))
    }
}

/// The log length the last successful fdatasync of the log at `log` covered, if a valid
/// mark for the file now at that path is on disk (for tests; opening reads it itself).
#[cfg(test)]
pub(crate) fn synced_mark(log: &Path) -> Option<u64> {
    SyncedMark::read(log, &File::open(log).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{entries, log_file, open_in};
    use tempfile::TempDir;

    /// A background sync (the daemon's group commit) moves the mark too, to the length it
    /// began at, but never back: a local adjust's sync may finish first and cover more.
    #[test]
    fn a_background_sync_records_the_length_it_covered_and_the_mark_never_moves_back() {
        let dir = TempDir::new().unwrap();
        let (mut store, _, _) = open_in(dir.path()).unwrap();
        store.append(&entries(0..3)).unwrap();
        let covered = store.len_bytes();
        let pending = store.begin_background_sync().unwrap().unwrap();
        store.append(&entries(3..4)).unwrap();
        store.finish_background_sync(pending.run()).unwrap();
        assert_eq!(synced_mark(&log_file(dir.path())), Some(covered));

        store.append(&entries(4..5)).unwrap();
        let early = store.begin_background_sync().unwrap().unwrap();
        store.append_durable(&entries(5..6)).unwrap();
        let later = store.len_bytes();
        store.finish_background_sync(early.run()).unwrap();
        assert_eq!(synced_mark(&log_file(dir.path())), Some(later));
        // A mark for another file (a restored or repaired log) is ignored.
        drop(store);
        let copy = dir.path().join("restored");
        fs::copy(log_file(dir.path()), &copy).unwrap();
        fs::rename(&copy, log_file(dir.path())).unwrap();
        assert_eq!(synced_mark(&log_file(dir.path())), None);
    }

    #[test]
    fn a_damaged_mark_is_ignored() {
        let dir = TempDir::new().unwrap();
        let (mut store, _, _) = open_in(dir.path()).unwrap();
        store.append_durable(&entries(0..2)).unwrap();
        let log = log_file(dir.path());
        assert_eq!(synced_mark(&log), Some(store.len_bytes()));
        let mut bytes = fs::read(synced_mark_path(&log)).unwrap();
        bytes[0] ^= 1;
        fs::write(synced_mark_path(&log), &bytes).unwrap();
        assert_eq!(synced_mark(&log), None);
    }
}
