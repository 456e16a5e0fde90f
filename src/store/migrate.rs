//! Upgrading a version 1 log (from before officer signatures) to the current format, in
//! place, the first time this build opens it.

use crate::proto::entry::Entry;
use crate::store::atomic::Replacement;
use crate::store::error::{io_err, Damage, StoreError};
use crate::store::format::{self, PayloadError, FORMAT_VERSION, FORMAT_VERSION_V1, HEADER_LEN};
use crate::store::scanner::{RecordScanner, Scanned, SCAN_BUFFER_BYTES};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Rewrites the log at `path` as the current version if it is version 1; does nothing to a
/// missing, short or current log (the normal open path handles those).
///
/// A v1 entry is an unsigned point adjustment: its payload followed by the two zero bytes of
/// `kind = Points` and `seal = None` is exactly its current encoding, so every peer that
/// upgrades computes the same digests. The old file is kept as `<group>.lootlog.v1-<pid>`
/// and the new one renamed into place only when complete and synced. A damaged v1 log is
/// refused ([`StoreError::NotUpgradable`]): repair it with the previous release first.
pub(crate) fn upgrade_v1_log(path: &Path) -> Result<(), StoreError> {
    // Only the header is read unless the log really is version 1.
    let mut header = [0u8; HEADER_LEN as usize];
    let is_v1 = File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok()
        && format::header_version(&header) == Some(FORMAT_VERSION_V1);
    if !is_v1 {
        return Ok(());
    }
    let file = File::open(path).map_err(io_err(path, "reading version 1 log"))?;
    let mut out = Replacement::create(path, path.with_extension("lootlog.upgrade-tmp"))?;
    let entries = match convert(path, &file, &mut out) {
        Ok(entries) => entries,
        Err(err) => {
            out.abandon();
            return Err(err);
        }
    };
    let aside = path.with_extension(format!("lootlog.v1-{}", std::process::id()));
    out.commit(&aside)?;
    tracing::warn!(
        "{}: upgraded from log format version 1 ({entries} entries, unsigned); the old file \
         is kept as {}",
        path.display(),
        aside.display()
    );
    Ok(())
}

/// Writes the current header and every v1 entry of `file` as a current record to `out`;
/// returns how many entries there were.
fn convert(path: &Path, file: &File, out: &mut Replacement) -> Result<usize, StoreError> {
    let read_err = io_err(path, "reading version 1 log");
    let file_bytes = file.metadata().map_err(&read_err)?.len();
    out.write_all(&format::file_header(FORMAT_VERSION))?;
    let mut scanner =
        RecordScanner::with_window(file, HEADER_LEN, SCAN_BUFFER_BYTES, decode_v1_payload);
    let mut entries = 0usize;
    let mut record = Vec::new();
    while let Some(item) = scanner.next() {
        let torn_at = match item.map_err(&read_err)? {
            Scanned::Record(found) => {
                record.clear();
                format::encode_record(&found.entry, &mut record).map_err(|_| {
                    StoreError::NotUpgradable {
                        path: path.to_path_buf(),
                        offset: found.offset,
                    }
                })?;
                out.write_all(&record)?;
                entries += 1;
                continue;
            }
            Scanned::TornTail { offset, .. } => offset,
            // A whole record with a bad payload, with nothing intact after it: treated as
            // the old release's open treated any bad final record.
            Scanned::Damaged {
                offset,
                damage: Damage::Payload(_),
                ..
            } if scanner
                .find_intact(offset + 1)
                .map_err(&read_err)?
                .is_none() =>
            {
                offset
            }
            Scanned::Damaged { offset, .. } => {
                return Err(StoreError::NotUpgradable {
                    path: path.to_path_buf(),
                    offset,
                })
            }
        };
        // As on a normal open: bad bytes with no intact record after them can only be an
        // append cut short by a crash, and are dropped.
        tracing::warn!(
            "{}: dropping a torn final record ({} bytes) while upgrading",
            path.display(),
            file_bytes.saturating_sub(torn_at)
        );
        break;
    }
    Ok(entries)
}

