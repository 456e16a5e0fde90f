//! The one record scanner: reads a log's records from an offset through a window of the
//! file and says, for each stretch of bytes, whether it is an intact record, damage that
//! intact records follow, or a torn tail.
//!
//! Opening a log, verify, repair, migration, the unsynced-hole check and the random-access
//! reader all read records through [`RecordScanner`], so they agree on what a record is and
//! on where damage ends; they differ only in what they do with each [`Scanned`] item.

use crate::proto::entry::Entry;
use crate::store::error::{io_err, Damage, StoreError};
use crate::store::format::{self, HeaderState, PayloadError, RecordDefect, HEADER_LEN};
use crate::store::format::{MAX_FRAME_BYTES, RECORD_HEADER_LEN};
use std::borrow::Borrow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Window for sequential scans: large enough that a 150 MB log is read in a few hundred
/// syscalls rather than one or two per record.
pub(crate) const SCAN_BUFFER_BYTES: usize = 1 << 20;
/// How often (in bytes scanned) a long scan reports progress.
pub(crate) const PROGRESS_STEP_BYTES: u64 = 1 << 20;

/// Turns a checksummed payload into an entry. Migration passes the old format's decoder;
/// everything else uses [`format::decode_payload`].
pub(crate) type Decoder = fn(&[u8]) -> Result<Entry, PayloadError>;

/// An intact record: whole, checksum matching, holding a valid entry.
#[derive(Debug)]
pub(crate) struct Record {
    /// Byte offset of the record in the file.
    pub(crate) offset: u64,
    /// Length of the whole record (prefix and payload).
    pub(crate) len: u64,
    /// The entry it holds.
    pub(crate) entry: Entry,
}

/// What the scanner found at its position.
// Nearly every item is a record, and it is moved straight into the caller's index: boxing it
// to shrink the rare variants would cost an allocation per record on the cold-start path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Scanned {
    /// An intact record.
    Record(Record),
    /// `len` bytes from `offset` hold no intact record, and the scan resumes after them.
    /// For a bad frame they end where the next intact record starts, which is what shows
    /// they are no torn tail; for a whole record with a bad payload they are that record.
    Damaged {
        /// Where the damage starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// What is wrong at `offset`.
        damage: Damage,
    },
    /// Everything from `offset` to the end of the file is no intact record: what an
    /// unfinished append leaves. The scan ends here.
    TornTail {
        /// Where the torn bytes start.
        offset: u64,
        /// What is wrong with them.
        defect: RecordDefect,
    },
}

/// One step of reading at the cursor, before any search past damage.
#[allow(clippy::large_enum_variant)] // as for `Scanned`
enum Step {
    /// No bytes at all at the cursor.
    End,
    Record(Record),
    /// Not a whole record with a matching checksum; the cursor has not moved.
    BadFrame(RecordDefect),
    /// A whole record of `len` bytes whose payload is no entry; the cursor has not moved.
    BadPayload {
        len: usize,
        error: PayloadError,
    },
}

/// Reads records through a window of a log file, with positional reads (it never moves the
/// file's cursor, so it can share a file with a writer).
pub(crate) struct RecordScanner<F> {
    file: F,
    decode: Decoder,
    /// The window's bytes; `buf[..filled]` hold the file from offset `start`.
    buf: Vec<u8>,
    start: u64,
    filled: usize,
    /// The cursor, an index into `buf`.
    pos: usize,
    /// The read that last filled the window reached the end of the file.
    at_eof: bool,
    /// Iteration has ended (end of file or a torn tail).
    finished: bool,
}

impl<F: Borrow<File>> RecordScanner<F> {
    /// A scanner for sequential reads of the current format, from `from`.
    pub(crate) fn new(file: F, from: u64) -> Self {
        Self::with_window(file, from, SCAN_BUFFER_BYTES, format::decode_payload)
    }

