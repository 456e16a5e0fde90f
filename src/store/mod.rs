//! The on-disk log: one append-only file per group, guarded by an exclusive lock on the
//! state directory.
//!
//! # File format
//!
//! A 16-byte header (`b"LOOTLOG\0"`, format version as u16 LE, 6 reserved zero bytes) followed
//! by records `[len u32 LE][crc u32 LE][payload]`, where the payload is the postcard encoding
//! of one [`Entry`] and the CRC-32C covers the length bytes and the payload. Covering the
//! length means a damaged length field is caught by the checksum instead of silently
//! re-framing the rest of the file.
//!
//! Version 2 added an entry's `kind` and `seal` (officer signatures); a version 1 log is
//! rewritten as version 2 the first time it is opened.
//!
//! # Crash recovery
//!
//! Appends are not synced individually, so a crash can leave a partly written record at the
//! end of the file. [`LogStore::open`] tells that apart from real damage by looking past the
//! first bad record: if no intact record follows, the bad bytes can only be an unfinished
//! append and are cut off; if an intact record follows, something damaged the middle of the
//! log and opening fails with [`StoreError::Corrupt`] rather than throwing away history.

pub mod keyfile;
pub mod keys;
pub mod verify;

use crate::core::ledger::{EntryReader, Ledger, LedgerBuilder};
use crate::proto::entry::{Digest, Entry};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Magic bytes at the start of every log file.
pub(crate) const MAGIC: [u8; 8] = *b"LOOTLOG\0";
/// The only format version this build reads and writes.
pub(crate) const FORMAT_VERSION: u16 = 2;
/// Size of the file header in bytes.
pub(crate) const HEADER_LEN: u64 = 16;
/// Size of a record's length + checksum prefix in bytes.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// Largest payload a record may carry. A valid entry encodes to well under 600 bytes; the
/// bound keeps a damaged length field from making the reader allocate or skip megabytes.
const MAX_RECORD_BYTES: usize = 2048;
/// Read buffer for scanning: large enough that a 150 MB log is read in a few hundred
/// syscalls rather than one or two per record.
pub(crate) const SCAN_BUFFER_BYTES: usize = 1 << 20;
/// How often (in bytes scanned) a long scan reports progress.
pub(crate) const PROGRESS_STEP_BYTES: u64 = 1 << 20;
/// Name of the lock file inside the state directory.
const LOCK_FILE_NAME: &str = "lootsync.lock";
/// Extension of per-group log files.
const LOG_EXTENSION: &str = "lootlog";

/// Why the store could not do what was asked.
///
/// Damage to the log ([`StoreError::Corrupt`], [`StoreError::BadHeader`]) is kept apart
/// from I/O failures, because the operator's response differs: an I/O error may go away on
/// retry, while damage needs `lootsync verify` and a human decision.
#[derive(Debug, Error)]
pub enum StoreError {
    /// An I/O operation failed. The underlying error is the source.
    #[error("I/O error while {action} {}", path.display())]
    Io {
        /// The file or directory being worked on.
        path: PathBuf,
        /// What was being done, e.g. "reading log".
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the state directory's lock.
    #[error(
        "{} is locked by another lootsync process (is a daemon already running on this state directory?)",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The file does not start with a usable log header.
    #[error("{} is not a usable lootsync log: {reason}", path.display())]
    BadHeader {
        /// The log file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    /// The log is damaged somewhere before intact records, so it cannot be an interrupted
    /// append and is not repaired automatically.
    #[error(
        "{} is corrupt at byte offset {offset}: {reason} (run `lootsync verify` to inspect the damage)",
        path.display()
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// Builds a [`StoreError::Io`] mapper for `?`.
pub(crate) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Exclusive lock on a state directory, held for the life of a daemon or offline CLI
/// command. Two processes writing one log would interleave records, so everything that
/// touches the logs takes this first. The lock is released when this value is dropped.
#[derive(Debug)]
pub struct StateLock {
    state_dir: PathBuf,
    /// Kept open because the lock lives exactly as long as this open file description.
    _file: File,
}

impl StateLock {
    /// Creates `state_dir` (and parents) if missing, opens or creates `state_dir/lootsync.lock`
    /// and takes a non-blocking exclusive lock on it. Returns [`StoreError::Locked`] if another
    /// holder (another process, or another open of the same file in this process) has it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StoreError> {
        fs::create_dir_all(state_dir).map_err(io_err(state_dir, "creating state directory"))?;
        let path = state_dir.join(LOCK_FILE_NAME);
        // No truncate: the file's content is irrelevant, and truncating a file someone else
        // has locked would be rude even if harmless.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path, "opening lock file"))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock {
                state_dir: state_dir.to_path_buf(),
                _file: file,
            }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
            Err(TryLockError::Error(source)) => Err(StoreError::Io {
                path,
                action: "locking",
                source,
            }),
        }
    }

    /// The locked state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// What [`LogStore::open`] found while scanning a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Whole, valid entries read (duplicates not counted).
    pub entries: usize,
    /// Size of the file in bytes after any truncation.
    pub file_bytes: u64,
    /// Bytes of a torn tail (an unfinished append) cut off the end; 0 normally.
    pub truncated_bytes: u64,
    /// Records whose id was already seen earlier in the file. They are skipped, not
    /// returned, and left on disk (rewriting the log to drop them is not worth the risk).
    pub duplicates_skipped: usize,
}

/// An open, locked, append-only log for one group.
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
    /// A sync failed. After a failed fsync the kernel may have dropped the dirty pages and a
    /// retry can report success without the data being on disk, so every later sync fails
    /// too rather than claim durability.
    sync_failed: bool,
    /// The log length a background sync started at covers, once it succeeds.
    background_sync_len: Option<u64>,
    /// Where the length covered by the last successful sync is recorded, so the next open
    /// can tell unsynced damage (a power cut) from damage to durable records.
    synced_mark: SyncedMark,
}

/// A sync handed to another thread: run [`PendingSync::run`] there (it blocks).
#[derive(Debug)]
pub struct PendingSync {
    /// A second handle to the log file (fdatasync on it covers writes made through any).
    file: File,
}

