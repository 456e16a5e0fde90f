//! `lootsync verify` and `lootsync repair`: a full check of a log and a repair that keeps
//! every intact record.
//!
//! Opening a log ([`crate::store::LogStore::open`]) stops at the first damaged record,
//! because a daemon must not guess. Verify goes on past damage: the scanner resumes at the
//! next intact record after a bad one (the same search open uses to tell a torn tail from
//! damage), so one report lists every damaged region and counts every intact entry. Repair
//! writes those intact entries, byte for byte, to a fresh log and swaps it in atomically,
//! after keeping the damaged file under a new name. Entries lost in the damaged regions come
//! back from peers through ordinary sync.

use crate::proto::digest::Digest;
use crate::proto::hlc::Hlc;
use crate::store::atomic::Replacement;
use crate::store::error::{io_err, Damage, StoreError};
use crate::store::format::{self, HeaderState, FORMAT_VERSION, HEADER_LEN};
use crate::store::lock::StateLock;
use crate::store::scanner::{read_header, Progress, RecordScanner, Scanned};
use crate::store::synced_mark::synced_mark_path;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// A stretch of the log that holds no intact record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRegion {
    /// Byte offset where the damage starts (where a record was expected).
    pub offset: u64,
    /// Length of the damaged stretch in bytes, up to the next intact record.
    pub bytes: u64,
    /// What is wrong with the record at `offset`.
    pub reason: Damage,
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

/// Receives the bytes of each intact record with a new entry.
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
    let mut out = Replacement::create(&path, path.with_extension("lootlog.repair-tmp"))?;
    out.write_all(&format::file_header(FORMAT_VERSION))?;
    let mut new_bytes = HEADER_LEN;
    let report = scan(&path, progress, &mut |record| {
        new_bytes += record.len() as u64;
        out.write_all(record)
    });
    let report = match report {
        Ok(report) if report.needs_repair() => report,
        other => {
            out.abandon();
            return other.map(RepairOutcome::AlreadyClean);
        }
    };
    let aside = path.with_extension(format!("lootlog.damaged-{unix_ms}"));
    out.commit(&aside)?;
    // The old log's synced length means nothing for the new file (offsets moved); the next
    // open records a fresh one.
    let _ = fs::remove_file(synced_mark_path(&path));
    Ok(RepairOutcome::Repaired {
        report,
        kept_aside: aside,
        new_bytes,
    })
}

fn existing_log(lock: &StateLock, group: &str) -> Result<PathBuf, StoreError> {
    let path = lock.log_path(group)?;
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
    let file = File::open(path).map_err(io_err(path, "opening log"))?;
    let file_len = file
        .metadata()
        .map_err(io_err(path, "reading metadata of"))?
        .len();
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        file_bytes: file_len,
        ..VerifyReport::default()
    };
    if let HeaderState::Unwritten = read_header(path, &file, file_len)? {
        return Ok(report);
    }
    let read_err = io_err(path, "reading log");
    let mut progress = Progress::new(progress, file_len);
    // Entries are identified by content digest: a repeated digest is a byte-identical repeat.
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut players: HashSet<String> = HashSet::new();
    let mut scanner = RecordScanner::new(&file, HEADER_LEN);
    loop {
        progress.at(scanner.offset());
        let Some(item) = scanner.next() else {
            break;
        };
        match item.map_err(&read_err)? {
            Scanned::Record(record) => {
                let entry = &record.entry;
                if !seen.insert(entry.digest()) {
                    report.identical_duplicates += 1;
                    continue;
                }
                report.first_at = Some(report.first_at.map_or(entry.at, |a| a.min(entry.at)));
                report.last_at = Some(report.last_at.map_or(entry.at, |a| a.max(entry.at)));
                if !players.contains(&entry.target) {
                    players.insert(entry.target.clone());
                }
                let bytes = scanner
                    .record_bytes(&record)
                    .expect("the record just read is in the scanner's window");
                sink(bytes)?;
            }
            Scanned::Damaged {
                offset,
                len,
                damage,
            } => {
                // A whole record with a bad payload was written whole: it is damage, not an
                // unfinished append, even at the very end (opening the log refuses it too,
                // so verify must not call it a torn tail). Like any damage, it reaches to
                // where intact records resume.
                let end = match damage {
                    Damage::Payload(_) => {
                        let resume = scanner
                            .find_intact(offset + 1)
                            .map_err(io_err(path, "scanning past a damaged record in"))?;
                        let end = resume.unwrap_or((offset + len).min(file_len));
                        scanner.seek(end);
                        end
                    }
                    Damage::Record(_) => offset + len,
                };
                report.damaged.push(DamagedRegion {
                    offset,
                    bytes: end - offset,
                    reason: damage,
                });
            }
            Scanned::TornTail { offset, defect } => {
                report.torn_tail = Some(DamagedRegion {
                    offset,
                    bytes: file_len.saturating_sub(offset),
                    reason: Damage::Record(defect),
                });
            }
        }
    }
    progress.done(file_len);
    report.entries = seen.len();
    report.players = players.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::entry::Entry;
    use crate::store::format::{PayloadError, RecordDefect};
    use crate::store::test_support::{self, header, raw_record, record, GROUP};
    use crate::store::LogStore;
    use tempfile::TempDir;

    /// An entry for one of three players, so the report has players to count.
    fn entry(i: u64) -> Entry {
        test_support::entry_builder(i)
            .target(format!("Player{}", i % 3))
            .new_total(0)
            .build()
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
        assert_eq!(
            report.damaged[0].reason,
            Damage::Record(RecordDefect::ChecksumMismatch),
            "{report:?}"
        );
        let tail = report.torn_tail.clone().unwrap();
        assert_eq!(tail.offset, starts[11]);

        // Owned by another user (as the service user's log is when root repairs it): the
        // new log keeps that owner. Only root can give files away, so only then.
        let log = LogStore::log_path(dir.path(), GROUP);
        let owner = nix::unistd::geteuid().is_root().then(|| {
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
        bytes.extend_from_slice(&raw_record(&[0xff; 12]));
        bytes.extend_from_slice(&record(&entry(5)));
        let dir = dir_with(&bytes);
        let report = verify_in(dir.path());
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].offset, bad_at);
        assert!(matches!(
            report.damaged[0].reason,
            Damage::Payload(PayloadError::Decode(_))
        ));
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
        bytes.extend_from_slice(&raw_record(&[0xff; 12]));
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
        match err {
            StoreError::Io { path, source, .. } => {
                assert_eq!(path, LogStore::log_path(dir.path(), GROUP));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected a missing file, got {other:?}"),
        }
    }
}
