//! The state directory's exclusive lock.

use crate::store::error::{io_err, InvalidInput, StoreError};
use crate::store::format;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the state directory.
const LOCK_FILE_NAME: &str = "lootsync.lock";

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

    /// The path of `group`'s log in this state directory, refusing a group name that is not
    /// a plain file-name component (so no name can reach outside the directory). Open,
    /// verify and repair all name the log through here.
    pub fn log_path(&self, group: &str) -> Result<PathBuf, StoreError> {
        if !format::is_plain_group_name(group) {
            return Err(StoreError::InvalidInput {
                path: self.state_dir().to_path_buf(),
                action: "opening the log for a group in",
                problem: InvalidInput::GroupName {
                    group: group.to_string(),
                },
            });
        }
        Ok(format::log_file_path(self.state_dir(), group))
    }

    /// The locked state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::GROUP;
    use crate::store::LogStore;
    use tempfile::TempDir;

    #[test]
    fn lock_is_exclusive_even_within_one_process() {
        let dir = TempDir::new().unwrap();
        let state = dir.path().join("nested").join("state");
        let first = StateLock::acquire(&state).unwrap();
        assert_eq!(first.state_dir(), state);
        match StateLock::acquire(&state) {
            Err(StoreError::Locked { path }) => assert_eq!(path, state.join(LOCK_FILE_NAME)),
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
    fn the_locked_message_names_the_lock_file_and_the_likely_cause() {
        let err = StoreError::Locked {
            path: "/state/lootsync.lock".into(),
        };
        let msg = err.to_string();
        assert!(msg.contains("/state/lootsync.lock"), "{msg}");
        assert!(msg.contains("locked by another lootsync process"), "{msg}");
    }
}
