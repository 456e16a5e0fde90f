//! The bytes of a log file: its name, its header and the framing of its records.
//!
//! A log is a 16-byte header (`b"LOOTLOG\0"`, format version as u16 LE, 6 reserved zero
//! bytes) followed by records `[len u32 LE][crc u32 LE][payload]`. The payload is the
//! postcard encoding of one [`Entry`]; the CRC-32C covers the length bytes and the payload, so
//! a damaged length field is caught by the checksum instead of silently re-framing the rest
//! of the file.
//!
//! This module is the only place that builds or parses that framing. Everything that reads a
//! log goes through [`parse_record`] (usually via the scanner), and everything that writes
//! one goes through [`encode_record`] (or [`encode_payload_record`], for an entry a merge
//! has encoded already), so the format cannot drift between the writer, the open-time scan,
//! verify, repair, migration and the reader.

#[cfg(doc)]
use crate::proto::batch::EncodedBatch;
use crate::proto::entry::{AppendTo, Entry, EntryError, EntryId};
use crate::proto::hlc::Hlc;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Magic bytes at the start of every log file.
pub(crate) const MAGIC: [u8; 8] = *b"LOOTLOG\0";
/// The only format version this build reads and writes.
pub(crate) const FORMAT_VERSION: u16 = 2;
/// The format before officer signatures: the same records, but an entry payload ends after
/// `reason` (no `kind`, no `seal`). Only migration reads it.
pub(crate) const FORMAT_VERSION_V1: u16 = 1;
/// Size of the file header in bytes.
pub(crate) const HEADER_LEN: u64 = 16;
/// Size of a record's length + checksum prefix in bytes.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// Largest payload a record may carry. A valid entry encodes to well under 600 bytes; the
/// bound keeps a damaged length field from making a reader allocate or skip megabytes.
pub(crate) const MAX_RECORD_BYTES: usize = 2048;
/// The most bytes one record can span: what a reader must have in hand to judge any record.
pub(crate) const MAX_FRAME_BYTES: usize = RECORD_HEADER_LEN + MAX_RECORD_BYTES;
/// Extension of per-group log files.
const LOG_EXTENSION: &str = "lootlog";

/// Why the first bytes of a file are not a usable log header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Shorter than a header, and not the start of one (which would be a log whose creation
    /// was interrupted).
    #[error(
        "the file is {file_bytes} bytes, shorter than the {HEADER_LEN}-byte header, and does \
         not start like a lootsync log"
    )]
    TooShort {
        /// Size of the file.
        file_bytes: u64,
    },
    /// The magic bytes are wrong.
    #[error("wrong magic bytes; this is not a lootsync log")]
    WrongMagic,
    /// A version this build does not read.
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
    },
}

/// Why the bytes at some offset are not a whole record with a matching checksum. Each of
/// these is also what an append cut short by a crash leaves, so on its own it does not say
/// whether the log is damaged or merely has a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum RecordDefect {
    /// Fewer bytes than a record's length + checksum prefix.
    #[error("record header cut short")]
    ShortHeader,
    /// The length field is zero or larger than any record may be.
    #[error("invalid record length {len} (must be 1..={MAX_RECORD_BYTES})")]
    BadLength {
        /// The length field's value.
        len: u32,
    },
    /// Fewer payload bytes than the length field says.
    #[error("record payload of {len} bytes cut short")]
    ShortPayload {
        /// The length field's value.
        len: u32,
    },
    /// The checksum does not match the length and payload.
    #[error("checksum mismatch")]
    ChecksumMismatch,
}

/// Why a payload whose checksum matches is still not a valid entry. A torn write cannot
/// produce a matching checksum, so this is always damage (or a buggy writer), never an
/// unfinished append.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// The bytes are not a postcard-encoded entry.
    #[error("record does not decode as an entry ({0})")]
    Decode(postcard::Error),
    /// An entry decoded, with bytes left over.
    #[error("record has {extra} trailing bytes after the entry")]
    TrailingBytes {
        /// How many bytes follow the entry.
        extra: usize,
    },
    /// The entry decoded but breaks the entry rules (bounds, names, delta).
    // Shared so damage reports, which are cloned into verify reports, can carry it.
    #[error("record holds an invalid entry ({0})")]
    InvalidEntry(Arc<EntryError>),
}

