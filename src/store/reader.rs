//! Reading entries back from the log by record offset, for history and sync answers.

use crate::core::ledger::{BodyReadError, EntryReader};
use crate::proto::entry::Entry;
use crate::proto::hlc::Hlc;
use crate::store::error::{io_err, Damage, StoreError};
use crate::store::format;
use crate::store::scanner::RecordScanner;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use thiserror::Error;

/// How much one read brings in: tens to hundreds of records.
const READ_WINDOW_BYTES: usize = 32 * 1024;

/// Why an entry could not be read back at an offset.
#[derive(Debug, Error)]
pub enum ReadError {
    /// Reading the file failed.
    #[error("I/O error while reading {} at offset {offset}", path.display())]
    Io {
        /// The log file.
        path: PathBuf,
        /// Where the record was expected.
        offset: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The log ends at or before `offset`.
    #[error("{}: record at offset {offset} is past the end", path.display())]
    PastEnd {
        /// The log file.
        path: PathBuf,
        /// Where the record was expected.
        offset: u64,
    },
    /// The bytes at `offset` are not an intact record (or not the start of one).
    #[error("{}: record at offset {offset}: {damage}", path.display())]
    Damaged {
        /// The log file.
        path: PathBuf,
        /// Where the record was expected.
        offset: u64,
        /// What is wrong there.
        damage: Damage,
    },
}

/// Reads entries back from a log by record offset (positional reads, so it never disturbs
/// the appending handle). Every read checks the record's length and checksum and decodes and
/// validates the entry, exactly as opening the log does.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    /// Keeps the file region read last. Sync and history read entries in key order, which
    /// is mostly file order, so one read serves many records instead of two syscalls each.
    /// The log only grows, so the window's bytes stay valid, except a failed append's bytes
    /// that were cut off again: a record that does not check out from the window is
    /// therefore read again from the file before it is an error.
    scanner: Mutex<RecordScanner<File>>,
}

impl LogReader {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<LogReader, StoreError> {
        let file = File::open(path).map_err(io_err(path, "opening log for reading"))?;
        Ok(LogReader {
            path: path.to_path_buf(),
            scanner: Mutex::new(RecordScanner::with_window(
                file,
                0,
                READ_WINDOW_BYTES,
                format::decode_payload,
            )),
        })
    }

    /// The entry whose record starts at byte `offset`.
    pub fn read_entry(&self, offset: u64) -> Result<Entry, ReadError> {
        self.read_with(offset, |scanner| {
            Ok(scanner
                .read_record()?
                .map(|read| read.map(|record| record.entry)))
        })
    }

    /// The payload of the record that starts at byte `offset` (its checksum verified, not
    /// decoded: `postcard(Entry)`), appended to `out`; returns the entry's timestamp.
    pub fn read_payload(&self, offset: u64, out: &mut Vec<u8>) -> Result<Hlc, ReadError> {
        self.read_with(offset, |scanner| {
            Ok(scanner.read_payload()?.map(|read| {
                read.and_then(|payload| {
                    let at = format::payload_timestamp(payload).map_err(Damage::Payload)?;
                    out.extend_from_slice(payload);
                    Ok(at)
                })
            }))
        })
    }

    /// Reads what `read` reads at `offset`, a second time from the file if the window's
    /// bytes do not check out.
    fn read_with<T>(
        &self,
        offset: u64,
        mut read: impl FnMut(&mut RecordScanner<File>) -> io::Result<Option<Result<T, Damage>>>,
    ) -> Result<T, ReadError> {
        // A poisoned lock only means another reader panicked mid-read; the window is then
        // merely stale, which the retry below handles.
        let mut scanner = self.scanner.lock().unwrap_or_else(PoisonError::into_inner);
        match self.read_once(&mut scanner, offset, &mut read) {
            Ok(value) => Ok(value),
            Err(_) => {
                // Perhaps a stale window (bytes of a failed append, since cut and
                // rewritten): read afresh before calling it damage.
                scanner.seek(offset);
                scanner.forget();
                self.read_once(&mut scanner, offset, &mut read)
            }
        }
    }

    fn read_once<T>(
        &self,
        scanner: &mut RecordScanner<File>,
        offset: u64,
        read: &mut impl FnMut(&mut RecordScanner<File>) -> io::Result<Option<Result<T, Damage>>>,
    ) -> Result<T, ReadError> {
        scanner.seek(offset);
        match read(scanner) {
            Ok(Some(Ok(value))) => Ok(value),
            Ok(Some(Err(damage))) => Err(ReadError::Damaged {
                path: self.path.clone(),
                offset,
                damage,
            }),
            Ok(None) => Err(ReadError::PastEnd {
                path: self.path.clone(),
                offset,
            }),
            Err(source) => Err(ReadError::Io {
                path: self.path.clone(),
                offset,
                source,
            }),
        }
    }
}

impl EntryReader for LogReader {
    fn read_at(&self, offset: u64) -> Result<Entry, BodyReadError> {
        self.read_entry(offset)
            .map_err(|err| BodyReadError::new(offset, err))
    }

