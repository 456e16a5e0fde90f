//! Checkpoints: `<group>.lootlog.checkpoint`, a cache of what replaying a prefix of the log
//! computes (the ledger's flat index, totals, fingerprint, roster state), so that opening
//! the log replays only the records appended past it.
//!
//! The log stays the only truth. A checkpoint is used only if everything about it checks
//! out, and is otherwise ignored (with one log line) and later rebuilt:
//!
//! - its own CRC-32C (over every byte before it) matches: no damaged or cut-short file;
//! - it is this build's checkpoint version, log format and snapshot layout, and names this
//!   group: nothing foreign;
//! - the log is the same file (device and inode: a repaired, upgraded or restored log is a
//!   new file), at least as long as the prefix it covers, and the CRC-32C of eight 4 KB
//!   windows spread over that prefix (the first and the last among them) matches what the
//!   prefix held when the checkpoint was written: a log restored in place from an older
//!   copy, or otherwise rewritten, is caught without reading the whole prefix;
//! - the ledger snapshot inside decodes and agrees with itself (see
//!   [`Ledger::from_snapshot`]).
//!
//! A checkpoint only ever covers a prefix that was synced to disk (see
//! [`LogStore::begin_checkpoint`]), so the torn-tail and synced-mark rules apply unchanged
//! to the part past it. It is written through [`Replacement`]: temporary file, fsync,
//! rename, directory fsync, so a crash leaves the old checkpoint or the new one.
//!
//! Layout (little-endian): magic `LOOTCKPT`, checkpoint version u16, log format version u16,
//! 4 reserved bytes, covered log length u64, log device u64, log inode u64, entries u64,
//! duplicate records u64, window CRC u32, group name length u16 and the name; then the
//! ledger snapshot; then the CRC-32C of everything before it.

use crate::core::ledger::{EncodedSnapshot, EntryReader, Ledger, LedgerSnapshot, SnapshotError};
use crate::proto::keys::PublicKey;
use crate::store::atomic::Replacement;
use crate::store::error::{io_err, StoreError};
use crate::store::format::FORMAT_VERSION;
use crate::store::scanner::read_at_most;
use crate::store::LogStore;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The checkpoint layout this build writes and reads.
pub const CHECKPOINT_VERSION: u16 = 1;
const MAGIC: [u8; 8] = *b"LOOTCKPT";
/// Bytes of the header before the group name.
const FIXED_HEADER_BYTES: usize = 8 + 2 + 2 + 4 + 8 * 5 + 4 + 2;
const CRC_BYTES: usize = 4;
/// Size and count of the windows of the covered prefix whose CRC a checkpoint keeps.
const WINDOW_BYTES: u64 = 4096;
const WINDOWS: u64 = 8;

/// The checkpoint file of the log at `log`: `<group>.lootlog.checkpoint`.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    log.with_extension("lootlog.checkpoint")
}

/// Where a checkpoint is written before it is renamed into place.
fn tmp_path(log: &Path) -> PathBuf {
    log.with_extension("lootlog.checkpoint.tmp")
}

/// Which log prefix a checkpoint describes, and how to recognise it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Covers {
    /// Log bytes covered (a record boundary).
    pub(crate) len: u64,
    /// Device of the log file it covers.
    pub(crate) dev: u64,
    /// Inode of the log file it covers: a repaired, upgraded or restored log is a new file.
    pub(crate) inode: u64,
    /// CRC-32C of the sampled windows of the covered bytes.
    pub(crate) windows_crc: u32,
    /// Distinct entries in the covered records.
    pub(crate) entries: u64,
    /// Covered records that repeat an earlier entry.
    pub(crate) duplicates: u64,
    /// The root key its verdicts were judged under (from the snapshot, not the header).
    pub(crate) root: Option<PublicKey>,
}