/// Why an entry cannot be written as a record. Nothing is written when this happens: a
/// record the reader would reject must never reach the log.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The entry breaks the entry rules.
    #[error("invalid entry {id}: {error}")]
    InvalidEntry {
        /// The entry's id.
        id: EntryId,
        /// The rule it breaks.
        error: EntryError,
    },
    /// postcard could not encode the entry.
    #[error("cannot encode entry {id}: {error}")]
    Encode {
        /// The entry's id.
        id: EntryId,
        /// postcard's error.
        error: postcard::Error,
    },
    /// The encoding is longer than a record may be.
    #[error(
        "entry {id} encodes to {bytes} bytes, more than the {MAX_RECORD_BYTES} a record holds"
    )]
    TooLarge {
        /// The entry's id.
        id: EntryId,
        /// Length of its encoding.
        bytes: usize,
    },
    /// An encoded entry is longer than a record may be.
    #[error("an entry encodes to {bytes} bytes, more than the {MAX_RECORD_BYTES} a record holds")]
    PayloadTooLarge {
        /// Length of the encoding.
        bytes: usize,
    },
}

/// Path of the log for `group` inside `state_dir`: `state_dir/<group>.lootlog`.
pub(crate) fn log_file_path(state_dir: &Path, group: &str) -> PathBuf {
    state_dir.join(format!("{group}.{LOG_EXTENSION}"))
}

/// Whether `group` can name a log file: a group name that is a path would put the log
/// outside the state directory, and a leading dot would hide it.
pub(crate) fn is_plain_group_name(group: &str) -> bool {
    !group.is_empty()
        && !group.starts_with('.')
        && !group.contains(['/', '\\', '\0'])
        && Path::new(group).components().count() == 1
}

/// The 16-byte file header for format `version`.
pub(crate) fn file_header(version: u16) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&version.to_le_bytes());
    header
}

/// What the first bytes of a log say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    /// A complete header of the current version.
    Valid,
    /// Empty, or a prefix of a valid header: the file was created but its header never
    /// fully written, so it holds no data and is started afresh.
    Unwritten,
}

/// The format version in `bytes`, if they start with a whole header with the right magic.
pub(crate) fn header_version(bytes: &[u8]) -> Option<u16> {
    let header = bytes.get(..HEADER_LEN as usize)?;
    (header[..8] == MAGIC).then(|| u16::from_le_bytes([header[8], header[9]]))
}

/// Judges the first bytes of a log: `start` is what could be read of the first
/// [`HEADER_LEN`] bytes, `file_bytes` the file's size.
pub(crate) fn parse_header(start: &[u8], file_bytes: u64) -> Result<HeaderState, HeaderError> {
    if (start.len() as u64) < HEADER_LEN {
        let expected = file_header(FORMAT_VERSION);
        // The length check guards against the file changing between stat and read.
        if start.len() as u64 == file_bytes && expected.starts_with(start) {
            return Ok(HeaderState::Unwritten);
        }
        return Err(HeaderError::TooShort { file_bytes });
    }
    // The reserved bytes are deliberately not checked: a future version may use them for
    // flags that older readers can safely ignore; incompatible changes bump the version.
    match header_version(start) {
        None => Err(HeaderError::WrongMagic),
        Some(FORMAT_VERSION) => Ok(HeaderState::Valid),
        Some(found) => Err(HeaderError::UnsupportedVersion { found }),
    }
}

/// The CRC-32C a record carries for its length field and payload.
fn record_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Appends `payload` framed as a record to `out`, whatever the payload holds (tests need
/// checksummed garbage and records of the old format).
#[cfg(test)]
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    put_record(payload, out);
}

/// Appends `payload` framed as a record to `out`.
fn put_record(payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    out.extend_from_slice(payload);
    fill_prefix(&mut out[start..]);
}

/// Frames an entry's encoding, from an [`EncodedBatch`] (which holds only valid entries,
/// so the record is one the reader accepts), and appends it to `out`; on error `out` is
/// unchanged.
pub(crate) fn encode_payload_record(payload: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    // Cannot happen for a valid entry, but a record the reader would reject must never be
    // written.
    if payload.len() > MAX_RECORD_BYTES {
        return Err(EncodeError::PayloadTooLarge {
            bytes: payload.len(),
        });
    }
    put_record(payload, out);
    Ok(())
}

