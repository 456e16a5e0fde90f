//! Replacing a file in one step: write a temporary file beside it, make it durable, keep the
//! old file under another name, rename the new one into place and make the rename durable.
//! A crash at any point leaves either the old or the new file at the path, never a mix, and
//! the old bytes always survive somewhere.

use crate::store::error::{io_err, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write buffer of the temporary file: whole logs go through it.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The new content of a file, being written under a temporary name.
pub(crate) struct Replacement {
    target: PathBuf,
    tmp_path: PathBuf,
    out: BufWriter<File>,
}

impl Replacement {
    /// Starts replacing `target` (which must exist) with a file written at `tmp_path`.
    /// A file left at `tmp_path` by an interrupted replacement holds nothing the target does
    /// not, so it is overwritten. The new file is private (mode 0600, whatever the umask)
    /// and gets the target's owner: a command run with sudo must not leave a file the
    /// daemon's user cannot open.
    pub(crate) fn create(target: &Path, tmp_path: PathBuf) -> Result<Replacement, StoreError> {
        Self::create_owned_like(target, tmp_path, target)
    }

    /// Starts replacing (or creating) `target` with a file written at `tmp_path` that gets
    /// the owner of `owner_of` (which must exist): a cache file beside the log belongs to
    /// whoever owns the log.
    pub(crate) fn create_owned_like(
        target: &Path,
        tmp_path: PathBuf,
        owner_of: &Path,
    ) -> Result<Replacement, StoreError> {
        let original = fs::metadata(owner_of).map_err(io_err(owner_of, "reading the owner of"))?;
        let tmp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp_path)
            .map_err(io_err(&tmp_path, "creating"))?;
        // `mode` applies only to a file it creates, not to a leftover.
        tmp.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(&tmp_path, "making private"))?;
        let created = tmp
            .metadata()
            .map_err(io_err(&tmp_path, "reading the owner of"))?;
        // Only when it differs: changing a file's group needs membership in it, and a
        // needless chown must not make the replacement fail.
        if (created.uid(), created.gid()) != (original.uid(), original.gid()) {
            std::os::unix::fs::fchown(&tmp, Some(original.uid()), Some(original.gid()))
                .map_err(io_err(&tmp_path, "giving the replaced file's owner to"))?;
        }
        Ok(Replacement {
            target: target.to_path_buf(),
            tmp_path,
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, tmp),
        })
    }

    /// Appends `bytes` to the new content.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(io_err(&self.tmp_path, "writing"))
    }

    /// Makes the new content durable, keeps the old file as `keep_old_as` (a hard link,
    /// which fails rather than overwrite an existing file), renames the new file over the
    /// target and syncs the directory.
    pub(crate) fn commit(self, keep_old_as: &Path) -> Result<(), StoreError> {
        let Replacement {
            target,
            tmp_path,
            out,
        } = self;
        let tmp = out
            .into_inner()
            .map_err(|e| io_err(&tmp_path, "writing")(e.into_error()))?;
        tmp.sync_all().map_err(io_err(&tmp_path, "syncing"))?;
        drop(tmp);
        fs::hard_link(&target, keep_old_as)
            .map_err(io_err(keep_old_as, "keeping the old file as"))?;
        sync_parent_dir(keep_old_as)?;
        fs::rename(&tmp_path, &target).map_err(io_err(&target, "replacing"))?;
        sync_parent_dir(&target)
    }

    /// Makes the new content durable, renames it over the target (the old content, if
    /// any, is gone: for files that are only a cache) and syncs the directory. A crash
    /// before the rename leaves the old file; after it, the new one; never a mix.
    pub(crate) fn commit_replacing(self) -> Result<(), StoreError> {
        let tmp_path = self.tmp_path.clone();
        let target = self.target.clone();
        self.sync_new()?;
        fs::rename(&tmp_path, &target).map_err(io_err(&target, "replacing"))?;
        sync_parent_dir(&target)
    }

    /// Writes out and syncs the new content, leaving it under its temporary name (what a
    /// crash just before the rename leaves behind).
    pub(crate) fn sync_new(self) -> Result<(), StoreError> {
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| io_err(&self.tmp_path, "writing")(e.into_error()))?;
        tmp.sync_all().map_err(io_err(&self.tmp_path, "syncing"))
    }

    /// Gives up: the target stays as it is and the temporary file is removed.
    pub(crate) fn abandon(self) {
        drop(self.out);
        // Best effort: a leftover is overwritten by the next replacement.
        let _ = fs::remove_file(&self.tmp_path);
    }
}

/// Syncs the directory holding `path`, so a file created or renamed there survives a crash.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "syncing directory"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn a_replacement_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("log");
        let tmp = dir.path().join("log.tmp");
        let aside = dir.path().join("log.old");
        fs::write(&target, b"old").unwrap();
        fs::write(&tmp, b"leftover of an interrupted replacement").unwrap();
        let mut new = Replacement::create(&target, tmp.clone()).unwrap();
        new.write_all(b"new ").unwrap();
        new.write_all(b"content").unwrap();
        new.commit(&aside).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new content");
        assert_eq!(fs::read(&aside).unwrap(), b"old");
        assert!(!tmp.exists());
        let mode = fs::metadata(&target).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);

        // The old name is never overwritten: a second replacement keeping the old file
        // under the same name fails before touching the target.
        let mut again = Replacement::create(&target, tmp.clone()).unwrap();
        again.write_all(b"newer").unwrap();
        assert!(matches!(again.commit(&aside), Err(StoreError::Io { .. })));
        assert_eq!(fs::read(&target).unwrap(), b"new content");
        assert_eq!(fs::read(&aside).unwrap(), b"old");
    }

    #[test]
    fn an_abandoned_replacement_touches_nothing() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("log");
        let tmp = dir.path().join("log.tmp");
        fs::write(&target, b"old").unwrap();
        let mut new = Replacement::create(&target, tmp.clone()).unwrap();
        new.write_all(b"new").unwrap();
        new.abandon();
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(!tmp.exists());
    }
}
