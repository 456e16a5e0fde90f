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
    pub(crate) dev: u64,
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
    Io(#[source] io::Error),
    /// Its bytes are damaged or cut short.
    #[error("the checkpoint is damaged ({0})")]
    Damaged(&'static str),
    /// Its ledger snapshot is unusable.
    #[error("the checkpoint is damaged ({0})")]
    Snapshot(#[source] SnapshotError),
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
    let buf = std::fs::read(&path).map_err(CheckpointRejected::Io)?;
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

/// Where the error came from, for a log line (the store's error names the file).
pub(crate) fn describe(err: &StoreError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl LogStore {
    /// Takes a checkpoint of `ledger`, the ledger of this log, to write with
    /// [`CheckpointJob::write`] (on any thread) and hand back to
    /// [`LogStore::finish_checkpoint`]. `None` when no checkpoint can or need be taken now:
    /// while appends are not yet synced (a checkpoint covers only durable records) or some
    /// entry of the ledger is not yet in the log, or when nothing was appended since the
    /// last one.
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
            Err(err) => tracing::warn!("cannot write a checkpoint: {}", describe(&err)),
        }
    }
}