/// Writes the length and checksum into the first [`RECORD_HEADER_LEN`] bytes of `record`,
/// whose payload follows them.
fn fill_prefix(record: &mut [u8]) {
    let (prefix, payload) = record.split_at_mut(RECORD_HEADER_LEN);
    let len = u32::try_from(payload.len()).expect("a payload is far below 4 GiB");
    prefix[..4].copy_from_slice(&len.to_le_bytes());
    prefix[4..].copy_from_slice(&record_crc(len, payload).to_le_bytes());
}

/// Frames `entry` as a record and appends it to `out`; on error `out` is unchanged.
pub(crate) fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    entry
        .validate()
        .map_err(|error| EncodeError::InvalidEntry {
            id: entry.id,
            error,
        })?;
    // Encoded in place behind room for the prefix: no buffer per record, one copy.
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    if let Err(error) = postcard::serialize_with_flavor(entry, AppendTo(out)) {
        out.truncate(start);
        return Err(EncodeError::Encode {
            id: entry.id,
            error,
        });
    }
    let bytes = out.len() - start - RECORD_HEADER_LEN;
    // Cannot happen for a validated entry, but a record the reader would reject must never
    // be written.
    if bytes > MAX_RECORD_BYTES {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            id: entry.id,
            bytes,
        });
    }
    fill_prefix(&mut out[start..]);
    Ok(())
}

/// Decodes a checksummed payload into a valid entry, or says why it is not one.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Entry, PayloadError> {
    let (entry, rest) =
        postcard::take_from_bytes::<Entry>(payload).map_err(PayloadError::Decode)?;
    if !rest.is_empty() {
        return Err(PayloadError::TrailingBytes { extra: rest.len() });
    }
    entry
        .validate()
        .map_err(|error| PayloadError::InvalidEntry(Arc::new(error)))?;
    Ok(entry)
}

/// The timestamp of the entry a checksummed payload holds, read from the payload's first
/// fields (postcard writes a struct's fields in order: `id`, then `at`) without decoding
/// the rest. Lets a reader that copies payloads check it copied the entry it meant to.
pub(crate) fn payload_timestamp(payload: &[u8]) -> Result<Hlc, PayloadError> {
    postcard::take_from_bytes::<(EntryId, Hlc)>(payload)
        .map(|((_, at), _)| at)
        .map_err(PayloadError::Decode)
}

/// The whole size of the record that `bytes` start with, judged from its prefix alone.
/// Lets a reader learn how many bytes to fetch before it has the payload.
pub(crate) fn record_len(bytes: &[u8]) -> Result<usize, RecordDefect> {
    let Some((prefix, _)) = bytes.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(RecordDefect::ShortHeader);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 || len as usize > MAX_RECORD_BYTES {
        return Err(RecordDefect::BadLength { len });
    }
    Ok(RECORD_HEADER_LEN + len as usize)
}

