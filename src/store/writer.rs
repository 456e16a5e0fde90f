//! The write side of an open log: appends, fdatasync, and group commit on another thread.

use crate::core::histogram::Histogram;
use crate::proto::batch::EncodedBatch;
use crate::proto::entry::Entry;
use crate::store::checkpoint::CheckpointState;
use crate::store::error::{io_err, InvalidInput, StoreError};
use crate::store::format::{encode_payload_record, encode_record, EncodeError};
use crate::store::lock::StateLock;
use crate::store::synced_mark::SyncedMark;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// An open, locked, append-only log for one group. Opened by [`LogStore::open`] and its
/// variants; read back through [`crate::store::LogReader`].
#[derive(Debug)]
pub struct LogStore {
    /// Held so no other process can open the log while this store exists.
    _lock: StateLock,
    file: File,
    path: PathBuf,
    /// Length of the valid log. Tracked here rather than asked of the file so that a failed
    /// append can be rolled back to it and the next append writes at the right place.
    len: u64,
    /// Something was appended since the last successful sync.
    unsynced: bool,
    /// An append failed and truncating back to `len` also failed, so bytes past `len` may be
    /// a partial batch; the truncation is retried before the next append.
    rollback_pending: bool,
    /// fdatasync calls that made appended records durable (for status and tests).
    fsyncs: u64,
    /// How long those fdatasync calls took (for status and metrics).
    fsync_latency: Histogram,
    /// How long the last background sync took, in µs, written by the thread that ran it.
    background_took_us: Arc<AtomicU64>,
    /// A sync failed. After a failed fsync the kernel may have dropped the dirty pages and a
    /// retry can report success without the data being on disk, so every later sync fails
    /// too rather than claim durability.
    sync_failed: bool,
    /// The log length a background sync started at covers, once it succeeds.
    background_sync_len: Option<u64>,
    /// Where the length covered by the last successful sync is recorded, so the next open
    /// can tell unsynced damage (a power cut) from damage to durable records.
    synced_mark: SyncedMark,
    /// What is known of the log's checkpoint (see `store/checkpoint.rs`).
    checkpoint: CheckpointState,
}

/// A sync handed to another thread: run [`PendingSync::run`] there (it blocks).
#[derive(Debug)]
pub struct PendingSync {
    /// A second handle to the log file (fdatasync on it covers writes made through any).
    file: File,
    /// Where the time the sync took goes, for the store's latency histogram.
    took_us: Arc<AtomicU64>,
}

impl PendingSync {
    /// Blocks until everything appended before the sync began is on disk.
    pub fn run(self) -> io::Result<()> {
        let started = Instant::now();
        let outcome = self.file.sync_data();
        self.took_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        outcome
    }
}

impl LogStore {
    /// A store over a log that opening has checked and made durable up to `len` bytes.
    pub(super) fn opened(
        lock: StateLock,
        file: File,
        path: PathBuf,
        len: u64,
        synced_mark: SyncedMark,
        checkpoint: CheckpointState,
    ) -> LogStore {
        LogStore {
            _lock: lock,
            file,
            path,
            len,
            unsynced: false,
            rollback_pending: false,
            fsyncs: 0,
            fsync_latency: Histogram::default(),
            background_took_us: Arc::new(AtomicU64::new(0)),
            sync_failed: false,
            background_sync_len: None,
            synced_mark,
            checkpoint,
        }
    }

