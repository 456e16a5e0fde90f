//! `lootsync verify` and `lootsync repair`: a full check of a log and a repair that keeps
//! every intact record.
//!
//! Opening a log ([`LogStore::open`]) stops at the first damaged record, because a daemon
//! must not guess. Verify goes on past damage: after a bad record it looks for the next
//! intact one (the same search open uses to tell a torn tail from damage) and carries on, so
//! one report lists every damaged region and counts every intact entry. Repair writes those
//! intact entries, byte for byte, to a fresh log and swaps it in atomically, after keeping the
//! damaged file under a new name. Entries lost in the damaged regions come back from peers
//! through ordinary sync.

use crate::proto::entry::{Digest, Hlc};
use crate::store::{
    check_header, decode_payload, find_intact_record, io_err, length_is_valid, read_up_to,
    record_crc, split_record_header, sync_parent_dir, HeaderState, LogStore, StateLock, StoreError,
    Torn, FORMAT_VERSION, HEADER_LEN, MAGIC, PROGRESS_STEP_BYTES, RECORD_HEADER_LEN,
    SCAN_BUFFER_BYTES,
};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A stretch of the log that holds no intact record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRegion {
    /// Byte offset where the damage starts (where a record was expected).
    pub offset: u64,
    /// Length of the damaged stretch in bytes, up to the next intact record.
    pub bytes: u64,
    /// What is wrong with the record at `offset`.
    pub reason: String,
}

/// Everything [`verify`] found in one log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The log file.
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// Distinct entries in intact records.
    pub entries: usize,
    /// Distinct players (entry targets).
    pub players: usize,
    /// Earliest entry timestamp, if there is any entry.
    pub first_at: Option<Hlc>,
    /// Latest entry timestamp, if there is any entry.
    pub last_at: Option<Hlc>,
    /// Intact records repeating an earlier entry byte for byte: harmless (replay skips them).
    /// (A different body under an earlier entry's `id` is a different entry, not a repeat:
    /// entries are identified by their content digest.)
    pub identical_duplicates: usize,
    /// Damage followed by intact records, in file order.
    pub damaged: Vec<DamagedRegion>,
    /// Unreadable bytes at the very end with no intact record after them: what an
    /// interrupted append leaves. Opening the log cuts them automatically.
    pub torn_tail: Option<DamagedRegion>,
}

impl VerifyReport {
    /// No damage: every record is intact. A torn tail does not count, because opening the
    /// log repairs it without losing an entry that was ever acknowledged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }

    /// Whether `repair` would change the file.
    pub fn needs_repair(&self) -> bool {
        !self.is_clean() || self.torn_tail.is_some() || self.identical_duplicates > 0
    }
}

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The log needed nothing; the file was not touched.
    AlreadyClean(VerifyReport),
    /// A clean log replaced the damaged one.
    Repaired {
        /// What the damaged log held (the entries kept are `report.entries`).
        report: VerifyReport,
        /// Where the damaged file now is (it is never deleted).
        kept_aside: PathBuf,
        /// Size of the clean log.
        new_bytes: u64,
    },
}

/// Receives each intact record with a new id: the raw record bytes and its offset.
type RecordSink<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), StoreError>;