    fn read_encoded_at(&self, offset: u64, out: &mut Vec<u8>) -> Result<Hlc, BodyReadError> {
        self.read_payload(offset, out)
            .map_err(|err| BodyReadError::new(offset, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::{RecordDefect, HEADER_LEN};
    use crate::store::test_support::{entries, log_bytes, record};
    use std::fs;
    use tempfile::TempDir;

    /// A log of three records in `dir`: their entries, the file's bytes, where each record
    /// ends, the file and a reader of it.
    fn three_records(dir: &TempDir) -> (Vec<Entry>, Vec<u8>, Vec<u64>, PathBuf, LogReader) {
        let all = entries(0..3);
        let (bytes, ends) = log_bytes(&all);
        let path = dir.path().join("log");
        fs::write(&path, &bytes).unwrap();
        let reader = LogReader::open(&path).unwrap();
        (all, bytes, ends, path, reader)
    }

    #[test]
    fn log_reader_checks_what_it_reads() {
        let dir = TempDir::new().unwrap();
        let (all, bytes, ends, path, reader) = three_records(&dir);
        assert_eq!(reader.read_entry(HEADER_LEN).unwrap(), all[0]);
        assert_eq!(reader.read_entry(ends[1]).unwrap(), all[2]);
        assert!(
            matches!(
                reader.read_entry(ends[1] + 1),
                Err(ReadError::Damaged { .. })
            ),
            "not a record start"
        );
        assert!(
            matches!(reader.read_entry(ends[2]), Err(ReadError::PastEnd { .. })),
            "past the end"
        );
        let mut damaged = bytes.clone();
        damaged[ends[0] as usize + 12] ^= 1;
        fs::write(&path, &damaged).unwrap();
        let reader = LogReader::open(&path).unwrap();
        let err = reader.read_entry(ends[0]).unwrap_err();
        assert!(
            matches!(
                &err,
                ReadError::Damaged {
                    offset,
                    damage: Damage::Record(RecordDefect::ChecksumMismatch),
                    ..
                } if *offset == ends[0]
            ),
            "{err:?}"
        );
        // Through the ledger's interface the typed cause survives, and names the file and
        // the offset.
        let err = EntryReader::read_at(&reader, ends[0]).unwrap_err();
        assert_eq!(err.offset, ends[0]);
        let cause = err.source.downcast_ref::<ReadError>().expect("a ReadError");
        assert!(matches!(cause, ReadError::Damaged { .. }), "{cause:?}");
        let text = cause.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(&format!("offset {}", ends[0])), "{text}");
    }

    #[test]
    fn log_reader_hands_back_stored_payloads_as_the_wire_encodes_entries() {
        let dir = TempDir::new().unwrap();
        let (all, bytes, ends, path, reader) = three_records(&dir);
        let mut out = vec![9];
        for (i, at) in [HEADER_LEN, ends[0], ends[1]].into_iter().enumerate() {
            let mut one = Vec::new();
            assert_eq!(reader.read_payload(at, &mut one).unwrap(), all[i].at);
            assert_eq!(one, postcard::to_stdvec(&all[i]).unwrap());
            assert_eq!(one.len(), crate::proto::wire::encoded_len(&all[i]));
            // Appends after what `out` held.
            EntryReader::read_encoded_at(&reader, at, &mut out).unwrap();
        }
        let mut expected = vec![9];
        for entry in &all {
            expected.extend(postcard::to_stdvec(entry).unwrap());
        }
        assert_eq!(out, expected);
        // Checked like a decoded read: damage and a wrong offset are errors, `out` untouched.
        let mut damaged = bytes.clone();
        damaged[ends[0] as usize + 12] ^= 1;
        fs::write(&path, &damaged).unwrap();
        let reader = LogReader::open(&path).unwrap();
        let mut none = Vec::new();
        assert!(matches!(
            reader.read_payload(ends[0], &mut none),
            Err(ReadError::Damaged { .. })
        ));
        assert!(reader.read_payload(ends[0] + 1, &mut none).is_err());
        assert!(matches!(
            reader.read_payload(ends[2], &mut none),
            Err(ReadError::PastEnd { .. })
        ));
        assert!(none.is_empty());
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
        assert_eq!(reader.read_entry(HEADER_LEN).unwrap(), all[0]);
        assert!(reader.read_entry(ends[1]).is_err(), "half a record");
        // The leftovers are cut and other bytes written in their place: the window, which
        // saw the old bytes, must not answer from them.
        let mut other = bytes[..ends[1] as usize].to_vec();
        other.extend_from_slice(&record(&all[3]));
        fs::write(&path, &other).unwrap();
        assert_eq!(reader.read_entry(ends[1]).unwrap(), all[3]);
        assert_eq!(reader.read_entry(ends[0]).unwrap(), all[1]);
        // Many records in one window: all read back, in any order.
        let many = entries(0..500);
        let (bytes, ends) = log_bytes(&many);
        fs::write(&path, &bytes).unwrap();
        let reader = LogReader::open(&path).unwrap();
        for i in (0..500).rev().step_by(7).chain(0..500) {
            let at = if i == 0 { HEADER_LEN } else { ends[i - 1] };
            assert_eq!(reader.read_entry(at).unwrap(), many[i]);
        }
    }
}