impl PendingSync {
    /// Blocks until everything appended before the sync began is on disk.
    pub fn run(self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Why a record could not be read, when that might still be an unfinished append.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Torn {
    ShortHeader,
    BadLength(u32),
    ShortPayload(u32),
    ChecksumMismatch,
}

impl Torn {
    pub(crate) fn describe(self) -> String {
        match self {
            Torn::ShortHeader => "record header cut short".to_string(),
            Torn::BadLength(len) => {
                format!("invalid record length {len} (must be 1..={MAX_RECORD_BYTES})")
            }
            Torn::ShortPayload(len) => format!("record payload of {len} bytes cut short"),
            Torn::ChecksumMismatch => "checksum mismatch".to_string(),
        }
    }
}

/// Frames `entry` as a record and appends it to `out`.
pub(crate) fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> Result<(), String> {
    entry
        .validate()
        .map_err(|e| format!("invalid entry {}: {e}", entry.id))?;
    let payload =
        postcard::to_stdvec(entry).map_err(|e| format!("cannot encode entry {}: {e}", entry.id))?;
    // Cannot fail for a validated entry, but a record the reader would reject must never be
    // written.
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_RECORD_BYTES)
        .ok_or_else(|| format!("entry {} encodes to {} bytes", entry.id, payload.len()))?;
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &payload);
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes a checksummed payload into a valid entry, or says why it is not one.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Entry, String> {
    let (entry, rest) = postcard::take_from_bytes::<Entry>(payload)
        .map_err(|e| format!("record does not decode as an entry ({e})"))?;
    if !rest.is_empty() {
        return Err(format!(
            "record has {} trailing bytes after the entry",
            rest.len()
        ));
    }
    entry
        .validate()
        .map_err(|e| format!("record holds an invalid entry ({e})"))?;
    Ok(entry)
}

/// Splits a record's 8-byte prefix into (length, checksum).
pub(crate) fn split_record_header(header: [u8; RECORD_HEADER_LEN]) -> (u32, u32) {
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    (
        u32::from_le_bytes([l0, l1, l2, l3]),
        u32::from_le_bytes([c0, c1, c2, c3]),
    )
}

pub(crate) fn record_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

pub(crate) fn length_is_valid(len: u32) -> bool {
    len != 0 && len as usize <= MAX_RECORD_BYTES
}

/// Whether `buf` starts with a whole record that is intact in every respect: valid length,
/// matching checksum, and a payload that decodes to a valid entry.
fn is_intact_record(buf: &[u8]) -> bool {
    let Some((header, rest)) = buf.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return false;
    };
    let (len, crc) = split_record_header(*header);
    if !length_is_valid(len) {
        return false;
    }
    let Some(payload) = rest.get(..len as usize) else {
        return false;
    };
    record_crc(len, payload) == crc && decode_payload(payload).is_ok()
}

/// Reads until `buf` is full or the reader is exhausted; returns how many bytes were read.
/// Unlike `read_exact`, a short read at end of file is reported, not an error, because
/// a short record is exactly what a torn tail looks like.
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Looks for an intact record starting at any byte offset from `from` on. Reads in large
/// chunks with an overlap of one maximal record, so a record straddling two chunks is still
/// seen and memory stays bounded however long the damaged region is.
pub(crate) fn find_intact_record(
    file: &mut (impl Read + Seek),
    from: u64,
) -> io::Result<Option<u64>> {
    const OVERLAP: usize = RECORD_HEADER_LEN + MAX_RECORD_BYTES;
    file.seek(SeekFrom::Start(from))?;
    let mut window = vec![0u8; SCAN_BUFFER_BYTES + OVERLAP];
    let mut window_start = from;
    let mut filled = 0;
    loop {
        let got = read_up_to(file, &mut window[filled..])?;
        filled += got;
        let at_eof = filled < window.len();
        // Without EOF, only offsets with a whole maximal record's worth of bytes after them
        // can be judged now; the rest are judged after the window slides.
        let judge_up_to = if at_eof { filled } else { filled - OVERLAP };
        for start in 0..judge_up_to {
            if is_intact_record(&window[start..filled]) {
                return Ok(Some(window_start + start as u64));
            }
        }
        if at_eof {
            return Ok(None);
        }
        window.copy_within(judge_up_to..filled, 0);
        filled -= judge_up_to;
        window_start += judge_up_to as u64;
    }
}

/// What was found when checking the first bytes of a log.
pub(crate) enum HeaderState {
    /// A complete, supported header.
    Valid,
    /// Empty, or a prefix of a valid header: the file was created but its header never
    /// fully written, so it holds no data and is started afresh.
    Unwritten,
}

pub(crate) fn check_header(
    path: &Path,
    file: &mut File,
    file_len: u64,
) -> Result<HeaderState, StoreError> {
    let mut expected = [0u8; HEADER_LEN as usize];
    expected[..8].copy_from_slice(&MAGIC);
    expected[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());

    let mut header = [0u8; HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))
        .map_err(io_err(path, "reading header of"))?;
    let got = read_up_to(file, &mut header).map_err(io_err(path, "reading header of"))?;
    let bad = |reason: String| StoreError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    if (got as u64) < HEADER_LEN {
        // The length check guards against the file changing under us between stat and read.
        if got as u64 == file_len && header[..got] == expected[..got] {
            return Ok(HeaderState::Unwritten);
        }
        return Err(bad(format!(
            "the file is {file_len} bytes, shorter than the {HEADER_LEN}-byte header, \
             and does not start like a lootsync log"
        )));
    }
    if header[..8] != MAGIC {
        return Err(bad(
            "wrong magic bytes; this is not a lootsync log".to_string()
        ));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
        )));
    }
    // The reserved bytes are deliberately not checked: a future version may use them for
    // flags that older readers can safely ignore; incompatible changes bump the version.
    Ok(HeaderState::Valid)
}

/// The format before officer signatures: the same records, but an entry payload ends after
/// `reason` (no `kind`, no `seal`).
const FORMAT_VERSION_V1: u16 = 1;

/// Rewrites a version 1 log (from before officer signatures) as the current version, once,
/// the first time this build opens it. A v1 entry is an unsigned point adjustment: its
/// payload followed by the two zero bytes of `kind = Points` and `seal = None` is exactly its
/// current encoding, so every peer that upgrades computes the same digests. The old file is
/// kept as `<group>.lootlog.v1-<pid>` and the new one renamed into place only when complete
/// and synced. A damaged v1 log is refused: repair it with the previous release first.
fn upgrade_v1_log(path: &Path) -> Result<(), StoreError> {
    // Only the header is read unless the log really is version 1.
    let mut header = [0u8; HEADER_LEN as usize];
    let is_v1 = File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok()
        && header[..8] == MAGIC
        && u16::from_le_bytes([header[8], header[9]]) == FORMAT_VERSION_V1;
    if !is_v1 {
        return Ok(()); // missing, short or current: the normal open path handles it
    }
    let bytes = fs::read(path).map_err(io_err(path, "reading version 1 log"))?;
    let mut out = bytes[..HEADER_LEN as usize].to_vec();
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let mut offset = HEADER_LEN as usize;
    let mut entries = 0usize;
    while offset < bytes.len() {
        let Some((entry, next)) = v1_record_at(&bytes, offset) else {
            // As on a normal open: bad bytes with no intact record after them can only be
            // an append cut short by a crash, and are dropped; anything else is damage.
            if (offset + 1..bytes.len()).any(|o| v1_record_at(&bytes, o).is_some()) {
                return Err(StoreError::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!(
                        "version 1 log cannot be upgraded: damaged record at offset {offset}; \
                         run `lootsync repair` with the previous release first"
                    ),
                });
            }
            tracing::warn!(
                "{}: dropping a torn final record ({} bytes) while upgrading",
                path.display(),
                bytes.len() - offset
            );
            break;
        };
        encode_record(&entry, &mut out).map_err(|reason| StoreError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("version 1 log cannot be upgraded: {reason}"),
        })?;
        offset = next;
        entries += 1;
    }
    let tmp_path = path.with_extension("lootlog.upgrade-tmp");
    let aside = path.with_extension(format!("lootlog.v1-{}", std::process::id()));
    // Private like the log it replaces, whatever the umask.
    let mut tmp = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(io_err(&tmp_path, "creating"))?;
    tmp.write_all(&out).map_err(io_err(&tmp_path, "writing"))?;
    tmp.sync_all().map_err(io_err(&tmp_path, "syncing"))?;
    drop(tmp);
    fs::hard_link(path, &aside).map_err(io_err(&aside, "keeping the version 1 log as"))?;
    fs::rename(&tmp_path, path).map_err(io_err(path, "replacing"))?;
    sync_parent_dir(path)?;
    tracing::warn!(
        "{}: upgraded from log format version 1 ({entries} entries, unsigned); the old file \
         is kept as {}",
        path.display(),
        aside.display()
    );
    Ok(())
}