/// Checks the whole log of `group`: framing, checksums, decoding, entry bounds and duplicate
/// ids, going on past damage. `progress(bytes_done, bytes_total)` is called every megabyte
/// or so. Takes the lock by reference: nothing may append while the file is read.
pub fn verify(
    lock: &StateLock,
    group: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, StoreError> {
    let path = existing_log(lock, group)?;
    scan(&path, progress, &mut |_| Ok(()))
}

/// Repairs the log of `group` if [`verify`] finds anything to repair: writes every intact
/// record with a new id, in file order, to a temporary file and syncs it; hard-links the
/// damaged log to `<group>.lootlog.damaged-<unix ms>` (never deleted); atomically renames the
/// clean file over the log; syncs the directory. A crash at any point leaves either the old
/// or the new log in place, and the damaged bytes always survive somewhere.
pub fn repair(
    lock: &StateLock,
    group: &str,
    unix_ms: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RepairOutcome, StoreError> {
    let path = existing_log(lock, group)?;
    let tmp_path = path.with_extension("lootlog.repair-tmp");
    // A temporary file left by an interrupted repair holds nothing the log does not.
    let tmp = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600) // the raid's history is nobody else's business
        .open(&tmp_path)
        .map_err(io_err(&tmp_path, "creating"))?;
    // Same owner as the log it replaces: `sudo lootsync repair` must not leave a log the
    // service user cannot open.
    let original = fs::metadata(&path).map_err(io_err(&path, "reading the owner of"))?;
    std::os::unix::fs::fchown(
        &tmp,
        Some(std::os::unix::fs::MetadataExt::uid(&original)),
        Some(std::os::unix::fs::MetadataExt::gid(&original)),
    )
    .map_err(io_err(&tmp_path, "giving the log's owner"))?;
    let mut out = BufWriter::with_capacity(SCAN_BUFFER_BYTES, tmp);
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.write_all(&header)
        .map_err(io_err(&tmp_path, "writing"))?;
    let mut new_bytes = HEADER_LEN;
    let report = scan(&path, progress, &mut |record| {
        new_bytes += record.len() as u64;
        out.write_all(record).map_err(io_err(&tmp_path, "writing"))
    });
    let report = match report {
        Ok(report) if report.needs_repair() => report,
        other => {
            drop(out);
            let _ = fs::remove_file(&tmp_path);
            return other.map(RepairOutcome::AlreadyClean);
        }
    };
    let tmp = out
        .into_inner()
        .map_err(|e| io_err(&tmp_path, "writing")(e.into_error()))?;
    tmp.sync_all().map_err(io_err(&tmp_path, "syncing"))?;
    drop(tmp);

    let aside = path.with_extension(format!("lootlog.damaged-{unix_ms}"));
    // A hard link keeps the damaged bytes under the new name before the log name is reused;
    // it fails rather than overwrite an existing file.
    fs::hard_link(&path, &aside).map_err(io_err(&aside, "keeping the damaged log as"))?;
    sync_parent_dir(&aside)?;
    fs::rename(&tmp_path, &path).map_err(io_err(&path, "replacing"))?;
    sync_parent_dir(&path)?;
    // The old log's synced length means nothing for the new file (offsets moved); the next
    // open records a fresh one.
    let _ = fs::remove_file(crate::store::synced_mark_path(&path));
    Ok(RepairOutcome::Repaired {
        report,
        kept_aside: aside,
        new_bytes,
    })
}

fn existing_log(lock: &StateLock, group: &str) -> Result<PathBuf, StoreError> {
    crate::store::check_group_name(lock.state_dir(), group)?;
    let path = LogStore::log_path(lock.state_dir(), group);
    if !path.exists() {
        return Err(StoreError::Io {
            source: io::Error::new(io::ErrorKind::NotFound, "no log file for this group"),
            path,
            action: "opening log",
        });
    }
    Ok(path)
}

/// The sequential scan shared by verify and repair.
fn scan(
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
    sink: RecordSink<'_>,
) -> Result<VerifyReport, StoreError> {
    let mut file = File::open(path).map_err(io_err(path, "opening log"))?;
    let file_len = file
        .metadata()
        .map_err(io_err(path, "reading metadata of"))?
        .len();
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        file_bytes: file_len,
        ..VerifyReport::default()
    };
    if let HeaderState::Unwritten = check_header(path, &mut file, file_len)? {
        return Ok(report);
    }
    let read_err = io_err(path, "reading log");
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, &file);
    reader
        .seek(SeekFrom::Start(HEADER_LEN))
        .map_err(&read_err)?;
    // Entries are identified by content digest: a repeated digest is a byte-identical repeat.
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut players: HashSet<String> = HashSet::new();
    let mut offset = HEADER_LEN;
    let mut next_report = 0;
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + 2048);
    loop {
        if offset >= next_report {
            progress(offset, file_len);
            next_report = offset + PROGRESS_STEP_BYTES;
        }
        // A record whose checksum matches but whose entry is bad was written whole: it is
        // damage, not an unfinished append, even at the very end (opening the log refuses
        // it too, so verify must not call it a torn tail).
        let mut written_whole = false;
        let problem = match read_record(&mut reader, &mut record).map_err(&read_err)? {
            None => break,
            Some(Err(torn)) => torn.describe(),
            Some(Ok(())) => match decode_payload(&record[RECORD_HEADER_LEN..]) {
                Err(reason) => {
                    written_whole = true;
                    format!("{reason}, though its checksum matches")
                }
                Ok(entry) => {
                    match seen.insert(entry.digest()) {
                        false => report.identical_duplicates += 1,
                        true => {
                            report.first_at =
                                Some(report.first_at.map_or(entry.at, |a| a.min(entry.at)));
                            report.last_at =
                                Some(report.last_at.map_or(entry.at, |a| a.max(entry.at)));
                            if !players.contains(&entry.target) {
                                players.insert(entry.target);
                            }
                            sink(&record)?;
                        }
                    }
                    offset += record.len() as u64;
                    continue;
                }
            },
        };
        // No intact record at `offset`: find where intact records resume, if anywhere.
        let resume = find_intact_record(reader.get_mut(), offset + 1)
            .map_err(io_err(path, "scanning past a damaged record in"))?;
        let resume = match resume {
            None if written_whole => Some((offset + record.len() as u64).min(file_len)),
            other => other,
        };
        match resume {
            Some(next) => {
                report.damaged.push(DamagedRegion {
                    offset,
                    bytes: next - offset,
                    reason: problem,
                });
                offset = next;
                reader.seek(SeekFrom::Start(next)).map_err(&read_err)?;
            }
            None => {
                report.torn_tail = Some(DamagedRegion {
                    offset,
                    bytes: file_len.saturating_sub(offset),
                    reason: problem,
                });
                break;
            }
        }
    }
    progress(file_len, file_len);
    report.entries = seen.len();
    report.players = players.len();
    Ok(report)
}