/// A version 1 payload as a current entry.
fn decode_v1_payload(payload: &[u8]) -> Result<Entry, PayloadError> {
    let mut upgraded = Vec::with_capacity(payload.len() + 2);
    upgraded.extend_from_slice(payload);
    upgraded.extend_from_slice(&[0, 0]);
    format::decode_payload(&upgraded)
}

#[cfg(test)]
mod tests {
    use crate::proto::entry::Entry;
    use crate::store::error::StoreError;
    use crate::store::format::{file_header, frame, FORMAT_VERSION, FORMAT_VERSION_V1};
    use crate::store::format::{HEADER_LEN, RECORD_HEADER_LEN};
    use crate::store::test_support::{dir_with_log, entry, log_file, open_in};
    use std::fs;

    #[test]
    fn a_version_1_log_is_upgraded_once_and_its_entries_kept() {
        // A v1 record is today's payload without the trailing kind and seal bytes.
        let es: Vec<Entry> = (1..=5).map(entry).collect();
        let mut bytes = file_header(FORMAT_VERSION_V1).to_vec();
        let mut starts = Vec::new();
        for e in &es {
            let mut payload = postcard::to_stdvec(e).unwrap();
            assert_eq!(payload.split_off(payload.len() - 2), [0, 0]);
            starts.push(bytes.len());
            frame(&payload, &mut bytes);
        }
        let dir = dir_with_log(&bytes);
        let (_, read, _) = open_in(dir.path()).unwrap();
        assert_eq!(read, es, "same entries, same digests");
        let upgraded = fs::read(log_file(dir.path())).unwrap();
        assert_eq!(
            crate::store::format::header_version(&upgraded),
            Some(FORMAT_VERSION)
        );
        let names = |dir: &std::path::Path| -> Vec<String> {
            fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        };
        let kept: Vec<_> = names(dir.path())
            .into_iter()
            .filter(|name| name.contains(".v1-"))
            .collect();
        assert_eq!(kept.len(), 1, "the old file is kept");
        assert_eq!(fs::read(dir.path().join(&kept[0])).unwrap(), bytes);
        assert!(
            !names(dir.path()).iter().any(|n| n.contains("upgrade-tmp")),
            "no temporary file left"
        );
        // Opened again: already current, nothing more is kept aside.
        let (_, again, _) = open_in(dir.path()).unwrap();
        assert_eq!(again, es);
        let kept_now = names(dir.path())
            .iter()
            .filter(|n| n.contains(".v1-"))
            .count();
        assert_eq!(kept_now, 1);

        // A torn final record is dropped, as on a normal open.
        let torn = &bytes[..bytes.len() - 3];
        let dir = dir_with_log(torn);
        let (_, read, _) = open_in(dir.path()).unwrap();
        assert_eq!(read, es[..4]);

        // So is checksummed garbage at the very end, as the old release's open did.
        let mut garbage_tail = bytes.clone();
        frame(&[0xff; 12], &mut garbage_tail);
        let dir = dir_with_log(&garbage_tail);
        let (_, read, _) = open_in(dir.path()).unwrap();
        assert_eq!(read, es);

        // Damage with intact records after it is refused and the file left alone.
        let mut damaged = bytes.clone();
        damaged[HEADER_LEN as usize + RECORD_HEADER_LEN + 4] ^= 0xff;
        let dir = dir_with_log(&damaged);
        match open_in(dir.path()) {
            Err(err @ StoreError::NotUpgradable { offset, .. }) => {
                assert_eq!(offset, starts[0] as u64);
                assert!(err.is_damage());
            }
            other => panic!("expected NotUpgradable, got {other:?}"),
        }
        assert_eq!(fs::read(log_file(dir.path())).unwrap(), damaged);
        assert_eq!(names(dir.path()).len(), 2, "log + lock file only");
    }
}
