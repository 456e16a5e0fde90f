//! What can go wrong in the store, typed so callers can act on the kind of failure.

use crate::store::format::{EncodeError, HeaderError, PayloadError, RecordDefect};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why the store could not do what was asked.
///
/// Three kinds are kept apart because the operator's response differs: an I/O error
/// ([`StoreError::Io`]) may go away on retry or with disk space; damage to the log
/// ([`StoreError::Corrupt`], [`StoreError::BadHeader`], [`StoreError::NotUpgradable`]) needs
/// `lootsync verify` and a human decision; invalid input ([`StoreError::InvalidInput`]) is
/// the caller's mistake and nothing was touched.
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
    /// An earlier sync of this open log failed. After a failed fsync the kernel may have
    /// dropped the dirty pages, and a retry can report success without the data being on
    /// disk, so the log refuses to claim durability again until it is reopened.
    #[error(
        "an earlier sync of {} failed, so recent appends may be lost; reopen the log",
        path.display()
    )]
    SyncFailedEarlier {
        /// The log file.
        path: PathBuf,
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
        reason: HeaderError,
    },
    /// The log is damaged somewhere it cannot be an interrupted append (before intact
    /// records, or a whole record whose content is bad), so it is not repaired automatically.
    #[error(
        "{} is corrupt at byte offset {offset}: {damage}{} (run `lootsync verify` to inspect the damage)",
        path.display(),
        IntactAfter::new(*offset, *intact_at)
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What is wrong there.
        damage: Damage,
        /// Where the next intact record starts, when that is what proves this is no torn
        /// tail.
        intact_at: Option<u64>,
    },
    /// A version 1 log (from before officer signatures) is damaged, so it is not upgraded;
    /// this build cannot repair a version 1 log.
    #[error(
        "{} is a version 1 log and cannot be upgraded: damaged record at offset {offset}; run \
         `lootsync repair` with the previous release first",
        path.display()
    )]
    NotUpgradable {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
    },
    /// The request itself is unacceptable; nothing was written.
    #[error("refused while {action} {}", path.display())]
    InvalidInput {
        /// The file or directory the request was about.
        path: PathBuf,
        /// What was being done, e.g. "appending to".
        action: &'static str,
        /// What is wrong with the request.
        #[source]
        problem: InvalidInput,
    },
}

impl StoreError {
    /// The error and every cause under it, `: `-joined, for a log line. `Display` shows only
    /// the top ("I/O error while appending to PATH"); an operator needs the cause under it
    /// ("No space left on device"), and `{:#}` adds it only for `anyhow` errors.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    /// Whether this is damage to the log on disk (as opposed to an I/O failure, a lock held
    /// elsewhere or a bad request): what `lootsync verify` and `lootsync repair` are for.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::BadHeader { .. }
                | StoreError::NotUpgradable { .. }
        )
    }
}

/// What is wrong with a request the store refused.
#[derive(Debug, Error)]
pub enum InvalidInput {
    /// A group name that is not a plain file name (it would put the log outside the state
    /// directory or hide it).
    #[error("group name {group:?} is not a plain file name")]
    GroupName {
        /// The name given.
        group: String,
    },
    /// An entry that cannot be stored as a record.
    #[error(transparent)]
    Entry(#[from] EncodeError),
}

/// What is wrong with the bytes at a damaged place in the log.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Damage {
    /// The bytes are not a whole record with a matching checksum.
    #[error(transparent)]
    Record(#[from] RecordDefect),
    /// A whole record with a matching checksum holds no valid entry: it was written whole,
    /// so it is damage even at the very end of the file.
    #[error("{0}, though its checksum matches")]
    Payload(PayloadError),
}

/// The part of a corruption message that says why it is no torn tail.
struct IntactAfter {
    offset: u64,
    intact_at: Option<u64>,
}

impl IntactAfter {
    fn new(offset: u64, intact_at: Option<u64>) -> IntactAfter {
        IntactAfter { offset, intact_at }
    }
}

impl std::fmt::Display for IntactAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.intact_at {
            Some(at) => write!(
                f,
                " in record at offset {}; an intact record follows at offset {at}, so this is \
                 not a torn tail",
                self.offset
            ),
            None => Ok(()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the soak test (issue 16): with node 0's disk full, the daemon logged "cannot
    /// store 3 entries learned from peers …: I/O error while appending to …/soak.lootlog" and
    /// "cannot write a checkpoint: I/O error while writing …", never saying the disk was full.
    #[test]
    fn describe_names_the_operating_system_error_under_an_io_error() {
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        let expected = full.to_string();
        let err = io_err(Path::new("/state/group.lootlog"), "appending to")(full);
        let text = err.describe();
        assert!(
            text.starts_with("I/O error while appending to /state/group.lootlog: "),
            "{text}"
        );
        assert!(
            text.ends_with(&expected),
            "{text} should end with {expected}"
        );
    }
}