/// The intact version 1 record at `offset`, as a current entry, and where the next starts.
fn v1_record_at(bytes: &[u8], offset: usize) -> Option<(Entry, usize)> {
    let head = bytes.get(offset..offset.checked_add(RECORD_HEADER_LEN)?)?;
    let (len, crc) = split_record_header(head.try_into().ok()?);
    if len as usize > MAX_RECORD_BYTES {
        return None;
    }
    let start = offset + RECORD_HEADER_LEN;
    let payload = bytes.get(start..start + len as usize)?;
    if crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload) != crc {
        return None;
    }
    let mut upgraded = payload.to_vec();
    upgraded.extend_from_slice(&[0, 0]);
    let entry = decode_payload(&upgraded).ok()?;
    Some((entry, start + len as usize))
}

/// Starts an empty log: header written and synced, and the directory entry synced so the
/// file itself survives a crash.
pub(crate) fn write_fresh_header(path: &Path, file: &mut File) -> Result<(), StoreError> {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let action = "writing header of";
    file.set_len(0).map_err(io_err(path, action))?;
    file.seek(SeekFrom::Start(0))
        .map_err(io_err(path, action))?;
    file.write_all(&header).map_err(io_err(path, action))?;
    file.sync_all().map_err(io_err(path, "syncing"))?;
    sync_parent_dir(path)
}

/// Syncs the directory holding `path`, so a file created or renamed there survives a crash.
/// The file beside the log that records the log length the last successful fdatasync
/// covered (`<group>.lootlog.synced`): 8 bytes little-endian and their CRC32C.
pub fn synced_mark_path(log: &Path) -> PathBuf {
    log.with_extension("lootlog.synced")
}

/// The open mark file of a log (see [`synced_mark_path`]): 8 bytes of length, 8 bytes of
/// the log file's inode number (a mark describes one file: a repaired, upgraded or restored
/// log is a new file, whose old mark is ignored) and a CRC32C of both.
#[derive(Debug)]
struct SyncedMark {
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
    fn open(log: &Path, log_file: &File) -> SyncedMark {
        use std::os::unix::fs::MetadataExt;
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
    fn record(&mut self, len: u64) {
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

    /// The length the last successful fdatasync of `log_file` covered, if a valid mark for
    /// this very file is on disk.
    fn read(log: &Path, log_file: &File) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
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

/// Where the unsynced end of the log (past its synced `mark`) has a damaged record followed
/// by an intact one, if it has. Only that end is read, so this costs nothing after a clean
/// stop.
fn unsynced_hole(
    path: &Path,
    file: &mut File,
    mark: u64,
    file_len: u64,
) -> Result<Option<u64>, StoreError> {
    if !(HEADER_LEN..file_len).contains(&mark) {
        return Ok(None);
    }
    let read_err = io_err(path, "reading the unsynced end of");
    let mut offset = mark;
    file.seek(SeekFrom::Start(offset)).map_err(&read_err)?;
    let mut reader = BufReader::new(&mut *file);
    let mut payload = Vec::with_capacity(MAX_RECORD_BYTES);
    while offset < file_len {
        let mut header = [0u8; RECORD_HEADER_LEN];
        let whole = read_up_to(&mut reader, &mut header).map_err(&read_err)? == RECORD_HEADER_LEN;
        let (len, crc) = split_record_header(header);
        let intact = whole && length_is_valid(len) && {
            payload.resize(len as usize, 0);
            read_up_to(&mut reader, &mut payload).map_err(&read_err)? == payload.len()
                && record_crc(len, &payload) == crc
        };
        if !intact {
            drop(reader);
            let after = find_intact_record(file, offset + 1).map_err(&read_err)?;
            return Ok(after.map(|_| offset));
        }
        offset += (RECORD_HEADER_LEN + payload.len()) as u64;
    }
    Ok(None)
}

/// The log length the last successful fdatasync of the log at `log` covered, if a valid
/// mark for the file now at that path is on disk (for tests; opening reads it itself).
#[cfg(test)]
pub(crate) fn synced_mark(log: &Path) -> Option<u64> {
    SyncedMark::read(log, &File::open(log).ok()?)
}

pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "syncing directory"))?;
    }
    Ok(())
}

/// Rejects group names that would put the log outside the state directory or hide it.
pub(crate) fn check_group_name(state_dir: &Path, group: &str) -> Result<(), StoreError> {
    let plain = !group.is_empty()
        && !group.starts_with('.')
        && !group.contains(['/', '\\', '\0'])
        && Path::new(group).components().count() == 1;
    if plain {
        Ok(())
    } else {
        Err(StoreError::Io {
            path: state_dir.to_path_buf(),
            action: "opening the log for a group in",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("group name {group:?} is not a plain file name"),
            ),
        })
    }
}

/// Result of the sequential scan over the records.
struct Scan {
    /// Records the visitor took as new entries.
    entries: usize,
    duplicates_skipped: usize,
    /// End of the last whole, valid record.
    valid_end: u64,
    /// The first unreadable record, if the scan stopped before end of file.
    torn: Option<Torn>,
}

/// Receives each whole, valid record's entry and offset during a scan; returns false when
/// the entry repeats an earlier id (it is then counted as a duplicate).
type Visitor<'a> = &'a mut dyn FnMut(Entry, u64) -> bool;

/// Reads records from just after the header until end of file or the first record that
/// cannot be read. Entries whose content is bad despite a good checksum are reported as
/// corruption immediately: a torn write cannot produce a matching checksum.
fn scan_records(
    path: &Path,
    file: &File,
    file_len: u64,
    progress: &mut dyn FnMut(u64, u64),
    visit: Visitor<'_>,
) -> Result<Scan, StoreError> {
    let read_err = io_err(path, "reading log");
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, file);
    reader
        .seek(SeekFrom::Start(HEADER_LEN))
        .map_err(io_err(path, "reading log"))?;
    let mut entries = 0;
    let mut duplicates_skipped = 0;
    let mut offset = HEADER_LEN;
    let mut payload = Vec::with_capacity(MAX_RECORD_BYTES);
    let mut next_report = 0;
    let torn = loop {
        if offset >= next_report {
            progress(offset, file_len);
            next_report = offset + PROGRESS_STEP_BYTES;
        }
        let mut header = [0u8; RECORD_HEADER_LEN];
        let got = match read_up_to(&mut reader, &mut header) {
            Ok(got) => got,
            Err(e) => return Err(read_err(e)),
        };
        if got == 0 {
            break None;
        }
        if got < RECORD_HEADER_LEN {
            break Some(Torn::ShortHeader);
        }
        let (len, crc) = split_record_header(header);
        if !length_is_valid(len) {
            break Some(Torn::BadLength(len));
        }
        payload.resize(len as usize, 0);
        let got = match read_up_to(&mut reader, &mut payload) {
            Ok(got) => got,
            Err(e) => return Err(read_err(e)),
        };
        if got < payload.len() {
            break Some(Torn::ShortPayload(len));
        }
        if record_crc(len, &payload) != crc {
            break Some(Torn::ChecksumMismatch);
        }
        let entry = decode_payload(&payload).map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: format!("{reason}, though its checksum matches"),
        })?;
        if visit(entry, offset) {
            entries += 1;
        } else {
            duplicates_skipped += 1;
        }
        offset += (RECORD_HEADER_LEN + payload.len()) as u64;
    };
    Ok(Scan {
        entries,
        duplicates_skipped,
        valid_end: offset,
        torn,
    })
}