    /// A scanner whose window holds about `window_bytes`, decoding payloads with `decode`.
    pub(crate) fn with_window(file: F, from: u64, window_bytes: usize, decode: Decoder) -> Self {
        // Room for the unjudged overlap plus a read's worth of new bytes: a search keeps one
        // maximal record's worth unjudged while it slides.
        let size = window_bytes.max(2 * MAX_FRAME_BYTES + 1);
        RecordScanner {
            file,
            decode,
            buf: vec![0; size],
            start: from,
            filled: 0,
            pos: 0,
            at_eof: false,
            finished: false,
        }
    }

    /// The file offset of the cursor.
    pub(crate) fn offset(&self) -> u64 {
        self.start + self.pos as u64
    }

    /// Moves the cursor to `offset`, keeping the window when `offset` is inside it.
    pub(crate) fn seek(&mut self, offset: u64) {
        if (self.start..=self.start + self.filled as u64).contains(&offset) {
            self.pos = (offset - self.start) as usize;
        } else {
            self.start = offset;
            self.filled = 0;
            self.pos = 0;
            self.at_eof = false;
        }
        self.finished = false;
    }

    /// Drops the window, so the next read comes from the file. A reader of a log that
    /// changes under it (a failed append cut back and rewritten) uses this before it calls
    /// bytes damaged.
    pub(crate) fn forget(&mut self) {
        let offset = self.offset();
        self.start = offset;
        self.filled = 0;
        self.pos = 0;
        self.at_eof = false;
    }

    /// The bytes of `record`, if it was the last one read and is still in the window.
    pub(crate) fn record_bytes(&self, record: &Record) -> Option<&[u8]> {
        let at = usize::try_from(record.offset.checked_sub(self.start)?).ok()?;
        let end = at.checked_add(usize::try_from(record.len).ok()?)?;
        self.buf[..self.filled].get(at..end)
    }

    /// Reads the record at the cursor without searching past damage: `None` at the end of
    /// the file, an error naming the damage otherwise. The cursor moves past a record read,
    /// and stays at a damaged one.
    pub(crate) fn read_record(&mut self) -> io::Result<Option<Result<Record, Damage>>> {
        Ok(match self.step()? {
            Step::End => None,
            Step::Record(record) => Some(Ok(record)),
            Step::BadFrame(defect) => Some(Err(Damage::Record(defect))),
            Step::BadPayload { error, .. } => Some(Err(Damage::Payload(error))),
        })
    }

    /// Looks for an intact record starting at any byte offset from `from` on and puts the
    /// cursor there (or at the end of the file, when there is none). Slides the window with
    /// an overlap of one maximal record, so a record straddling two reads is still seen and
    /// memory stays bounded however long the damaged region is.
    pub(crate) fn find_intact(&mut self, from: u64) -> io::Result<Option<u64>> {
        self.seek(from);
        let decode = self.decode;
        loop {
            let available = self.fill(MAX_FRAME_BYTES + 1)?;
            // Before the end of the file, only offsets with a maximal record's worth of bytes
            // after them can be judged; the rest are judged after the window slides.
            let judge = if self.at_eof {
                available
            } else {
                available - MAX_FRAME_BYTES
            };
            let window = &self.buf[self.pos..self.filled];
            if let Some(at) = (0..judge).find(|&at| is_intact(&window[at..], decode)) {
                self.pos += at;
                return Ok(Some(self.offset()));
            }
            self.pos += judge;
            if self.at_eof {
                return Ok(None);
            }
        }
    }

    /// Reads the record at the cursor as [`RecordScanner::read_record`] does, but hands
    /// back its payload (the checksum verified) without decoding it: what a sync answer
    /// copies into a datagram.
    pub(crate) fn read_payload(&mut self) -> io::Result<Option<Result<&[u8], Damage>>> {
        Ok(match self.frame()? {
            None => None,
            Some(Err(defect)) => Some(Err(Damage::Record(defect))),
            Some(Ok(total)) => {
                let at = self.pos;
                self.pos += total;
                Some(Ok(&self.buf[at + RECORD_HEADER_LEN..at + total]))
            }
        })
    }