/// Why a checkpoint was not used. None of these stops anything: the log is replayed from
/// its start instead, and a new checkpoint is written later.
#[derive(Debug, Error)]
pub enum CheckpointRejected {
    /// There is none (yet).
    #[error("no checkpoint")]
    Missing,
    /// It could not be read.
    #[error("cannot read the checkpoint: {0}")]
    Io(io::Error),
    /// Its bytes are damaged or cut short.
    #[error("the checkpoint is damaged ({0})")]
    Damaged(&'static str),
    /// Its ledger snapshot is unusable.
    #[error("the checkpoint is damaged ({0})")]
    Snapshot(SnapshotError),
    /// Another version's, or another group's.
    #[error("the checkpoint is foreign ({0})")]
    Foreign(String),
    /// It describes another log than the one now at the path.
    #[error("the checkpoint is stale ({0})")]
    Stale(&'static str),
}

/// A ledger loaded from a checkpoint, and what it covers.
pub(crate) struct Loaded {
    pub(crate) ledger: Ledger,
    pub(crate) covers: Covers,
}

/// Loads the checkpoint of the log `log_file` (at `log`, `file_len` bytes long, of
/// `group`), if it is usable; the ledger reads bodies through `reader`.
pub(crate) fn load(
    log: &Path,
    group: &str,
    log_file: &File,
    file_len: u64,
    reader: Arc<dyn EntryReader>,
) -> Result<Loaded, CheckpointRejected> {
    let path = checkpoint_path(log);
    let size = match std::fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointRejected::Missing)
        }
        Err(err) => return Err(CheckpointRejected::Io(err)),
    };
    // A checkpoint of a log holds less than twice its bytes (40 bytes per entry, each
    // record being longer, plus the few roster entries); never read a huge stray file.
    if size > file_len.saturating_mul(2) + (1 << 20) {
        return Err(CheckpointRejected::Damaged(
            "larger than its log could need",
        ));
    }
    let buf = read_whole(&path, size).map_err(CheckpointRejected::Io)?;
    let (covers, body) = parse(&buf, group)?;
    let meta = log_file.metadata().map_err(CheckpointRejected::Io)?;
    if (meta.dev(), meta.ino()) != (covers.dev, covers.inode) {
        return Err(CheckpointRejected::Stale(
            "the log is another file: repaired, upgraded, restored or replaced",
        ));
    }
    if file_len < covers.len {
        return Err(CheckpointRejected::Stale(
            "the log is shorter than the part it covers",
        ));
    }
    if windows_crc(log_file, covers.len).map_err(CheckpointRejected::Io)? != covers.windows_crc {
        return Err(CheckpointRejected::Stale(
            "the log's bytes differ from those it covers",
        ));
    }
    let ledger = Ledger::from_snapshot(buf, body, reader).map_err(CheckpointRejected::Snapshot)?;
    if ledger.len() as u64 != covers.entries {
        return Err(CheckpointRejected::Damaged(
            "its entry count disagrees with its index",
        ));
    }
    let covers = Covers {
        root: ledger.root(),
        ..covers
    };
    Ok(Loaded { ledger, covers })
}

/// Reads the file at `path`, about `size` bytes, in one read into a buffer the ledger then
/// keeps (the index is used where it lies).
///
/// Most of loading a large checkpoint is the kernel faulting in the fresh buffer one 4 KB
/// page at a time (a million entries: 10,000 faults, half the time of `lootsync points`),
/// so the buffer is offered transparent huge pages first: 2 MB a fault where the system
/// allows them (`madvise` mode), nothing changes where it does not.
fn read_whole(path: &Path, size: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let size = usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    // One byte more than expected, so a file that grew since is read whole.
    let mut buf = Vec::with_capacity(size + 1);
    advise_huge_pages(&mut buf);
    io::Read::read_to_end(&mut file, &mut buf)?;
    Ok(buf)
}