impl LogStore {
    /// Path of the log for `group` inside `state_dir`: `state_dir/<group>.lootlog`.
    pub fn log_path(state_dir: &Path, group: &str) -> PathBuf {
        state_dir.join(format!("{group}.{LOG_EXTENSION}"))
    }

    /// Opens (creating with a header if missing) the log for `group` in the locked state
    /// directory, scans and validates every record, and returns the entries in file order
    /// (the caller sorts). A torn tail left by a crash mid-append is truncated and reported;
    /// damage followed by intact records is [`StoreError::Corrupt`]. Records repeating an
    /// earlier id are skipped and counted.
    pub fn open(
        lock: StateLock,
        group: &str,
    ) -> Result<(LogStore, Vec<Entry>, OpenReport), StoreError> {
        Self::open_with_progress(lock, group, &mut |_, _| {})
    }

    /// [`LogStore::open`], calling `progress(bytes_scanned, file_bytes)` every megabyte or
    /// so while replaying, so a caller can show a progress bar for a large log.
    pub fn open_with_progress(
        lock: StateLock,
        group: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(LogStore, Vec<Entry>, OpenReport), StoreError> {
        let mut entries = Vec::new();
        let mut seen: HashSet<Digest> = HashSet::new();
        let (store, report) = Self::open_visiting(lock, group, progress, &mut |entry, _| {
            let new = seen.insert(entry.digest());
            if new {
                entries.push(entry);
            }
            new
        })?;
        Ok((store, entries, report))
    }

    /// Opens like [`LogStore::open_with_progress`] but keeps only a compact index of the log
    /// in memory: the returned ledger holds each entry's key, digest and offset, and reads
    /// bodies back from the file through a [`LogReader`] when history or sync need them.
    pub fn open_indexed(
        lock: StateLock,
        group: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(LogStore, Ledger, OpenReport), StoreError> {
        let mut builder = LedgerBuilder::new();
        let (store, report) = Self::open_visiting(lock, group, progress, &mut |entry, offset| {
            builder.push(&entry, offset)
        })?;
        let reader = LogReader::open(store.path())?;
        let (ledger, _duplicates) = builder.finish(Arc::new(reader));
        Ok((store, ledger, report))
    }

    fn open_visiting(
        lock: StateLock,
        group: &str,
        progress: &mut dyn FnMut(u64, u64),
        visit: Visitor<'_>,
    ) -> Result<(LogStore, OpenReport), StoreError> {
        Self::open_checked(lock, group, progress, visit, true)
    }

    /// [`LogStore::open_visiting`]; `repair_unsynced_holes` is false on the reopen after
    /// such a repair, so it can never loop.
    fn open_checked(
        lock: StateLock,
        group: &str,
        progress: &mut dyn FnMut(u64, u64),
        visit: Visitor<'_>,
        repair_unsynced_holes: bool,
    ) -> Result<(LogStore, OpenReport), StoreError> {
        check_group_name(lock.state_dir(), group)?;
        let path = Self::log_path(lock.state_dir(), group);
        upgrade_v1_log(&path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600) // the raid's history is nobody else's business
            .open(&path)
            .map_err(io_err(&path, "opening log"))?;
        let file_len = file
            .metadata()
            .map_err(io_err(&path, "reading metadata of"))?
            .len();

        let report = match check_header(&path, &mut file, file_len)? {
            HeaderState::Unwritten => {
                write_fresh_header(&path, &mut file)?;
                OpenReport {
                    file_bytes: HEADER_LEN,
                    ..OpenReport::default()
                }
            }
            HeaderState::Valid => {
                let mark = SyncedMark::read(&path, &file).filter(|_| repair_unsynced_holes);
                if let Some(hole) = mark
                    .map(|mark| unsynced_hole(&path, &mut file, mark, file_len))
                    .transpose()?
                    .flatten()
                {
                    // Damage past the last length an fdatasync confirmed, with intact records
                    // after it: a power cut while appends were unsynced (`storage.fsync =
                    // "batch"`) writes pages out of order and can leave such holes. If every
                    // damaged region lies there, nothing acknowledged as durable was hit:
                    // repair now (every intact record kept, the damaged file kept aside)
                    // instead of refusing to start. Damage before the mark is refused below.
                    let mark = mark.unwrap_or(u64::MAX);
                    let report = crate::store::verify::verify(&lock, group, &mut |_, _| {})?;
                    if report.damaged.iter().all(|region| region.offset >= mark) {
                        drop(file);
                        let unix_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        let outcome =
                            crate::store::verify::repair(&lock, group, unix_ms, &mut |_, _| {})?;
                        if let crate::store::verify::RepairOutcome::Repaired {
                            kept_aside, ..
                        } = outcome
                        {
                            tracing::warn!(
                                "{}: damage at offset {hole} lies past the last synced length, \
                                 as a power cut under batch fsync leaves it; repaired, keeping \
                                 every intact record (the damaged file is kept as {})",
                                path.display(),
                                kept_aside.display()
                            );
                        }
                        return Self::open_checked(lock, group, progress, visit, false);
                    }
                }
                Self::load(&path, &mut file, file_len, progress, visit)?
            }
        };
        // What was read is durable from here on (an earlier process may have died with
        // appends still in the page cache): sync once, then record the length.
        file.sync_data().map_err(io_err(&path, "syncing"))?;
        let mut synced_mark = SyncedMark::open(&path, &file);
        synced_mark.record(report.file_bytes);

        let store = LogStore {
            _lock: lock,
            file,
            path,
            len: report.file_bytes,
            unsynced: false,
            rollback_pending: false,
            fsyncs: 0,
            sync_failed: false,
            background_sync_len: None,
            synced_mark,
        };
        Ok((store, report))
    }

    /// Scans a log with a valid header, repairing a torn tail.
    fn load(
        path: &Path,
        file: &mut File,
        file_len: u64,
        progress: &mut dyn FnMut(u64, u64),
        visit: Visitor<'_>,
    ) -> Result<OpenReport, StoreError> {
        let scan = scan_records(path, file, file_len, progress, visit)?;
        progress(scan.valid_end, file_len);
        let mut truncated_bytes = 0;
        if let Some(torn) = scan.torn {
            let bad_at = scan.valid_end;
            let intact_after = find_intact_record(file, bad_at + 1)
                .map_err(io_err(path, "scanning past a damaged record in"))?;
            if let Some(intact_at) = intact_after {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    offset: bad_at,
                    reason: format!(
                        "{} in record at offset {bad_at}; an intact record follows at offset \
                         {intact_at}, so this is not a torn tail",
                        torn.describe()
                    ),
                });
            }
            // Saturating: the length was read before the scan, and nothing else should touch
            // the file, but a miscount must not panic.
            truncated_bytes = file_len.saturating_sub(bad_at);
            file.set_len(bad_at)
                .map_err(io_err(path, "truncating torn tail of"))?;
            file.sync_all().map_err(io_err(path, "syncing"))?;
            // The caller warns, from `OpenReport::truncated_bytes`; this is the detail.
            tracing::debug!(
                path = %path.display(),
                offset = bad_at,
                bytes_cut = truncated_bytes,
                reason = %torn.describe(),
                "cut a torn tail (an unfinished append) off the log"
            );
        }
        if scan.duplicates_skipped > 0 {
            tracing::warn!(
                path = %path.display(),
                count = scan.duplicates_skipped,
                "skipped log records repeating an earlier entry id"
            );
        }
        let report = OpenReport {
            entries: scan.entries,
            file_bytes: scan.valid_end,
            truncated_bytes,
            duplicates_skipped: scan.duplicates_skipped,
        };
        Ok(report)
    }