/// The record `bytes` start with: its payload (checksum verified, not yet decoded) and its
/// whole length. Bytes after the record are ignored.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<(&[u8], usize), RecordDefect> {
    let total = record_len(bytes)?;
    let len = (total - RECORD_HEADER_LEN) as u32;
    let Some(record) = bytes.get(..total) else {
        return Err(RecordDefect::ShortPayload { len });
    };
    let (prefix, payload) = record.split_at(RECORD_HEADER_LEN);
    let crc = u32::from_le_bytes(prefix[4..].try_into().expect("4 checksum bytes"));
    if record_crc(len, payload) != crc {
        return Err(RecordDefect::ChecksumMismatch);
    }
    Ok((payload, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::entry;

    fn encode(e: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(e, &mut out).unwrap();
        out
    }

    /// Encoding in place frames exactly as [`frame`] does around the payload, behind
    /// whatever the buffer held.
    #[test]
    fn a_record_encoded_in_place_is_the_framed_payload() {
        let e = entry(6);
        let mut framed = vec![1, 2, 3];
        frame(&postcard::to_stdvec(&e).unwrap(), &mut framed);
        let mut in_place = vec![1, 2, 3];
        encode_record(&e, &mut in_place).unwrap();
        assert_eq!(in_place, framed);
    }

    #[test]
    fn a_record_round_trips() {
        let e = entry(3);
        let record = encode(&e);
        let (payload, total) = parse_record(&record).unwrap();
        assert_eq!(total, record.len());
        assert_eq!(record_len(&record), Ok(total));
        assert_eq!(decode_payload(payload).unwrap(), e);
        // Bytes after the record are not its business.
        let mut longer = record.clone();
        longer.extend_from_slice(&[0xaa; 5]);
        assert_eq!(parse_record(&longer).unwrap(), (payload, total));
    }

    #[test]
    fn a_record_cut_at_every_byte_offset_is_short_never_accepted() {
        let record = encode(&entry(4));
        let len = (record.len() - RECORD_HEADER_LEN) as u32;
        for cut in 0..record.len() {
            let expected = if cut < RECORD_HEADER_LEN {
                RecordDefect::ShortHeader
            } else {
                RecordDefect::ShortPayload { len }
            };
            assert_eq!(parse_record(&record[..cut]), Err(expected), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_is_caught() {
        let record = encode(&entry(5));
        for pos in 0..record.len() {
            for bit in 0..8 {
                let mut damaged = record.clone();
                damaged[pos] ^= 1 << bit;
                // A changed length that still fits reads as cut short or bad, never as a
                // record: the checksum covers the length too.
                assert!(parse_record(&damaged).is_err(), "byte {pos} bit {bit}");
            }
        }
    }

    #[test]
    fn length_rules() {
        for (len, ok) in [
            (0u32, false),
            (1, true),
            (MAX_RECORD_BYTES as u32, true),
            (MAX_RECORD_BYTES as u32 + 1, false),
            (u32::MAX, false),
        ] {
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0; 4]);
            match record_len(&bytes) {
                Ok(total) => {
                    assert!(ok, "{len}");
                    assert_eq!(total, RECORD_HEADER_LEN + len as usize);
                }
                Err(defect) => {
                    assert!(!ok, "{len}");
                    assert_eq!(defect, RecordDefect::BadLength { len });
                }
            }
        }
    }

    #[test]
    fn checksummed_payloads_that_are_not_entries_are_told_apart() {
        let mut empty_target = entry(6);
        empty_target.target = String::new();
        let mut trailing = postcard::to_stdvec(&entry(7)).unwrap();
        trailing.push(0);
        assert!(matches!(
            decode_payload(&postcard::to_stdvec(&empty_target).unwrap()),
            Err(PayloadError::InvalidEntry(_))
        ));
        assert_eq!(
            decode_payload(&trailing),
            Err(PayloadError::TrailingBytes { extra: 1 })
        );
        assert!(matches!(
            decode_payload(&[0xff; 12]),
            Err(PayloadError::Decode(_))
        ));
        // Framing does not judge content: such a payload is a whole, intact record.
        let mut record = Vec::new();
        frame(&[0xff; 12], &mut record);
        assert!(parse_record(&record).is_ok());
    }

    #[test]
    fn invalid_entries_are_not_encoded() {
        let mut bad = entry(8);
        bad.delta = 0;
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            encode_record(&bad, &mut out),
            Err(EncodeError::InvalidEntry { .. })
        ));
        assert_eq!(out, [1, 2, 3], "nothing appended");
    }

    #[test]
    fn headers() {
        let header = file_header(FORMAT_VERSION);
        assert_eq!(&header[..8], b"LOOTLOG\0");
        assert_eq!(parse_header(&header, 100), Ok(HeaderState::Valid));
        for len in 0..HEADER_LEN as usize {
            assert_eq!(
                parse_header(&header[..len], len as u64),
                Ok(HeaderState::Unwritten),
                "{len}"
            );
        }
        // A prefix that is not the whole file is not an unwritten header.
        assert_eq!(
            parse_header(&header[..5], 9),
            Err(HeaderError::TooShort { file_bytes: 9 })
        );
        assert_eq!(
            parse_header(&file_header(9), 16),
            Err(HeaderError::UnsupportedVersion { found: 9 })
        );
        assert_eq!(header_version(&file_header(FORMAT_VERSION_V1)), Some(1));
        let mut wrong = header;
        wrong[0] = b'X';
        assert_eq!(parse_header(&wrong, 16), Err(HeaderError::WrongMagic));
        assert_eq!(header_version(&wrong), None);
    }
}