    /// Brings the record at the cursor into the window and checks its frame (length and
    /// checksum): its whole length, or `None` at the end of the file. The cursor stays.
    fn frame(&mut self) -> io::Result<Option<Result<usize, RecordDefect>>> {
        if self.fill(RECORD_HEADER_LEN)? == 0 {
            return Ok(None);
        }
        // Two reads at most: the prefix says how much more the record needs, so a reader
        // near the end of a growing log does not read a maximal record's worth every time.
        let total = match format::record_len(&self.buf[self.pos..self.filled]) {
            Ok(total) => total,
            Err(defect) => return Ok(Some(Err(defect))),
        };
        self.fill(total)?;
        Ok(Some(
            format::parse_record(&self.buf[self.pos..self.filled]).map(|(_, total)| total),
        ))
    }

    fn step(&mut self) -> io::Result<Step> {
        let offset = self.offset();
        let total = match self.frame()? {
            None => return Ok(Step::End),
            Some(Err(defect)) => return Ok(Step::BadFrame(defect)),
            Some(Ok(total)) => total,
        };
        let payload = &self.buf[self.pos + RECORD_HEADER_LEN..self.pos + total];
        Ok(match (self.decode)(payload) {
            Ok(entry) => {
                self.pos += total;
                Step::Record(Record {
                    offset,
                    len: total as u64,
                    entry,
                })
            }
            Err(error) => Step::BadPayload { len: total, error },
        })
    }

    /// Makes at least `need` bytes available at the cursor, unless the file ends first;
    /// returns how many are. Reads only when the window holds too few, and then as many as
    /// the window takes.
    fn fill(&mut self, need: usize) -> io::Result<usize> {
        let available = self.filled - self.pos;
        if available >= need {
            return Ok(available);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.start += self.pos as u64;
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        let got = read_at_most(
            self.file.borrow(),
            &mut self.buf[self.filled..],
            self.start + self.filled as u64,
        )?;
        self.filled += got;
        self.at_eof = self.filled < self.buf.len();
        Ok(self.filled)
    }
}

impl<F> std::fmt::Debug for RecordScanner<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordScanner")
            .field("window_start", &self.start)
            .field("window_bytes", &self.filled)
            .field("cursor", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<F: Borrow<File>> Iterator for RecordScanner<F> {
    type Item = io::Result<Scanned>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let offset = self.offset();
        let scanned = self.step().and_then(|step| match step {
            Step::End => Ok(None),
            Step::Record(record) => Ok(Some(Scanned::Record(record))),
            Step::BadPayload { len, error } => {
                // The record is whole and its checksum matches, so its length is trusted:
                // the next record starts right after it.
                self.pos += len;
                Ok(Some(Scanned::Damaged {
                    offset,
                    len: len as u64,
                    damage: Damage::Payload(error),
                }))
            }
            Step::BadFrame(defect) => Ok(Some(match self.find_intact(offset + 1)? {
                Some(intact_at) => Scanned::Damaged {
                    offset,
                    len: intact_at - offset,
                    damage: Damage::Record(defect),
                },
                None => Scanned::TornTail { offset, defect },
            })),
        });
        match scanned {
            Ok(Some(item)) => {
                self.finished = matches!(item, Scanned::TornTail { .. });
                Some(Ok(item))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(err) => {
                self.finished = true;
                Some(Err(err))
            }
        }
    }
}

/// Whether `bytes` start with a whole record that is intact in every respect: valid length,
/// matching checksum, and a payload that decodes to a valid entry.
fn is_intact(bytes: &[u8], decode: Decoder) -> bool {
    format::parse_record(bytes).is_ok_and(|(payload, _)| decode(payload).is_ok())
}

/// Reads from `offset` until `buf` is full or the file ends; returns how many bytes were
/// read. A short read at the end of the file is not an error: a short record is exactly
/// what a torn tail looks like.
pub(crate) fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and judges the header of the log at `path`, `file_bytes` long.
pub(crate) fn read_header(
    path: &Path,
    file: &File,
    file_bytes: u64,
) -> Result<HeaderState, StoreError> {
    let mut start = [0u8; HEADER_LEN as usize];
    let got = read_at_most(file, &mut start, 0).map_err(io_err(path, "reading header of"))?;
    format::parse_header(&start[..got], file_bytes).map_err(|reason| StoreError::BadHeader {
        path: path.to_path_buf(),
        reason,
    })
}

/// Calls a progress callback every [`PROGRESS_STEP_BYTES`] of a long scan.
pub(crate) struct Progress<'a> {
    report: &'a mut dyn FnMut(u64, u64),
    total: u64,
    next: u64,
}

impl<'a> Progress<'a> {
    /// Reports `(bytes_done, total)` to `report`.
    pub(crate) fn new(report: &'a mut dyn FnMut(u64, u64), total: u64) -> Self {
        Progress {
            report,
            total,
            next: 0,
        }
    }