/// Asks for transparent huge pages over the page-aligned part of `buf`'s spare capacity
/// (best effort: the advice is only a hint, and an error changes nothing).
fn advise_huge_pages(buf: &mut Vec<u8>) {
    const HUGE_PAGE: usize = 2 << 20;
    const PAGE: usize = 4096;
    let spare = buf.spare_capacity_mut();
    if spare.len() < 2 * HUGE_PAGE {
        return;
    }
    let start = spare.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(PAGE);
    let len = (start + spare.len()).saturating_sub(aligned) / PAGE * PAGE;
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside memory this Vec owns and has not yet handed out;
    // MADV_HUGEPAGE only changes how the kernel backs it, never its contents or validity.
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

/// Checks a checkpoint's own checksum, version and group; returns its header and where its
/// ledger snapshot lies in `buf`.
fn parse(buf: &[u8], group: &str) -> Result<(Covers, std::ops::Range<usize>), CheckpointRejected> {
    let cut = |_| CheckpointRejected::Damaged("cut short");
    if buf.len() < FIXED_HEADER_BYTES + CRC_BYTES {
        return Err(CheckpointRejected::Damaged("cut short"));
    }
    let body_end = buf.len() - CRC_BYTES;
    let stored = u32::from_le_bytes(buf[body_end..].try_into().map_err(cut)?);
    if crc32c::crc32c(&buf[..body_end]) != stored {
        return Err(CheckpointRejected::Damaged("checksum mismatch"));
    }
    if buf[..8] != MAGIC {
        return Err(CheckpointRejected::Foreign(
            "not a lootsync checkpoint".into(),
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([buf[at], buf[at + 1]]);
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let (version, log_version) = (u16_at(8), u16_at(10));
    if version != CHECKPOINT_VERSION || log_version != FORMAT_VERSION {
        return Err(CheckpointRejected::Foreign(format!(
            "checkpoint version {version} of log format {log_version}; this build uses \
             version {CHECKPOINT_VERSION} of log format {FORMAT_VERSION}"
        )));
    }
    let covers = Covers {
        len: u64_at(16),
        dev: u64_at(24),
        inode: u64_at(32),
        entries: u64_at(40),
        duplicates: u64_at(48),
        windows_crc: u32::from_le_bytes(buf[56..60].try_into().map_err(cut)?),
        root: None,
    };
    let name_len = usize::from(u16_at(60));
    let name = buf
        .get(FIXED_HEADER_BYTES..FIXED_HEADER_BYTES + name_len)
        .filter(|_| FIXED_HEADER_BYTES + name_len <= body_end)
        .ok_or(CheckpointRejected::Damaged("cut short"))?;
    if name != group.as_bytes() {
        return Err(CheckpointRejected::Foreign(format!(
            "group {:?}, not {group:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok((covers, FIXED_HEADER_BYTES + name_len..body_end))
}

/// The CRC-32C of the sampled windows of the first `len` bytes of `log`: the first and the
/// last [`WINDOW_BYTES`], and evenly spaced ones between, [`WINDOWS`] in all (or the whole
/// prefix, when it is shorter than that).
pub(crate) fn windows_crc(log: &File, len: u64) -> io::Result<u32> {
    let mut crc = 0u32;
    let mut buf = vec![0u8; WINDOW_BYTES as usize];
    let mut read = |from: u64, bytes: u64, crc: &mut u32| -> io::Result<()> {
        let want = &mut buf[..bytes as usize];
        let got = read_at_most(log, want, from)?;
        *crc = crc32c::crc32c_append(*crc, &want[..got]);
        Ok(())
    };
    if len <= WINDOW_BYTES * WINDOWS {
        let mut at = 0;
        while at < len {
            let bytes = WINDOW_BYTES.min(len - at);
            read(at, bytes, &mut crc)?;
            at += bytes;
        }
    } else {
        for k in 0..WINDOWS {
            read(
                k * (len - WINDOW_BYTES) / (WINDOWS - 1),
                WINDOW_BYTES,
                &mut crc,
            )?;
        }
    }
    Ok(crc)
}

/// A checkpoint to write: taken on the thread that owns the log (cheap), written by
/// [`CheckpointJob::write`] on any thread (the expensive part).
pub struct CheckpointJob {
    log: PathBuf,
    group: String,
    covers: Covers,
    snapshot: LedgerSnapshot,
    /// The records appended past the last checkpoint when this one was taken.
    records_past: u64,
}

/// A checkpoint written, to hand back to [`crate::store::LogStore::finish_checkpoint`].
#[derive(Debug)]
pub struct CheckpointWritten {
    pub(crate) covers: Covers,
    pub(crate) records_past: u64,
    /// Size of the file written.
    pub bytes: u64,
}

impl CheckpointWritten {
    /// How many entries it covers.
    pub fn entries(&self) -> u64 {
        self.covers.entries
    }

    /// How many bytes of the log it covers.
    pub fn log_bytes(&self) -> u64 {
        self.covers.len
    }
}

impl CheckpointJob {
    /// A checkpoint of `snapshot`, the ledger of `group`'s log at `log` as far as `covers`
    /// says, taken when `records_past` records lay past the previous one.
    pub(crate) fn new(
        log: PathBuf,
        group: String,
        covers: Covers,
        snapshot: LedgerSnapshot,
        records_past: u64,
    ) -> CheckpointJob {
        CheckpointJob {
            log,
            group,
            covers,
            snapshot,
            records_past,
        }
    }

    /// How many entries it covers.
    pub fn entries(&self) -> u64 {
        self.covers.entries
    }

    /// Encodes and writes the checkpoint, replacing the old one in one step.
    pub fn write(self) -> Result<CheckpointWritten, StoreError> {
        let (out, written) = self.write_unrenamed()?;
        out.commit_replacing()?;
        Ok(written)
    }

    /// Writes the whole new checkpoint under its temporary name without renaming it into
    /// place yet.
    fn write_unrenamed(self) -> Result<(Replacement, CheckpointWritten), StoreError> {
        let CheckpointJob {
            log,
            group,
            covers,
            snapshot,
            records_past,
        } = self;
        let encoded: EncodedSnapshot = snapshot.encode();
        let header = header(&covers, &group);
        let mut out = Replacement::create_owned_like(&checkpoint_path(&log), tmp_path(&log), &log)?;
        let mut crc = 0u32;
        let mut bytes = 0u64;
        let parts = std::iter::once(header.as_slice()).chain(encoded.parts());
        for part in parts {
            crc = crc32c::crc32c_append(crc, part);
            bytes += part.len() as u64;
            if let Err(err) = out.write_all(part) {
                out.abandon();
                return Err(err);
            }
        }
        if let Err(err) = out.write_all(&crc.to_le_bytes()) {
            out.abandon();
            return Err(err);
        }
        let written = CheckpointWritten {
            covers,
            records_past,
            bytes: bytes + CRC_BYTES as u64,
        };
        Ok((out, written))
    }

    /// A crash between writing the new checkpoint and renaming it into place: the new one
    /// is complete and synced under its temporary name, the old one untouched.
    #[cfg(test)]
    pub(crate) fn write_then_crash_before_rename(self) -> Result<(), StoreError> {
        let (out, _) = self.write_unrenamed()?;
        out.sync_new()
    }
}

/// The header of a checkpoint covering `covers` of `group`'s log.
fn header(covers: &Covers, group: &str) -> Vec<u8> {
    let name = group.as_bytes();
    let mut out = Vec::with_capacity(FIXED_HEADER_BYTES + name.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for word in [
        covers.len,
        covers.dev,
        covers.inode,
        covers.entries,
        covers.duplicates,
    ] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&covers.windows_crc.to_le_bytes());
    // Group names are at most 32 characters (config validation); the store only needs them
    // to be plain file names, so clamp rather than trust that here.
    let name = &name[..name.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out
}

/// What the store knows of the checkpoint of an open log.
#[derive(Debug, Default)]
pub(crate) struct CheckpointState {
    /// The group (it names the checkpoint and is recorded in it).
    pub(crate) group: String,
    /// What the checkpoint on disk covers, if there is a usable one.
    pub(crate) covered: Option<Covers>,
    /// Records in the log past what it covers (all of them without one).
    pub(crate) records_past: u64,
    /// Records repeating an earlier entry found by the last open.
    pub(crate) duplicates: u64,
    /// Write one after an append once this many records are past it (offline commands);
    /// `None`: only when asked (the daemon decides when).
    pub(crate) after_appends: Option<u64>,
}

/// Logs why a checkpoint was not used (once per open).
pub(crate) fn log_rejected(log: &Path, why: &CheckpointRejected) {
    match why {
        CheckpointRejected::Missing => tracing::info!(
            "{}: no checkpoint yet, replaying the whole log",
            log.display()
        ),
        other => tracing::info!(
            "{}: ignoring {} ({other}); replaying the whole log and writing a new one later",
            checkpoint_path(log).display(),
            match other {
                CheckpointRejected::Io(_) => "an unreadable checkpoint",
                _ => "the checkpoint",
            }
        ),
    }
}

impl LogStore {
    /// Takes a checkpoint of `ledger`, the ledger of this log, to write with
    /// [`CheckpointJob::write`] (on any thread) and hand back to
    /// [`LogStore::finish_checkpoint`]. `None` when no checkpoint can or need be taken now:
    /// while appends are not yet synced (a checkpoint covers only durable records), some
    /// entry of the ledger is not yet in the log, or its totals wait for a replay (see
    /// [`Ledger::replay_pending`]), or when nothing was appended since the last one.
    pub fn begin_checkpoint(&self, ledger: &Ledger) -> Result<Option<CheckpointJob>, StoreError> {
        let state = self.checkpoint_state();
        if !self.is_synced() || (state.records_past == 0 && self.checkpoint_describes(ledger)) {
            return Ok(None);
        }
        let Some(snapshot) = ledger.snapshot() else {
            return Ok(None);
        };
        let path = self.path();
        let len = self.len_bytes();
        let meta = self
            .file()
            .metadata()
            .map_err(io_err(path, "reading metadata of"))?;
        let covers = Covers {
            len,
            dev: meta.dev(),
            inode: meta.ino(),
            windows_crc: windows_crc(self.file(), len).map_err(io_err(path, "reading"))?,
            entries: snapshot.len() as u64,
            duplicates: state.duplicates,
            root: ledger.root(),
        };
        Ok(Some(CheckpointJob::new(
            path.to_path_buf(),
            state.group.clone(),
            covers,
            snapshot,
            state.records_past,
        )))
    }

    /// Records that a checkpoint taken by [`LogStore::begin_checkpoint`] is on disk.
    pub fn finish_checkpoint(&mut self, written: &CheckpointWritten) {
        let state = self.checkpoint_state_mut();
        state.covered = Some(written.covers.clone());
        state.records_past = state.records_past.saturating_sub(written.records_past);
    }

    /// Takes and writes a checkpoint of `ledger` on this thread; `None` when none can or
    /// need be taken (see [`LogStore::begin_checkpoint`]).
    pub fn write_checkpoint(
        &mut self,
        ledger: &Ledger,
    ) -> Result<Option<CheckpointWritten>, StoreError> {
        let Some(job) = self.begin_checkpoint(ledger)? else {
            return Ok(None);
        };
        let written = job.write()?;
        self.finish_checkpoint(&written);
        Ok(Some(written))
    }

    /// Records in the log past its checkpoint (every record, without a usable one).
    pub fn records_past_checkpoint(&self) -> u64 {
        self.checkpoint_state().records_past
    }

    /// Entries the usable checkpoint on disk covers, if there is one.
    pub fn checkpoint_entries(&self) -> Option<u64> {
        self.checkpoint_state()
            .covered
            .as_ref()
            .map(|covers| covers.entries)
    }

    /// Whether the usable checkpoint on disk describes `ledger` as far as it goes: there is
    /// one, and its verdicts were judged under the ledger's root key (a changed root key
    /// judges every entry again, and the next checkpoint must keep the new verdicts even if
    /// nothing was appended).
    pub fn checkpoint_describes(&self, ledger: &Ledger) -> bool {
        self.checkpoint_state()
            .covered
            .as_ref()
            .is_some_and(|covers| covers.root == ledger.root())
    }

    /// After an append, write a checkpoint once `records` records are past the last one
    /// (what offline commands do: each run is short, so each keeps the next one's replay
    /// short); `None`, the default: only when asked (the daemon has its own schedule).
    pub fn checkpoint_after_appends(&mut self, records: Option<u64>) {
        self.checkpoint_state_mut().after_appends = records;
    }

    /// Writes a checkpoint if the schedule set with [`LogStore::checkpoint_after_appends`]
    /// says one is due: that many records past the last one, or no usable checkpoint for a
    /// ledger of at least that many entries. A failure is logged, never returned: the
    /// checkpoint is only a cache.
    pub fn checkpoint_if_due(&mut self, ledger: &Ledger) {
        let state = self.checkpoint_state();
        let Some(every) = state.after_appends else {
            return;
        };
        let due = state.records_past >= every
            || (!self.checkpoint_describes(ledger) && ledger.len() as u64 >= every);
        if !due {
            return;
        }
        let started = std::time::Instant::now();
        match self.write_checkpoint(ledger) {
            Ok(Some(written)) => tracing::debug!(
                "{}: checkpoint of {} entries written in {} ms",
                self.path().display(),
                written.entries(),
                started.elapsed().as_millis()
            ),
            Ok(None) => {}
            Err(err) => tracing::warn!("cannot write a checkpoint: {}", err.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::HistoryRow;
    use crate::core::rng::SeededRng;
    use crate::proto::entry::{Entry, EntryKind};
    use crate::proto::fingerprint::Fingerprint;
    use crate::proto::signature::SecretKey;
    use crate::store::test_support::{entries, entry, entry_builder, log_file, open_in, GROUP};
    use crate::store::{OpenReport, StateLock};
    use crate::testing::EntryBuilder;
    use std::collections::BTreeMap;
    use std::fs::{self, OpenOptions};
    use tempfile::TempDir;

    fn open_indexed(dir: &Path) -> (LogStore, Ledger, OpenReport) {
        let lock = StateLock::acquire(dir).unwrap();
        LogStore::open_indexed(lock, GROUP, &mut |_, _| {}).unwrap()
    }

    /// Appends `es` to the log in `dir` and syncs.
    fn append(dir: &Path, es: &[Entry]) {
        let (mut store, _, _) = open_in(dir).unwrap();
        store.append(es).unwrap();
        store.sync().unwrap();
    }

    /// Opens the log in `dir` and writes a checkpoint of it.
    fn checkpoint(dir: &Path) -> CheckpointWritten {
        let (mut store, ledger, _) = open_indexed(dir);
        store
            .write_checkpoint(&ledger)
            .unwrap()
            .expect("a checkpoint")
    }

    /// What must not depend on whether a checkpoint was used.
    type Summary = (
        usize,
        Fingerprint,
        BTreeMap<String, i64>,
        u64,
        Vec<HistoryRow>,
    );

    fn summary(ledger: &Ledger) -> Summary {
        (
            ledger.len(),
            ledger.fingerprint(),
            ledger.totals().clone(),
            ledger.rejected(),
            ledger.history(None),
        )
    }

    fn checkpoint_file(dir: &Path) -> PathBuf {
        checkpoint_path(&log_file(dir))
    }

    /// Opens the log in `dir` twice, with the checkpoint as it is and without any: the
    /// ledgers must agree; returns how many entries came from the checkpoint.
    fn reopen_agrees(dir: &Path) -> usize {
        let (_, with, report) = open_indexed(dir);
        let used = report.checkpoint_entries;
        let path = checkpoint_file(dir);
        let saved = fs::read(&path).ok();
        let _ = fs::remove_file(&path);
        let (_, without, scanned) = open_indexed(dir);
        assert_eq!(scanned.checkpoint_entries, 0);
        assert_eq!(summary(&with), summary(&without));
        assert_eq!(report.entries, scanned.entries);
        assert_eq!(report.duplicates_skipped, scanned.duplicates_skipped);
        if let Some(saved) = saved {
            fs::write(&path, saved).unwrap();
        }
        used
    }

    #[test]
    fn a_checkpoint_stands_in_for_the_prefix_it_covers() {
        let dir = TempDir::new().unwrap();
        let mut first = entries(0..40);
        // A repeated record: counted once, in the checkpoint's duplicates.
        first.push(entry(3));
        append(dir.path(), &first);
        let written = checkpoint(dir.path());
        assert_eq!(written.entries(), 40);
        append(dir.path(), &entries(40..55));
        let (store, ledger, report) = open_indexed(dir.path());
        assert_eq!(report.checkpoint_entries, 40);
        assert_eq!(report.entries, 55);
        assert_eq!(report.duplicates_skipped, 1);
        assert_eq!(store.records_past_checkpoint(), 15);
        assert_eq!(store.checkpoint_entries(), Some(40));
        // Bodies come back from the log, whichever part of the index holds them.
        for e in [entry(2), entry(50)] {
            assert_eq!(ledger.get(&e.digest()), Some(e));
        }
        drop((store, ledger));
        assert_eq!(reopen_agrees(dir.path()), 40);
        // Nothing new: no checkpoint to write.
        let (mut store, ledger, _) = open_indexed(dir.path());
        assert!(
            store.write_checkpoint(&ledger).unwrap().is_some(),
            "15 past"
        );
        assert!(store.write_checkpoint(&ledger).unwrap().is_none());
        assert_eq!(store.records_past_checkpoint(), 0);
    }

    #[test]
    fn only_a_synced_log_with_every_entry_stored_is_checkpointed() {
        let dir = TempDir::new().unwrap();
        append(dir.path(), &entries(0..5));
        let (mut store, mut ledger, _) = open_indexed(dir.path());
        // Appended (as a merge does) but not yet synced: not durable, so not covered.
        let offsets = store.append_located(&entries(5..6)).unwrap();
        assert!(ledger.insert(entry(5)));
        ledger.mark_stored(&entry(5).key(), offsets[0]);
        assert!(!store.is_synced());
        assert!(store.begin_checkpoint(&ledger).unwrap().is_none());
        store.sync().unwrap();
        // An entry merged but not yet appended is in no log prefix.
        assert!(ledger.insert(entry(9)));
        assert!(store.begin_checkpoint(&ledger).unwrap().is_none());
        let offsets = store.append_located(&[entry(9)]).unwrap();
        ledger.mark_stored(&entry(9).key(), offsets[0]);
        store.sync().unwrap();
        assert!(store.write_checkpoint(&ledger).unwrap().is_some());
        drop((store, ledger));
        assert_eq!(reopen_agrees(dir.path()), 7);
    }

    /// Every damaged, cut-short or foreign checkpoint is ignored: the ledger is the one a
    /// full replay gives, and a new checkpoint can be written over it.
    #[test]
    fn damaged_truncated_and_foreign_checkpoints_are_ignored() {
        let dir = TempDir::new().unwrap();
        append(dir.path(), &entries(0..30));
        checkpoint(dir.path());
        append(dir.path(), &entries(30..33));
        let path = checkpoint_file(dir.path());
        let good = fs::read(&path).unwrap();
        assert_eq!(reopen_agrees(dir.path()), 30);

        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        for at in (0..good.len()).step_by(7).chain([good.len() - 1]) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            variants.push((format!("byte {at} flipped"), bad));
        }
        for len in [0, 1, 8, FIXED_HEADER_BYTES, good.len() / 2, good.len() - 1] {
            variants.push((format!("cut to {len}"), good[..len].to_vec()));
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 9]);
        variants.push(("bytes appended".into(), longer));
        // Foreign, with a valid checksum: another checkpoint version, another group.
        let resealed = |mut bytes: Vec<u8>| {
            let end = bytes.len() - CRC_BYTES;
            let crc = crc32c::crc32c(&bytes[..end]);
            bytes[end..].copy_from_slice(&crc.to_le_bytes());
            bytes
        };
        let mut version = good.clone();
        version[8] = 2;
        variants.push(("version 2".into(), resealed(version)));
        let mut group = good.clone();
        group[FIXED_HEADER_BYTES] = b'X';
        variants.push(("another group".into(), resealed(group)));
        for (what, bytes) in variants {
            fs::write(&path, &bytes).unwrap();
            assert_eq!(reopen_agrees(dir.path()), 0, "{what}");
        }
        // Rebuilt: the next checkpoint is written over the bad one and used.
        fs::write(&path, b"garbage").unwrap();
        let written = checkpoint(dir.path());
        assert_eq!(written.entries(), 33);
        assert_eq!(reopen_agrees(dir.path()), 33);
    }

    #[test]
    fn why_a_checkpoint_is_rejected_is_told_apart() {
        let dir = TempDir::new().unwrap();
        append(dir.path(), &entries(0..10));
        let log = log_file(dir.path());
        let reject = |group: &str| {
            let file = File::open(&log).unwrap();
            let len = file.metadata().unwrap().len();
            let reader = Arc::new(crate::store::LogReader::open(&log).unwrap());
            load(&log, group, &file, len, reader).err()
        };
        assert!(matches!(reject(GROUP), Some(CheckpointRejected::Missing)));
        checkpoint(dir.path());
        assert!(reject(GROUP).is_none());
        assert!(matches!(
            reject("other"),
            Some(CheckpointRejected::Foreign(_))
        ));
        let path = checkpoint_file(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            reject(GROUP),
            Some(CheckpointRejected::Damaged(_))
        ));
    }

    /// A log cut back, restored from an older copy (in place, then appended to past the
    /// length the checkpoint covers), or replaced by another file (repair, a restore by
    /// rename) under a newer checkpoint: the checkpoint is stale and ignored.
    #[test]
    fn a_log_cut_restored_or_replaced_under_a_newer_checkpoint_is_detected() {
        let dir = TempDir::new().unwrap();
        let log = log_file(dir.path());
        append(dir.path(), &entries(0..200));
        let backup = fs::read(&log).unwrap();
        append(dir.path(), &entries(200..260));
        checkpoint(dir.path());
        let newest = fs::read(&log).unwrap();

        // Cut back in place (same file, shorter than the checkpoint covers).
        let file = OpenOptions::new().write(true).open(&log).unwrap();
        file.set_len(backup.len() as u64).unwrap();
        drop(file);
        assert_eq!(reopen_agrees(dir.path()), 0);
        let (_, ledger, _) = open_indexed(dir.path());
        assert_eq!(ledger.len(), 200);

        // Restored in place from the backup, then offline edits made it longer than the
        // prefix the checkpoint covers: same file, same length range, other bytes.
        fs::write(&log, &newest).unwrap();
        assert_eq!(
            reopen_agrees(dir.path()),
            260,
            "the same bytes again: usable"
        );
        fs::write(&log, &backup).unwrap();
        let other: Vec<Entry> = (0..70)
            .map(|i| {
                entry_builder(5_000 + i)
                    .reason("made after the restore")
                    .build()
            })
            .collect();
        append(dir.path(), &other);
        assert!(fs::metadata(&log).unwrap().len() >= newest.len() as u64);
        assert_eq!(reopen_agrees(dir.path()), 0);
        let (_, ledger, _) = open_indexed(dir.path());
        assert_eq!(ledger.len(), 270);

        // Replaced by another file with the very bytes it covered (as a repair or a
        // restore by rename leaves it): another inode, so not trusted.
        fs::write(&log, &newest).unwrap();
        assert_eq!(reopen_agrees(dir.path()), 260);
        let copy = dir.path().join("copy");
        fs::write(&copy, &newest).unwrap();
        fs::rename(&copy, &log).unwrap();
        assert_eq!(reopen_agrees(dir.path()), 0);

        // A repair after damage: a new file again.
        checkpoint(dir.path());
        let mut damaged = newest.clone();
        damaged[300] ^= 0xff;
        let file = OpenOptions::new().write(true).open(&log).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &damaged, 0).unwrap();
        drop(file);
        let lock = StateLock::acquire(dir.path()).unwrap();
        crate::store::verify::repair(&lock, GROUP, 1, &mut |_, _| {}).unwrap();
        drop(lock);
        assert_eq!(reopen_agrees(dir.path()), 0);
    }

    /// A crash after the new checkpoint was written under its temporary name but before the
    /// rename: the old checkpoint (or none) is what the next open finds, never half a new
    /// one; the leftover is overwritten by the next write.
    #[test]
    fn a_crash_while_writing_leaves_the_old_checkpoint_or_none() {
        let dir = TempDir::new().unwrap();
        append(dir.path(), &entries(0..20));
        let (store, ledger, _) = open_indexed(dir.path());
        let job = store.begin_checkpoint(&ledger).unwrap().unwrap();
        job.write_then_crash_before_rename().unwrap();
        drop((store, ledger));
        assert!(tmp_path(&log_file(dir.path())).exists());
        assert!(!checkpoint_file(dir.path()).exists());
        assert_eq!(reopen_agrees(dir.path()), 0, "no checkpoint");

        checkpoint(dir.path());
        append(dir.path(), &entries(20..35));
        let (store, ledger, _) = open_indexed(dir.path());
        let job = store.begin_checkpoint(&ledger).unwrap().unwrap();
        assert_eq!(job.entries(), 35);
        job.write_then_crash_before_rename().unwrap();
        drop((store, ledger));
        assert_eq!(reopen_agrees(dir.path()), 20, "the old checkpoint");

        // The leftover is written over by the next checkpoint.
        assert_eq!(checkpoint(dir.path()).entries(), 35);
        assert!(!tmp_path(&log_file(dir.path())).exists());
        assert_eq!(reopen_agrees(dir.path()), 35);
    }

    /// Torn-tail and damage rules apply unchanged to the log past a checkpoint.
    #[test]
    fn the_log_past_a_checkpoint_keeps_the_torn_tail_and_damage_rules() {
        let dir = TempDir::new().unwrap();
        append(dir.path(), &entries(0..10));
        checkpoint(dir.path());
        let log = log_file(dir.path());
        let covered = fs::metadata(&log).unwrap().len();
        append(dir.path(), &entries(10..14));
        let whole = fs::read(&log).unwrap();
        // Half of the last record: cut off.
        fs::write(&log, &whole[..whole.len() - 5]).unwrap();
        let (store, ledger, report) = open_indexed(dir.path());
        assert_eq!(report.checkpoint_entries, 10);
        assert!(report.truncated_bytes > 0);
        assert_eq!(ledger.len(), 13);
        drop((store, ledger));
        // Damage past the checkpoint with intact records after it: refused.
        append(dir.path(), &entries(20..23));
        let file = OpenOptions::new().write(true).open(&log).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[0xff; 3], covered + 12).unwrap();
        drop(file);
        let lock = StateLock::acquire(dir.path()).unwrap();
        let opened = LogStore::open_indexed(lock, GROUP, &mut |_, _| {});
        assert!(
            matches!(opened, Err(StoreError::Corrupt { offset, .. }) if offset == covered),
            "{opened:?}"
        );
    }

    fn root() -> SecretKey {
        SecretKey::from_seed([100; 32])
    }

    fn officer(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    const OFFICERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

    /// A pool of entries for the randomized test: roster adds, removes and revocations
    /// (some forged), and point entries signed by officers, strangers or no one.
    fn roster_pool(rng: &mut SeededRng) -> Vec<Entry> {
        let mut pool = Vec::new();
        let mut seed = 0u8;
        let mut next = || {
            seed = seed.wrapping_add(1);
            [seed; 10]
        };
        for (n, name) in OFFICERS.iter().enumerate() {
            let key = officer(n as u8 + 1);
            let add = EntryKind::OfficerAdd {
                public_key: key.public(),
            };
            let at = 1_000 + rng.below(200);
            pool.push(
                EntryBuilder::roster_change(at, name, add)
                    .id_random(next())
                    .reason("appointed")
                    .signed(&root()),
            );
            if n % 2 == 1 {
                pool.push(
                    EntryBuilder::roster_change(
                        at + rng.below(400),
                        name,
                        EntryKind::OfficerRemove,
                    )
                    .id_random(next())
                    .reason("stepped down")
                    .signed(&root()),
                );
            }
        }
        // A forged add, signed by an officer.
        pool.push(
            EntryBuilder::roster_change(
                1_050,
                "mallory",
                EntryKind::OfficerAdd {
                    public_key: officer(9).public(),
                },
            )
            .id_random(next())
            .reason("forged")
            .signed(&officer(1)),
        );
        let mut points = Vec::new();
        for i in 0..60u64 {
            let signer = rng.below(6) as u8;
            let target = ["Ann", "Bo", "Cy", "alice"][rng.below(4) as usize];
            let builder = EntryBuilder::at_ms(1_000 + rng.below(600))
                .id_random(next())
                .actor(match signer {
                    1..=4 if rng.chance(0.7) => OFFICERS[signer as usize - 1],
                    _ => "raidbox",
                })
                .target(target)
                .delta(1 + i as i64)
                .reason(format!("raid {i}"));
            let e = match signer {
                0 => builder.build(),
                n => builder.signed(&officer(n)),
            };
            points.push(e);
        }
        // Revoke carol's key (two parts), keeping two of her entries; one part of a
        // revocation of alice's key (incomplete: revokes nothing).
        let carol: Vec<_> = points
            .iter()
            .filter(|e| e.seal.is_some_and(|s| s.signer == officer(3).public()))
            .map(Entry::digest)
            .take(2)
            .collect();
        for (part, keep) in [(0u16, carol.clone()), (1, Vec::new())] {
            let kind = EntryKind::OfficerRevoke {
                public_key: officer(3).public(),
                batch: [7; 8],
                part,
                parts: 2,
                keep,
            };
            pool.push(
                EntryBuilder::roster_change(1_300 + rng.below(100), "carol", kind)
                    .id_random(next())
                    .reason("key lost")
                    .signed(&root()),
            );
        }
        let partial = EntryKind::OfficerRevoke {
            public_key: officer(1).public(),
            batch: [8; 8],
            part: 0,
            parts: 3,
            keep: Vec::new(),
        };
        pool.push(
            EntryBuilder::roster_change(1_400, "alice", partial)
                .id_random(next())
                .reason("maybe")
                .signed(&root()),
        );
        pool.extend(points);
        pool
    }

    /// Replay order and roster judging give identical totals, verdicts and history with
    /// and without a checkpoint: random logs with roster changes and revocations, cut at a
    /// random point, the first part checkpointed (judged under the root key or not yet),
    /// the rest replayed past it.
    #[test]
    fn randomized_logs_replay_identically_with_and_without_a_checkpoint() {
        let mut rng = SeededRng::new(11);
        let pool = roster_pool(&mut rng);
        for seed in 0..30u64 {
            let mut rng = SeededRng::new(seed);
            let mut log: Vec<Entry> = pool.iter().filter(|_| rng.chance(0.8)).cloned().collect();
            for i in (1..log.len()).rev() {
                log.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let cut = rng.below(log.len() as u64 + 1) as usize;
            let judged = rng.chance(0.5);
            let dir = TempDir::new().unwrap();
            append(dir.path(), &log[..cut]);
            {
                let (mut store, mut ledger, _) = open_indexed(dir.path());
                if judged {
                    ledger.set_root(Some(root().public()));
                }
                store.write_checkpoint(&ledger).unwrap().unwrap();
                store.append(&log[cut..]).unwrap();
                store.sync().unwrap();
            }
            let (mut reference, _) = Ledger::from_entries(log.clone());
            reference.set_root(Some(root().public()));
            let judge = |dir: &Path| {
                let (_, mut ledger, report) = open_indexed(dir);
                ledger.set_root(Some(root().public()));
                (ledger, report.checkpoint_entries)
            };
            let (with, used) = judge(dir.path());
            assert_eq!(used, cut, "seed {seed}");
            fs::remove_file(checkpoint_file(dir.path())).unwrap();
            let (without, _) = judge(dir.path());
            let all = reference.history(None);
            for ledger in [&with, &without] {
                assert_eq!(summary(ledger), summary(&reference), "seed {seed}");
                assert_eq!(ledger.officers(), reference.officers(), "seed {seed}");
                for player in ["Ann", "Bo", "alice", "carol", "nobody"] {
                    let expected: Vec<HistoryRow> = all
                        .iter()
                        .filter(|row| row.entry.target == player)
                        .cloned()
                        .collect();
                    assert_eq!(
                        ledger.history(Some(player)),
                        expected,
                        "seed {seed} {player}"
                    );
                }
            }
            assert!(reference.rejected() > 0 && !reference.totals().is_empty());
        }
    }
}