/// Reads one record into `record` (prefix and payload). `None` at a clean end of file;
/// `Some(Err)` when the bytes there are not a whole record with a matching checksum.
fn read_record(
    reader: &mut BufReader<&File>,
    record: &mut Vec<u8>,
) -> io::Result<Option<Result<(), Torn>>> {
    record.resize(RECORD_HEADER_LEN, 0);
    let got = read_up_to(reader, &mut record[..])?;
    if got == 0 {
        return Ok(None);
    }
    if got < RECORD_HEADER_LEN {
        return Ok(Some(Err(Torn::ShortHeader)));
    }
    let prefix: [u8; RECORD_HEADER_LEN] = record[..RECORD_HEADER_LEN]
        .try_into()
        .expect("resized to the prefix length");
    let (len, crc) = split_record_header(prefix);
    if !length_is_valid(len) {
        return Ok(Some(Err(Torn::BadLength(len))));
    }
    record.resize(RECORD_HEADER_LEN + len as usize, 0);
    let got = read_up_to(reader, &mut record[RECORD_HEADER_LEN..])?;
    if got < len as usize {
        return Ok(Some(Err(Torn::ShortPayload(len))));
    }
    if record_crc(len, &record[RECORD_HEADER_LEN..]) != crc {
        return Ok(Some(Err(Torn::ChecksumMismatch)));
    }
    Ok(Some(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::entry::{new_entry_id, Entry};
    use crate::store::encode_record;
    use tempfile::TempDir;

    const GROUP: &str = "raid";

    fn entry(i: u64) -> Entry {
        let ms = 1_700_000_000_000 + i;
        Entry {
            id: new_entry_id(ms, [i as u8; 10]),
            at: Hlc::new(ms, 0),
            actor: "alice".into(),
            target: format!("Player{}", i % 3),
            delta: i as i64 + 1,
            new_total: 0,
            reason: format!("raid night {i}"),
            kind: crate::proto::entry::EntryKind::Points,
            seal: None,
        }
    }

    fn header() -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&[0; 6]);
        h
    }

    fn record(e: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(e, &mut out).unwrap();
        out
    }

    /// Header plus records of entries 0..n; returns the bytes and each record's offset.
    fn log_of(n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = header();
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(bytes.len() as u64);
            bytes.extend_from_slice(&record(&entry(i)));
        }
        (bytes, starts)
    }

    fn dir_with(bytes: &[u8]) -> TempDir {
        let dir = TempDir::new().unwrap();
        fs::write(LogStore::log_path(dir.path(), GROUP), bytes).unwrap();
        dir
    }

    fn verify_in(dir: &Path) -> VerifyReport {
        let lock = StateLock::acquire(dir).unwrap();
        verify(&lock, GROUP, &mut |_, _| {}).unwrap()
    }

    #[test]
    fn clean_log_summary() {
        let (bytes, _) = log_of(10);
        let dir = dir_with(&bytes);
        let mut calls = 0;
        let lock = StateLock::acquire(dir.path()).unwrap();
        let report = verify(&lock, GROUP, &mut |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
        assert!(calls >= 2, "progress reported at start and end");
        assert!(report.is_clean() && !report.needs_repair(), "{report:?}");
        assert_eq!(report.entries, 10);
        assert_eq!(report.players, 3);
        assert_eq!(report.file_bytes, bytes.len() as u64);
        assert_eq!(report.first_at, Some(entry(0).at));
        assert_eq!(report.last_at, Some(entry(9).at));
        // Repair of a clean log touches nothing and leaves no file behind.
        let outcome = repair(&lock, GROUP, 1, &mut |_, _| {}).unwrap();
        assert!(matches!(outcome, RepairOutcome::AlreadyClean(_)));
        assert_eq!(
            fs::read(LogStore::log_path(dir.path(), GROUP)).unwrap(),
            bytes
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "log + lock file"
        );
    }

    #[test]
    fn every_damaged_region_is_listed_and_repair_keeps_every_intact_record() {
        let (mut bytes, starts) = log_of(12);
        // Damage records 2 and 3 (one region), 7 (another) and cut the last one short.
        bytes[starts[2] as usize + 10] ^= 0x40;
        bytes[starts[3] as usize + 1] ^= 0x01;
        bytes[starts[7] as usize + 20] ^= 0xff;
        bytes.truncate(bytes.len() - 4);
        let dir = dir_with(&bytes);
        let report = verify_in(dir.path());
        assert!(!report.is_clean());
        assert_eq!(report.entries, 12 - 4);
        let regions: Vec<(u64, u64)> = report.damaged.iter().map(|d| (d.offset, d.bytes)).collect();
        assert_eq!(
            regions,
            [
                (starts[2], starts[4] - starts[2]),
                (starts[7], starts[8] - starts[7])
            ]
        );
        assert!(report.damaged[0].reason.contains("checksum"), "{report:?}");
        let tail = report.torn_tail.clone().unwrap();
        assert_eq!(tail.offset, starts[11]);

        // Owned by another user (as the service user's log is when root repairs it): the
        // new log keeps that owner. Only root can give files away, so only then.
        let log = LogStore::log_path(dir.path(), GROUP);
        let owner = (unsafe { libc::geteuid() } == 0).then(|| {
            std::os::unix::fs::chown(&log, Some(4242), Some(4243)).unwrap();
            (4242, 4243)
        });
        let lock = StateLock::acquire(dir.path()).unwrap();
        let outcome = repair(&lock, GROUP, 42, &mut |_, _| {}).unwrap();
        if let Some(owner) = owner {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::metadata(&log).unwrap();
            assert_eq!((meta.uid(), meta.gid()), owner);
        }
        let RepairOutcome::Repaired {
            kept_aside,
            new_bytes,
            ..
        } = outcome
        else {
            panic!("expected a repair, got {outcome:?}");
        };
        // The damaged file is kept as it was.
        assert_eq!(fs::read(&kept_aside).unwrap(), bytes);
        assert!(kept_aside
            .to_string_lossy()
            .ends_with("raid.lootlog.damaged-42"));
        let log = LogStore::log_path(dir.path(), GROUP);
        assert_eq!(fs::metadata(&log).unwrap().len(), new_bytes);
        assert!(!log.with_extension("lootlog.repair-tmp").exists());
        // The clean log opens and holds exactly the intact entries, in file order.
        let (_, loaded, report) = LogStore::open(lock, GROUP).unwrap();
        let expected: Vec<Entry> = [0, 1, 4, 5, 6, 8, 9, 10].into_iter().map(entry).collect();
        assert_eq!(loaded, expected);
        assert_eq!(report.truncated_bytes, 0);
        assert!(verify_in(dir.path()).is_clean());
    }

    #[test]
    fn identical_repeats_are_harmless_and_a_reused_id_is_another_entry() {
        let mut bytes = header();
        let a = entry(1);
        let mut a_changed = a.clone();
        a_changed.reason = "same id, other body".into();
        bytes.extend_from_slice(&record(&a));
        bytes.extend_from_slice(&record(&entry(2)));
        bytes.extend_from_slice(&record(&a));
        bytes.extend_from_slice(&record(&a_changed));
        let dir = dir_with(&bytes);
        let report = verify_in(dir.path());
        assert_eq!(report.entries, 3);
        assert_eq!(report.identical_duplicates, 1);
        assert!(report.is_clean());
        assert!(report.needs_repair(), "repair drops the identical repeat");

        let lock = StateLock::acquire(dir.path()).unwrap();
        repair(&lock, GROUP, 7, &mut |_, _| {}).unwrap();
        let (_, loaded, report) = LogStore::open(lock, GROUP).unwrap();
        assert_eq!(loaded, [a, entry(2), a_changed]);
        assert_eq!(report.duplicates_skipped, 0);
    }

    #[test]
    fn checksummed_garbage_and_bad_headers_are_reported() {
        let (mut bytes, _) = log_of(2);
        let bad_at = bytes.len() as u64;
        bytes.extend_from_slice(&crate::store::raw_record(&[0xff; 12]));
        bytes.extend_from_slice(&record(&entry(5)));
        let dir = dir_with(&bytes);
        let report = verify_in(dir.path());
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].offset, bad_at);
        assert!(report.damaged[0]
            .reason
            .contains("though its checksum matches"));
        assert_eq!(report.entries, 3);

        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        let dir = dir_with(&wrong);
        let lock = StateLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            verify(&lock, GROUP, &mut |_, _| {}),
            Err(StoreError::BadHeader { .. })
        ));
        // Repair does not touch a file that is not a lootsync log.
        assert!(repair(&lock, GROUP, 1, &mut |_, _| {}).is_err());
        assert_eq!(
            fs::read(LogStore::log_path(dir.path(), GROUP)).unwrap(),
            wrong
        );
    }

    #[test]
    fn checksummed_garbage_as_the_last_record_is_damage_like_open_says() {
        // Opening the log refuses such a tail (a torn write cannot match its checksum), so
        // verify must not call it clean.
        let (mut bytes, _) = log_of(2);
        let bad_at = bytes.len() as u64;
        bytes.extend_from_slice(&crate::store::raw_record(&[0xff; 12]));
        let dir = dir_with(&bytes);
        let report = verify_in(dir.path());
        assert!(!report.is_clean(), "{report:?}");
        assert!(report.torn_tail.is_none(), "{report:?}");
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].offset, bad_at);
        assert_eq!(report.damaged[0].bytes, bytes.len() as u64 - bad_at);
        assert_eq!(report.entries, 2);
        {
            let lock = StateLock::acquire(dir.path()).unwrap();
            assert!(matches!(
                LogStore::open(lock, GROUP),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn missing_log_is_an_error_not_an_empty_report() {
        let dir = TempDir::new().unwrap();
        let lock = StateLock::acquire(dir.path()).unwrap();
        let err = verify(&lock, GROUP, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("raid.lootlog"), "{err}");
    }
}