    /// The scan reached `offset`: reports it if a step has passed since the last report.
    pub(crate) fn at(&mut self, offset: u64) {
        if offset >= self.next {
            (self.report)(offset, self.total);
            self.next = offset + PROGRESS_STEP_BYTES;
        }
    }

    /// The scan ended at `offset`: always reported.
    pub(crate) fn done(&mut self, offset: u64) {
        (self.report)(offset, self.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::{encode_record, frame};
    use crate::store::test_support::{entries, entry, log_bytes};
    use tempfile::TempDir;

    fn file_with(bytes: &[u8]) -> (TempDir, File) {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    fn scan(file: &File) -> Vec<Scanned> {
        RecordScanner::new(file, HEADER_LEN)
            .collect::<io::Result<_>>()
            .unwrap()
    }

    #[test]
    fn intact_record_is_found_across_scan_window_boundaries() {
        let mut record = Vec::new();
        encode_record(&entry(3), &mut record).unwrap();
        let from = 1000u64;
        for rel in [
            0,
            SCAN_BUFFER_BYTES - 1,
            SCAN_BUFFER_BYTES,
            SCAN_BUFFER_BYTES + 1,
            // Straddling the end of the first read: only found if the window overlaps.
            SCAN_BUFFER_BYTES + MAX_FRAME_BYTES - 10,
            SCAN_BUFFER_BYTES + MAX_FRAME_BYTES - 1,
            2 * SCAN_BUFFER_BYTES + 100,
        ] {
            let at = from as usize + rel;
            let mut bytes = vec![0u8; at];
            bytes.extend_from_slice(&record);
            bytes.extend_from_slice(&[0; 3]);
            let (_dir, file) = file_with(&bytes);
            assert_eq!(
                RecordScanner::new(&file, 0).find_intact(from).unwrap(),
                Some(at as u64),
                "record at {rel} past the start"
            );
            // A record that ends past end of file must not be found.
            bytes.truncate(bytes.len() - 4);
            let (_dir, file) = file_with(&bytes);
            assert_eq!(
                RecordScanner::new(&file, 0).find_intact(from).unwrap(),
                None
            );
        }
    }

    #[test]
    fn a_log_cut_at_every_byte_offset_scans_as_whole_records_then_a_torn_tail() {
        let all = entries(0..4);
        let (bytes, ends) = log_bytes(&all);
        for cut in HEADER_LEN as usize..=bytes.len() {
            let (_dir, file) = file_with(&bytes[..cut]);
            let items = scan(&file);
            let whole = ends.iter().filter(|&&end| end as usize <= cut).count();
            for (i, item) in items.iter().take(whole).enumerate() {
                match item {
                    Scanned::Record(record) => assert_eq!(record.entry, all[i], "cut {cut}"),
                    other => panic!("cut {cut}: expected record {i}, got {other:?}"),
                }
            }
            let valid_end = if whole == 0 {
                HEADER_LEN
            } else {
                ends[whole - 1]
            };
            match &items[whole..] {
                [] => assert_eq!(valid_end as usize, cut, "cut {cut}: nothing torn"),
                [Scanned::TornTail { offset, .. }] => assert_eq!(*offset, valid_end, "{cut}"),
                other => panic!("cut {cut}: expected a torn tail, got {other:?}"),
            }
        }
    }

    #[test]
    fn damage_is_a_region_up_to_the_next_intact_record_and_a_bad_payload_is_one_record() {
        let all = entries(0..4);
        let (mut bytes, ends) = log_bytes(&all);
        // Record 1's checksum broken; a checksummed garbage record after the last one;
        // then half a record.
        bytes[ends[0] as usize + 12] ^= 1;
        let garbage_at = bytes.len() as u64;
        frame(&[0xff; 12], &mut bytes);
        let tail_at = bytes.len() as u64;
        let mut record = Vec::new();
        encode_record(&entry(9), &mut record).unwrap();
        bytes.extend_from_slice(&record[..10]);
        let (_dir, file) = file_with(&bytes);
        let items = scan(&file);
        assert!(
            matches!(
                &items[..],
                [
                    Scanned::Record(_),
                    Scanned::Damaged { offset: o1, len: l1, damage: Damage::Record(RecordDefect::ChecksumMismatch) },
                    Scanned::Record(_),
                    Scanned::Record(_),
                    Scanned::Damaged { offset: o2, len: 20, damage: Damage::Payload(PayloadError::Decode(_)) },
                    Scanned::TornTail { offset: o3, defect: RecordDefect::ShortPayload { .. } },
                ] if *o1 == ends[0] && *l1 == ends[1] - ends[0] && *o2 == garbage_at && *o3 == tail_at
            ),
            "{items:?}"
        );
    }

    #[test]
    fn a_small_window_reads_every_record_and_keeps_the_last_ones_bytes() {
        let many = entries(0..500);
        let (bytes, ends) = log_bytes(&many);
        let (_dir, file) = file_with(&bytes);
        let mut scanner =
            RecordScanner::with_window(&file, HEADER_LEN, 4096, format::decode_payload);
        let mut start = HEADER_LEN as usize;
        for (i, end) in ends.iter().enumerate() {
            let record = scanner.read_record().unwrap().unwrap().unwrap();
            assert_eq!(record.entry, many[i]);
            assert_eq!(
                scanner.record_bytes(&record).unwrap(),
                &bytes[start..*end as usize]
            );
            start = *end as usize;
        }
        assert!(scanner.read_record().unwrap().is_none());
        // Back to any record, in or out of the window.
        for i in [3, 499, 0, 250] {
            let at = if i == 0 { HEADER_LEN } else { ends[i - 1] };
            scanner.seek(at);
            assert_eq!(
                scanner.read_record().unwrap().unwrap().unwrap().entry,
                many[i]
            );
        }
        // Not a record start: the damage is named and the cursor stays.
        scanner.seek(ends[0] + 1);
        assert!(matches!(scanner.read_record().unwrap(), Some(Err(_))));
        assert_eq!(scanner.offset(), ends[0] + 1);
    }

    #[test]
    fn progress_is_reported_at_the_start_every_step_and_at_the_end() {
        let mut calls = Vec::new();
        let mut report = |done, total| calls.push((done, total));
        let mut progress = Progress::new(&mut report, 3 * PROGRESS_STEP_BYTES);
        for offset in (HEADER_LEN..3 * PROGRESS_STEP_BYTES).step_by(1000) {
            progress.at(offset);
        }
        progress.done(3 * PROGRESS_STEP_BYTES);
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(calls[0], (HEADER_LEN, 3 * PROGRESS_STEP_BYTES));
    }
}