    /// Appends records for `entries` in one write (not synced; see [`LogStore::sync`]).
    /// Entries must be valid (an invalid one would make the log unreadable, so it is refused
    /// with an `InvalidInput` I/O error before anything is written); duplicates are the
    /// caller's concern. On a write error the file is truncated back to its previous length
    /// so the log stays valid, and the error is returned.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.append_located(entries).map(drop)
    }

    /// [`LogStore::append`], returning the byte offset of each entry's record (what a
    /// [`LogReader`] reads it back from).
    pub fn append_located(&mut self, entries: &[Entry]) -> Result<Vec<u64>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(entries.len() * 256);
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            offsets.push(self.len + buf.len() as u64);
            encode_record(entry, &mut buf).map_err(|msg| StoreError::Io {
                path: self.path.clone(),
                action: "appending to",
                source: io::Error::new(io::ErrorKind::InvalidInput, msg),
            })?;
        }
        if self.rollback_pending {
            self.file
                .set_len(self.len)
                .map_err(io_err(&self.path, "rolling back a failed append to"))?;
            self.rollback_pending = false;
        }
        // Writing at the tracked length, not the file cursor, keeps appends in the right
        // place even after a failed write left the cursor somewhere else.
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&buf));
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
    /// the last sync. Once a sync has failed, every later call fails too (see the field
    /// docs: a retried fsync can falsely succeed); reopen the log to recover.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.sync_failed {
            return Err(StoreError::Io {
                path: self.path.clone(),
                action: "syncing",
                source: io::Error::other(
                    "an earlier sync of this log failed, so recent appends may be lost; \
                     reopen the log",
                ),
            });
        }
        if !self.unsynced {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
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
    /// handle to the file, or `None` when nothing is unsynced. Pass the outcome to [`LogStore::finish_background_sync`]. Merged remote
    /// entries use this, so a slow fdatasync (tens of ms on some disks) never stalls sync.
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
        Ok(Some(PendingSync { file }))
    }

    /// Records the outcome of a background sync started by
    /// [`LogStore::begin_background_sync`].
    pub fn finish_background_sync(&mut self, outcome: io::Result<()>) -> Result<(), StoreError> {
        match outcome {
            Ok(()) => {
                self.fsyncs += 1;
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

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the log file in bytes (header included).
    pub fn len_bytes(&self) -> u64 {
        self.len
    }
}

/// Reads entries back from a log by record offset (positional reads, so it never disturbs
/// the appending handle). Every read checks the record's length and checksum and decodes and
/// validates the entry, exactly as opening the log does.
#[derive(Debug)]
pub struct LogReader {
    file: File,
    path: PathBuf,
    /// The file region read last. Sync and history read entries in key order, which is
    /// mostly file order, so one read serves many records instead of two syscalls each.
    window: std::sync::Mutex<ReadWindow>,
}

/// Bytes of the log starting at `start`, as read at some moment. The log only grows, so they
/// stay valid, except a failed append's bytes that were cut off again: a record that does not
/// check out from the window is therefore read again from the file before it is an error.
#[derive(Debug, Default)]
struct ReadWindow {
    start: u64,
    bytes: Vec<u8>,
}

/// How much one read brings in: tens to hundreds of records.
const READ_WINDOW_BYTES: usize = 32 * 1024;

impl LogReader {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<LogReader, StoreError> {
        let file = File::open(path).map_err(io_err(path, "opening log for reading"))?;
        Ok(LogReader {
            file,
            path: path.to_path_buf(),
            window: std::sync::Mutex::new(ReadWindow::default()),
        })
    }

    /// Fills the window with the file from `offset` on (at least `need` bytes unless the
    /// file ends first).
    fn refill(&self, window: &mut ReadWindow, offset: u64, need: usize) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        window.start = offset;
        window.bytes.resize(need.max(READ_WINDOW_BYTES), 0);
        let mut filled = 0;
        while filled < window.bytes.len() {
            match self
                .file
                .read_at(&mut window.bytes[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    window.bytes.clear();
                    return Err(format!("{}: {e}", self.path.display()));
                }
            }
        }
        window.bytes.truncate(filled);
        Ok(())
    }

    /// Decodes the record at `offset` from the window, refilling it when the record is not
    /// wholly inside.
    fn record_from(&self, window: &mut ReadWindow, offset: u64) -> Result<Entry, String> {
        let inside = |w: &ReadWindow, len: usize| {
            offset >= w.start && offset + len as u64 <= w.start + w.bytes.len() as u64
        };
        if !inside(window, RECORD_HEADER_LEN) {
            self.refill(window, offset, RECORD_HEADER_LEN)?;
        }
        if !inside(window, RECORD_HEADER_LEN) {
            return Err(format!(
                "{}: record at offset {offset} is past the end",
                self.path.display()
            ));
        }
        let at = (offset - window.start) as usize;
        let prefix: [u8; RECORD_HEADER_LEN] = window.bytes[at..at + RECORD_HEADER_LEN]
            .try_into()
            .expect("slice of the header length");
        let (len, crc) = split_record_header(prefix);
        if !length_is_valid(len) {
            return Err(Torn::BadLength(len).describe());
        }
        let total = RECORD_HEADER_LEN + len as usize;
        if !inside(window, total) {
            self.refill(window, offset, total)?;
            if !inside(window, total) {
                return Err(Torn::ShortPayload(len).describe());
            }
        }
        let at = (offset - window.start) as usize;
        let payload = &window.bytes[at + RECORD_HEADER_LEN..at + total];
        if record_crc(len, payload) != crc {
            return Err(Torn::ChecksumMismatch.describe());
        }
        decode_payload(payload)
    }
}

impl EntryReader for LogReader {
    fn read_at(&self, offset: u64) -> Result<Entry, String> {
        // A poisoned lock only means another reader panicked mid-read; the window is then
        // merely stale, which the retry below handles.
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.record_from(&mut window, offset) {
            Ok(entry) => Ok(entry),
            Err(_) => {
                // Perhaps a stale window (bytes of a failed append, since cut and rewritten):
                // read afresh before calling it damage.
                self.refill(&mut window, offset, RECORD_HEADER_LEN)?;
                self.record_from(&mut window, offset)
            }
        }
    }
}

/// A record with a correct checksum around an arbitrary payload, as a buggy or malicious
/// writer could produce (for tests here and in `verify`).
#[cfg(test)]
pub(crate) fn raw_record(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::entry::{new_entry_id, Hlc};
    use tempfile::TempDir;

    const GROUP: &str = "raid";

    fn entry(i: u64) -> Entry {
        let ms = 1_700_000_000_000 + i;
        Entry {
            id: new_entry_id(ms, [i as u8; 10]),
            at: Hlc::new(ms, 0),
            actor: "alice".into(),
            target: format!("Player{i}"),
            delta: i as i64 + 1,
            new_total: 10 * (i as i64 + 1),
            reason: format!("raid night {i}"),
            kind: crate::proto::entry::EntryKind::Points,
            seal: None,
        }
    }

    fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
        range.map(entry).collect()
    }

    fn encode(e: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(e, &mut out).unwrap();
        out
    }

    fn header() -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&[0; 6]);
        h
    }

    fn open_in(dir: &Path) -> Result<(LogStore, Vec<Entry>, OpenReport), StoreError> {
        LogStore::open(StateLock::acquire(dir)?, GROUP)
    }

    fn log_file(dir: &Path) -> PathBuf {
        LogStore::log_path(dir, GROUP)
    }

    /// A power cut under batch fsync can leave a hole in the appends made since the last
    /// fdatasync. The log's synced mark tells that from damage to durable records: the
    /// first is repaired at open (every intact record kept, the damaged file kept aside),
    /// the second still stops the open.
    #[test]
    fn a_hole_past_the_synced_length_is_repaired_at_open_and_one_before_it_refused() {
        // (victims, refused): a hole among the unsynced appends only; one among the synced
        // records; one of each (the first still stops the open).
        for (victims, refused) in [(&[12][..], false), (&[5][..], true), (&[3, 12][..], true)] {
            let name = format!("{victims:?}");
            let dir = TempDir::new().unwrap();
            let (synced_len, offsets) = {
                let (mut store, _, _) = open_in(dir.path()).unwrap();
                let mut offsets = store.append_located(&entries(0..10)).unwrap();
                store.sync().unwrap();
                let synced_len = store.len_bytes();
                offsets.extend(store.append_located(&entries(10..15)).unwrap());
                (synced_len, offsets)
            };
            assert_eq!(
                synced_mark(&log_file(dir.path())),
                Some(synced_len),
                "{name}"
            );
            // A record's bytes lost: zeros where the power cut left them unwritten. Written in
            // place, so the log stays the same file (the mark names its inode).
            let mut bytes = fs::read(log_file(dir.path())).unwrap();
            for &victim in victims {
                let at = offsets[victim] as usize;
                bytes[at + 2..at + 20].fill(0);
            }
            let log = OpenOptions::new()
                .write(true)
                .open(log_file(dir.path()))
                .unwrap();
            std::os::unix::fs::FileExt::write_all_at(&log, &bytes, 0).unwrap();
            drop(log);
            let opened = open_in(dir.path());
            if refused {
                assert!(
                    matches!(opened, Err(StoreError::Corrupt { .. })),
                    "damage to synced records is refused: {opened:?}"
                );
                continue;
            }
            let (_, loaded, _) = opened.unwrap();
            let mut expected = entries(0..15);
            expected.remove(victims[0]);
            assert_eq!(loaded, expected, "every intact record kept");
            let kept_aside = fs::read_dir(dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains(".damaged-"));
            assert!(kept_aside, "the damaged file is kept");
            // The repaired log is clean, and marked as synced through its end.
            let (store, again, report) = open_in(dir.path()).unwrap();
            assert_eq!(again, expected);
            assert_eq!(report.truncated_bytes, 0);
            assert_eq!(synced_mark(&log_file(dir.path())), Some(store.len_bytes()));
        }
    }

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

    /// Writes `bytes` as the group's log in a fresh directory.
    fn dir_with_log(bytes: &[u8]) -> TempDir {
        let dir = TempDir::new().unwrap();
        fs::write(log_file(dir.path()), bytes).unwrap();
        dir
    }

    /// Header plus records for `es`, and the end offset of each record.
    fn log_bytes(es: &[Entry]) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = header();
        let mut ends = Vec::new();
        for e in es {
            bytes.extend_from_slice(&encode(e));
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn expect_corrupt(dir: &Path, expected_offset: u64) -> String {
        match open_in(dir) {
            Err(err @ StoreError::Corrupt { offset, .. }) => {
                assert_eq!(offset, expected_offset, "{err}");
                err.to_string()
            }
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok((_, es, report)) => panic!("expected Corrupt, opened {} {report:?}", es.len()),
        }
    }

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
        store.sync().unwrap();
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
        assert!(store.sync().is_err());
        assert!(store.begin_background_sync().is_err());
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
            }
        );
        assert_eq!(fs::read(store.path()).unwrap(), log_bytes(&all).0);
    }

    #[test]
    fn torn_tail_at_every_byte_offset_is_cut_to_the_last_whole_record() {
        let all = entries(0..5);
        let (bytes, ends) = log_bytes(&all);
        for cut in HEADER_LEN..=bytes.len() as u64 {
            let dir = dir_with_log(&bytes[..cut as usize]);
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            let valid_end = if whole == 0 {
                HEADER_LEN
            } else {
                ends[whole - 1]
            };
            let (mut store, loaded, report) =
                open_in(dir.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(loaded, all[..whole], "cut at {cut}");
            assert_eq!(report.entries, whole, "cut at {cut}");
            assert_eq!(report.truncated_bytes, cut - valid_end, "cut at {cut}");
            assert_eq!(report.file_bytes, valid_end, "cut at {cut}");
            assert_eq!(store.len_bytes(), valid_end, "cut at {cut}");
            assert_eq!(
                fs::metadata(log_file(dir.path())).unwrap().len(),
                valid_end,
                "cut at {cut}"
            );

            let extra = entry(99);
            store.append(std::slice::from_ref(&extra)).unwrap();
            store.sync().unwrap();
            drop(store);
            let (_, reloaded, report) =
                open_in(dir.path()).unwrap_or_else(|e| panic!("reopen after cut at {cut}: {e}"));
            let mut expected = all[..whole].to_vec();
            expected.push(extra);
            assert_eq!(reloaded, expected, "cut at {cut}");
            assert_eq!(report.truncated_bytes, 0, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_and_zero_filled_tails_are_cut() {
        let all = entries(0..4);
        let (bytes, ends) = log_bytes(&all);
        let tails = [
            noise(3000, 0x9e37_79b9_7f4a_7c15),
            noise(5, 42),
            vec![0u8; 4096],
        ];
        for tail in tails {
            let mut damaged = bytes.clone();
            damaged.extend_from_slice(&tail);
            let dir = dir_with_log(&damaged);
            let (_, loaded, report) = open_in(dir.path()).unwrap();
            assert_eq!(loaded, all);
            assert_eq!(report.truncated_bytes, tail.len() as u64);
            assert_eq!(report.file_bytes, ends[3]);
            assert_eq!(fs::read(log_file(dir.path())).unwrap(), bytes);
        }
    }

    #[test]
    fn flipped_byte_anywhere_in_a_middle_record_is_corruption_at_its_start() {
        let all = entries(0..5);
        let (bytes, ends) = log_bytes(&all);
        let (start, end) = (ends[0], ends[1]);
        for pos in start..end {
            let mut damaged = bytes.clone();
            damaged[pos as usize] ^= 0xff;
            let dir = dir_with_log(&damaged);
            let msg = expect_corrupt(dir.path(), start);
            let path = log_file(dir.path()).display().to_string();
            assert!(msg.contains(&path), "byte {pos}: {msg}");
            assert!(
                msg.contains(&format!("offset {start}")),
                "byte {pos}: {msg}"
            );
            assert!(msg.contains("lootsync verify"), "byte {pos}: {msg}");
            // Opening must not have repaired anything.
            assert_eq!(fs::read(log_file(dir.path())).unwrap(), damaged);
        }
    }

    #[test]
    fn flipped_byte_in_the_last_record_looks_like_a_torn_tail() {
        // Nothing follows the damage, so it cannot be told apart from an unfinished append;
        // pin that behaviour so a change to it is deliberate.
        let all = entries(0..3);
        let (mut bytes, ends) = log_bytes(&all);
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        let dir = dir_with_log(&bytes);
        let (_, loaded, report) = open_in(dir.path()).unwrap();
        assert_eq!(loaded, all[..2]);
        assert_eq!(report.truncated_bytes, ends[2] - ends[1]);
    }

    #[test]
    fn checksummed_but_bad_payload_is_corruption_even_at_the_tail() {
        let mut empty_target = entry(50);
        empty_target.target = String::new();
        let mut trailing = postcard::to_stdvec(&entry(51)).unwrap();
        trailing.push(0);
        let bad_payloads = [
            postcard::to_stdvec(&empty_target).unwrap(),
            vec![0xff; 12],
            trailing,
        ];
        let good = entries(0..2);
        for payload in &bad_payloads {
            let (mut bytes, ends) = log_bytes(&good);
            bytes.extend_from_slice(&raw_record(payload));
            // As the last record: a torn write could not have produced a matching checksum.
            let dir = dir_with_log(&bytes);
            expect_corrupt(dir.path(), ends[1]);
            // In the middle.
            bytes.extend_from_slice(&encode(&entry(9)));
            let dir = dir_with_log(&bytes);
            let msg = expect_corrupt(dir.path(), ends[1]);
            assert!(msg.contains("checksum matches"), "{msg}");
        }
    }

    #[test]
    fn invalid_lengths_followed_by_records_are_corruption() {
        let good = entries(0..2);
        for bad_len in [0u32, MAX_RECORD_BYTES as u32 + 1, u32::MAX] {
            let (mut bytes, ends) = log_bytes(&good);
            bytes.extend_from_slice(&bad_len.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(&encode(&entry(7)));
            let dir = dir_with_log(&bytes);
            let msg = expect_corrupt(dir.path(), ends[1]);
            assert!(msg.contains("invalid record length"), "{msg}");
        }
    }

    #[test]
    fn intact_record_is_found_across_scan_window_boundaries() {
        const OVERLAP: usize = RECORD_HEADER_LEN + MAX_RECORD_BYTES;
        let record = encode(&entry(3));
        let from = 1000u64;
        for rel in [
            0,
            SCAN_BUFFER_BYTES - 1,
            SCAN_BUFFER_BYTES,
            SCAN_BUFFER_BYTES + 1,
            // Straddling the end of the first read: only found if the window overlaps.
            SCAN_BUFFER_BYTES + OVERLAP - 10,
            SCAN_BUFFER_BYTES + OVERLAP - 1,
            2 * SCAN_BUFFER_BYTES + 100,
        ] {
            let at = from as usize + rel;
            let mut bytes = vec![0u8; at];
            bytes.extend_from_slice(&record);
            bytes.extend_from_slice(&[0; 3]);
            let dir = TempDir::new().unwrap();
            let path = dir.path().join("f");
            fs::write(&path, &bytes).unwrap();
            let mut file = File::open(&path).unwrap();
            assert_eq!(
                find_intact_record(&mut file, from).unwrap(),
                Some(at as u64),
                "record at {rel} past the start"
            );
            // A record that ends past end of file must not be found.
            bytes.truncate(bytes.len() - 4);
            fs::write(&path, &bytes).unwrap();
            let mut file = File::open(&path).unwrap();
            assert_eq!(find_intact_record(&mut file, from).unwrap(), None);
        }
    }

    #[test]
    fn lock_is_exclusive_even_within_one_process() {
        let dir = TempDir::new().unwrap();
        let state = dir.path().join("nested").join("state");
        let first = StateLock::acquire(&state).unwrap();
        assert_eq!(first.state_dir(), state);
        match StateLock::acquire(&state) {
            Err(err @ StoreError::Locked { .. }) => {
                let msg = err.to_string();
                let lock_path = state.join(LOCK_FILE_NAME).display().to_string();
                assert!(msg.contains(&lock_path), "{msg}");
                assert!(msg.contains("locked by another lootsync process"), "{msg}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        // The store keeps the lock it was opened with.
        let (store, _, _) = LogStore::open(first, GROUP).unwrap();
        assert!(matches!(
            StateLock::acquire(&state),
            Err(StoreError::Locked { .. })
        ));
        drop(store);
        let again = StateLock::acquire(&state).unwrap();
        assert_eq!(again.state_dir(), state);
    }

    #[test]
    fn bad_headers_are_rejected() {
        let mut wrong_magic = header();
        wrong_magic[0] = b'X';
        let mut wrong_version = header();
        wrong_version[8] = 9;
        let mut records_without_magic = wrong_magic.clone();
        records_without_magic.extend_from_slice(&encode(&entry(1)));
        let cases: [(&[u8], &str); 5] = [
            (&wrong_magic, "magic"),
            (&wrong_version, "version 9"),
            (&records_without_magic, "magic"),
            (b"hello", "shorter than"),
            (
                &header()[..9].iter().map(|b| b ^ 1).collect::<Vec<_>>(),
                "shorter than",
            ),
        ];
        for (bytes, needle) in cases {
            let dir = dir_with_log(bytes);
            match open_in(dir.path()) {
                Err(err @ StoreError::BadHeader { .. }) => {
                    let msg = err.to_string();
                    assert!(msg.contains(needle), "{msg}");
                    assert!(msg.contains(&log_file(dir.path()).display().to_string()));
                }
                other => panic!("expected BadHeader for {bytes:?}, got {other:?}"),
            }
            // The file is left alone for a human to look at.
            assert_eq!(fs::read(log_file(dir.path())).unwrap(), bytes);
        }
    }

    #[test]
    fn empty_or_torn_header_starts_a_new_log() {
        for len in 0..HEADER_LEN as usize {
            let dir = dir_with_log(&header()[..len]);
            let (mut store, loaded, report) =
                open_in(dir.path()).unwrap_or_else(|e| panic!("header cut at {len}: {e}"));
            assert!(loaded.is_empty());
            assert_eq!(report.file_bytes, HEADER_LEN);
            assert_eq!(fs::read(log_file(dir.path())).unwrap(), header());
            store.append(&[entry(1)]).unwrap();
            drop(store);
            let (_, loaded, _) = open_in(dir.path()).unwrap();
            assert_eq!(loaded, [entry(1)]);
        }
    }

    #[test]
    fn repeated_records_are_skipped_and_counted_but_kept_on_disk() {
        let (a, b, c) = (entry(1), entry(2), entry(3));
        let mut b_changed = b.clone();
        b_changed.reason = "same id, different body".into();
        let dir = TempDir::new().unwrap();
        {
            let (mut store, _, _) = open_in(dir.path()).unwrap();
            store
                .append(&[
                    a.clone(),
                    b.clone(),
                    a.clone(),
                    c.clone(),
                    b_changed.clone(),
                ])
                .unwrap();
            store.sync().unwrap();
        }
        let size = fs::metadata(log_file(dir.path())).unwrap().len();
        let (_, loaded, report) = open_in(dir.path()).unwrap();
        // A different body under a reused id is a different entry (identity is the content
        // digest), so only the byte-identical repeats of a and b are skipped.
        assert_eq!(loaded, [a, b, c, b_changed]);
        assert_eq!(report.entries, 4);
        assert_eq!(report.duplicates_skipped, 1);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(report.file_bytes, size);
        assert_eq!(fs::metadata(log_file(dir.path())).unwrap().len(), size);
    }

    #[test]
    fn invalid_entries_are_refused_before_anything_is_written() {
        let dir = TempDir::new().unwrap();
        let (mut store, _, _) = open_in(dir.path()).unwrap();
        let mut bad = entry(2);
        bad.delta = 0;
        let err = store.append(&[entry(1), bad]).unwrap_err();
        match &err {
            StoreError::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::InvalidInput)
            }
            other => panic!("expected Io(InvalidInput), got {other}"),
        }
        assert_eq!(store.len_bytes(), HEADER_LEN);
        assert_eq!(fs::metadata(store.path()).unwrap().len(), HEADER_LEN);
        store.append(&[]).unwrap();
        assert_eq!(store.len_bytes(), HEADER_LEN);
    }

    #[test]
    fn group_names_cannot_escape_the_state_directory() {
        let dir = TempDir::new().unwrap();
        for group in ["", "..", "../x", "a/b", ".hidden"] {
            let lock = StateLock::acquire(dir.path()).unwrap();
            assert!(
                matches!(LogStore::open(lock, group), Err(StoreError::Io { .. })),
                "{group:?}"
            );
        }
        let lock = StateLock::acquire(dir.path()).unwrap();
        let (store, _, _) = LogStore::open(lock, "Raid Team 1").unwrap();
        assert_eq!(store.path(), dir.path().join("Raid Team 1.lootlog"));
    }

    #[test]
    fn indexed_open_reads_bodies_back_from_the_file() {
        let dir = TempDir::new().unwrap();
        let mut all: Vec<Entry> = entries(0..20);
        {
            let (mut store, _, _) = open_in(dir.path()).unwrap();
            // Out of key order on disk, plus a duplicate id, plus a torn tail below.
            let mut shuffled = all.clone();
            shuffled.reverse();
            shuffled.push(all[4].clone());
            store.append(&shuffled).unwrap();
            store.sync().unwrap();
        }
        let log = log_file(dir.path());
        let len = fs::metadata(&log).unwrap().len();
        let mut bytes = fs::read(&log).unwrap();
        bytes.extend_from_slice(&encode(&entry(77))[..9]);
        fs::write(&log, &bytes).unwrap();

        let lock = StateLock::acquire(dir.path()).unwrap();
        let (mut store, mut ledger, report) =
            LogStore::open_indexed(lock, GROUP, &mut |_, _| {}).unwrap();
        assert_eq!(report.entries, 20);
        assert_eq!(report.duplicates_skipped, 1);
        assert_eq!(report.truncated_bytes, 9);
        assert_eq!(store.len_bytes(), len);
        assert_eq!(ledger.resident_len(), 0);
        all.sort_by_key(Entry::key);
        assert_eq!(ledger.iter().collect::<Vec<_>>(), all);
        assert_eq!(ledger.get(&all[7].digest()).as_ref(), Some(&all[7]));

        // A new entry: appended, inserted, marked stored, then read back from the file.
        let extra = entry(50);
        let offsets = store.append_located(std::slice::from_ref(&extra)).unwrap();
        assert_eq!(offsets, [len]);
        assert!(ledger.insert(extra.clone()));
        ledger.mark_stored(&extra.key(), offsets[0]);
        assert_eq!(ledger.resident_len(), 0);
        assert_eq!(ledger.get(&extra.digest()), Some(extra));
    }

    #[test]
    fn log_reader_checks_what_it_reads() {
        let dir = TempDir::new().unwrap();
        let all = entries(0..3);
        let (bytes, ends) = log_bytes(&all);
        let path = dir.path().join("log");
        fs::write(&path, &bytes).unwrap();
        let reader = LogReader::open(&path).unwrap();
        assert_eq!(reader.read_at(HEADER_LEN).unwrap(), all[0]);
        assert_eq!(reader.read_at(ends[1]).unwrap(), all[2]);
        assert!(reader.read_at(ends[1] + 1).is_err(), "not a record start");
        assert!(reader.read_at(ends[2]).is_err(), "past the end");
        let mut damaged = bytes.clone();
        damaged[ends[0] as usize + 12] ^= 1;
        fs::write(&path, &damaged).unwrap();
        let reader = LogReader::open(&path).unwrap();
        let err = reader.read_at(ends[0]).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn log_reader_window_follows_a_growing_log_and_never_serves_stale_bytes() {
        let dir = TempDir::new().unwrap();
        let all = entries(0..4);
        let (bytes, ends) = log_bytes(&all);
        let path = dir.path().join("log");
        // Two records, then half of a third (a failed append's leftovers).
        fs::write(&path, &bytes[..ends[1] as usize + 5]).unwrap();
        let reader = LogReader::open(&path).unwrap();
        assert_eq!(reader.read_at(HEADER_LEN).unwrap(), all[0]);
        assert!(reader.read_at(ends[1]).is_err(), "half a record");
        // The leftovers are cut and other bytes written in their place: the window, which
        // saw the old bytes, must not answer from them.
        let mut other = bytes[..ends[1] as usize].to_vec();
        let mut tail = Vec::new();
        encode_record(&all[3], &mut tail).unwrap();
        other.extend_from_slice(&tail);
        fs::write(&path, &other).unwrap();
        assert_eq!(reader.read_at(ends[1]).unwrap(), all[3]);
        assert_eq!(reader.read_at(ends[0]).unwrap(), all[1]);
        // Many records in one window: all read back, in any order.
        let many = entries(0..500);
        let (bytes, ends) = log_bytes(&many);
        fs::write(&path, &bytes).unwrap();
        let reader = LogReader::open(&path).unwrap();
        for i in (0..500).rev().step_by(7).chain(0..500) {
            let at = if i == 0 { HEADER_LEN } else { ends[i - 1] };
            assert_eq!(reader.read_at(at).unwrap(), many[i]);
        }
    }

    #[test]
    fn a_version_1_log_is_upgraded_once_and_its_entries_kept() {
        // A v1 record is today's payload without the trailing kind and seal bytes.
        let es: Vec<Entry> = (1..=5).map(entry).collect();
        let mut bytes = header();
        bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
        for e in &es {
            let mut payload = postcard::to_stdvec(e).unwrap();
            assert_eq!(payload.split_off(payload.len() - 2), [0, 0]);
            let len = (payload.len() as u32).to_le_bytes();
            bytes.extend_from_slice(&len);
            bytes.extend_from_slice(
                &crc32c::crc32c_append(crc32c::crc32c(&len), &payload).to_le_bytes(),
            );
            bytes.extend_from_slice(&payload);
        }
        let dir = dir_with_log(&bytes);
        let (_, read, _) = open_in(dir.path()).unwrap();
        assert_eq!(read, es, "same entries, same digests");
        let upgraded = fs::read(log_file(dir.path())).unwrap();
        assert_eq!(
            u16::from_le_bytes([upgraded[8], upgraded[9]]),
            FORMAT_VERSION
        );
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.contains(".v1-"))
            .collect();
        assert_eq!(kept.len(), 1, "the old file is kept");
        assert_eq!(fs::read(dir.path().join(&kept[0])).unwrap(), bytes);

        // A torn final record is dropped, as on a normal open.
        let torn = &bytes[..bytes.len() - 3];
        let dir = dir_with_log(torn);
        let (_, read, _) = open_in(dir.path()).unwrap();
        assert_eq!(read, es[..4]);

        // Damage with intact records after it is refused and the file left alone.
        let mut damaged = bytes.clone();
        damaged[HEADER_LEN as usize + 12] ^= 0xff;
        let dir = dir_with_log(&damaged);
        let err = open_in(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 1 log cannot be upgraded"), "{err}");
        assert_eq!(fs::read(log_file(dir.path())).unwrap(), damaged);
    }
}