    /// Appends records for `entries` in one write (not synced; see [`LogStore::sync`]).
    /// Entries must be valid (an invalid one would make the log unreadable, so it is refused
    /// with [`StoreError::InvalidInput`] before anything is written); duplicates are the
    /// caller's concern. On a write error the file is truncated back to its previous length
    /// so the log stays valid, and the error is returned.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.append_located(entries).map(drop)
    }

    /// [`LogStore::append`], returning the byte offset of each entry's record (what a
    /// [`crate::store::LogReader`] reads it back from).
    pub fn append_located(&mut self, entries: &[Entry]) -> Result<Vec<u64>, StoreError> {
        self.append_records(entries, encode_record)
    }

    /// [`LogStore::append_located`] for entries already encoded (a merge's batch): each
    /// encoding becomes a record's payload as it is, with no entry encoded again.
    pub fn append_encoded(&mut self, batch: &EncodedBatch) -> Result<Vec<u64>, StoreError> {
        self.append_records(batch.payloads(), encode_payload_record)
    }

    /// Frames each of `items` as a record with `frame` and appends them all in one write;
    /// returns the offset of each record. Nothing is written if one cannot be framed.
    fn append_records<T>(
        &mut self,
        items: impl IntoIterator<Item = T, IntoIter: ExactSizeIterator>,
        mut frame: impl FnMut(T, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<Vec<u64>, StoreError> {
        let items = items.into_iter();
        let count = items.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(count * 256);
        let mut offsets = Vec::with_capacity(count);
        for item in items {
            offsets.push(self.len + buf.len() as u64);
            frame(item, &mut buf).map_err(|problem| StoreError::InvalidInput {
                path: self.path.clone(),
                action: "appending to",
                problem: InvalidInput::Entry(problem),
            })?;
        }
        if self.rollback_pending {
            self.file
                .set_len(self.len)
                .map_err(io_err(&self.path, "rolling back a failed append to"))?;
            self.rollback_pending = false;
        }
        // Writing at the tracked length, not the file cursor, keeps appends in the right
        // place even after a failed write left the cursor somewhere else; one pwrite(2)
        // instead of a seek and a write (a merge appends once per datagram).
        let written = self.file.write_all_at(&buf, self.len);
        if let Err(source) = written {
            if self.file.set_len(self.len).is_err() {
                self.rollback_pending = true;
            }
            return Err(StoreError::Io {
                path: self.path.clone(),
                action: "appending to",
                source,
            });
        }
        self.len += buf.len() as u64;
        self.unsynced = true;
        self.checkpoint.records_past += count as u64;
        Ok(offsets)
    }

    /// Appends `entries` and makes them durable before returning, as a local adjust needs.
    /// On any failure the bytes just appended are cut back off, so the entries are not in
    /// the log and cannot reappear after a restart; the error says what failed.
    /// Returns the offset of each entry's record.
    pub fn append_durable(&mut self, entries: &[Entry]) -> Result<Vec<u64>, StoreError> {
        let before = self.len;
        let offsets = self.append_located(entries)?;
        if let Err(err) = self.sync() {
            self.len = before;
            self.checkpoint.records_past = self
                .checkpoint
                .records_past
                .saturating_sub(entries.len() as u64);
            if self.file.set_len(before).is_err() {
                self.rollback_pending = true;
            }
            return Err(err);
        }
        Ok(offsets)
    }

    /// Whether a failed write left bytes past the valid end that could not be cut off yet.
    /// They are cut before the next append, or by the next open (as a torn tail).
    pub fn rollback_pending(&self) -> bool {
        self.rollback_pending
    }

    /// Makes everything appended so far durable (fdatasync), if anything was appended since
    /// the last sync. Once a sync has failed, every later call fails too, with
    /// [`StoreError::SyncFailedEarlier`] (a retried fsync can falsely succeed); reopen the
    /// log to recover.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.sync_failed {
            return Err(StoreError::SyncFailedEarlier {
                path: self.path.clone(),
            });
        }
        if !self.unsynced {
            return Ok(());
        }
        let started = Instant::now();
        let synced = self.file.sync_data();
        self.fsync_latency
            .observe_us(started.elapsed().as_micros() as u64);
        if let Err(source) = synced {
            self.sync_failed = true;
            return Err(StoreError::Io {
                path: self.path.clone(),
                action: "syncing",
                source,
            });
        }
        self.unsynced = false;
        self.fsyncs += 1;
        self.synced_mark.record(self.len);
        Ok(())
    }

    /// Starts a sync that can run on another thread while appends go on: returns a second
    /// handle to the file, or `None` when nothing is unsynced. Pass the outcome to
    /// [`LogStore::finish_background_sync`]. Merged remote entries use this, so a slow
    /// fdatasync (tens of ms on some disks) never stalls sync.
    pub fn begin_background_sync(&mut self) -> Result<Option<PendingSync>, StoreError> {
        if self.sync_failed {
            // Say so at every group commit: merged entries are no longer made durable.
            return self.sync().map(|()| None);
        }
        if !self.unsynced {
            return Ok(None);
        }
        // A new open file description, not a `dup`: a writeback error is reported once per
        // description, so a shared one could hand a local adjust's error to this sync and
        // let the adjust's own fdatasync succeed.
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io_err(&self.path, "opening a second handle to"))?;
        // Everything up to here will be covered; later appends need a later sync.
        self.unsynced = false;
        self.background_sync_len = Some(self.len);
        Ok(Some(PendingSync {
            file,
            took_us: self.background_took_us.clone(),
        }))
    }

    /// Records the outcome of a background sync started by
    /// [`LogStore::begin_background_sync`].
    pub fn finish_background_sync(&mut self, outcome: io::Result<()>) -> Result<(), StoreError> {
        match outcome {
            Ok(()) => {
                self.fsyncs += 1;
                self.fsync_latency
                    .observe_us(self.background_took_us.load(Ordering::Relaxed));
                if let Some(len) = self.background_sync_len.take() {
                    self.synced_mark.record(len);
                }
                Ok(())
            }
            Err(source) => {
                // See `sync_failed`: a retry could falsely succeed, so never claim durability
                // again.
                self.sync_failed = true;
                Err(StoreError::Io {
                    path: self.path.clone(),
                    action: "syncing",
                    source,
                })
            }
        }
    }

    /// How many fdatasync calls made appended records durable since the log was opened.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// How long the fdatasync calls of appended records took (in the foreground and on the
    /// group-commit thread), since the log was opened.
    pub fn fsync_latency(&self) -> &Histogram {
        &self.fsync_latency
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the log file in bytes (header included).
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Whether everything appended is known to be on disk: no append since the last
    /// successful sync, none in flight, no failed sync or write left over. Only then may a
    /// checkpoint cover the whole log.
    pub fn is_synced(&self) -> bool {
        !self.unsynced
            && self.background_sync_len.is_none()
            && !self.sync_failed
            && !self.rollback_pending
    }

    /// The open log file (for reading only: appends go through this store).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// What is known of the log's checkpoint.
    pub(crate) fn checkpoint_state(&self) -> &CheckpointState {
        &self.checkpoint
    }

    /// What is known of the log's checkpoint, to update.
    pub(crate) fn checkpoint_state_mut(&mut self) -> &mut CheckpointState {
        &mut self.checkpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::InvalidInput;
    use crate::store::format::{EncodeError, HEADER_LEN};
    use crate::store::test_support::{entries, entry, log_bytes, log_file, open_in};
    use crate::store::OpenReport;
    use std::fs;
    use tempfile::TempDir;

    #[test]
    fn background_sync_covers_what_came_before_and_a_failure_poisons_the_log() {
        let dir = TempDir::new().unwrap();
        let all = entries(0..4);
        let (mut store, _, _) = open_in(dir.path()).unwrap();
        assert!(
            store.begin_background_sync().unwrap().is_none(),
            "nothing to sync"
        );
        store.append(&all[..2]).unwrap();
        let pending = store
            .begin_background_sync()
            .unwrap()
            .expect("a sync to run");
        // Appended while the sync runs: needs a sync of its own.
        store.append(&all[2..]).unwrap();
        pending.run().unwrap();
        store.finish_background_sync(Ok(())).unwrap();
        assert_eq!(store.fsyncs(), 1);
        assert_eq!(
            store.fsync_latency().count(),
            1,
            "the background sync was timed"
        );
        store.sync().unwrap();
        assert_eq!(store.fsync_latency().count(), 2, "and the foreground one");
        assert_eq!(store.fsyncs(), 2, "the later append was still unsynced");
        store.sync().unwrap();
        assert_eq!(store.fsyncs(), 2, "nothing new");

        // A failed background sync: never claim durability again, in either path.
        store.append(&all[..1]).unwrap();
        let _pending = store
            .begin_background_sync()
            .unwrap()
            .expect("a sync to run");
        let failed = store.finish_background_sync(Err(io::Error::other("EIO from the disk")));
        assert!(matches!(failed, Err(StoreError::Io { .. })));
        assert!(matches!(
            store.sync(),
            Err(StoreError::SyncFailedEarlier { .. })
        ));
        assert!(matches!(
            store.begin_background_sync(),
            Err(StoreError::SyncFailedEarlier { .. })
        ));
    }

    #[test]
    fn round_trip_in_two_batches() {
        let dir = TempDir::new().unwrap();
        let all = entries(0..7);
        {
            let (mut store, loaded, report) = open_in(dir.path()).unwrap();
            assert!(loaded.is_empty());
            assert_eq!(report.file_bytes, HEADER_LEN);
            assert_eq!(store.len_bytes(), HEADER_LEN);
            assert_eq!(store.path(), log_file(dir.path()));
            // Private whatever the umask: the ledger is the raid's business only.
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &fs::metadata(store.path()).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600);
            store.append(&all[..3]).unwrap();
            store.sync().unwrap();
            store.append(&all[3..]).unwrap();
            store.sync().unwrap();
            // Nothing new since the last sync: a no-op that must still succeed.
            store.sync().unwrap();
            let on_disk = fs::metadata(store.path()).unwrap().len();
            assert_eq!(store.len_bytes(), on_disk);
            assert_eq!(on_disk, log_bytes(&all).1[6]);
        }
        let (store, loaded, report) = open_in(dir.path()).unwrap();
        assert_eq!(loaded, all);
        assert_eq!(
            report,
            OpenReport {
                entries: 7,
                file_bytes: store.len_bytes(),
                truncated_bytes: 0,
                duplicates_skipped: 0,
                checkpoint_entries: 0,
            }
        );
        assert_eq!(fs::read(store.path()).unwrap(), log_bytes(&all).0);
    }

    #[test]
    fn invalid_entries_are_refused_before_anything_is_written() {
        let dir = TempDir::new().unwrap();
        let (mut store, _, _) = open_in(dir.path()).unwrap();
        let mut bad = entry(2);
        bad.delta = 0;
        let err = store.append(&[entry(1), bad]).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::InvalidInput {
                    problem: InvalidInput::Entry(EncodeError::InvalidEntry { .. }),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(store.len_bytes(), HEADER_LEN);
        assert_eq!(fs::metadata(store.path()).unwrap().len(), HEADER_LEN);
        store.append(&[]).unwrap();
        assert_eq!(store.len_bytes(), HEADER_LEN);
    }
}
