//! The on-disk form of the secret signing keys (officer, root): an 8-byte tag naming the
//! kind, then the 32 secret bytes. The tag lets a command say "this is an officer key, not
//! the root key" instead of silently signing with the wrong key, and the group key loader
//! names a signing key given in its place. The group key file itself stays 32 raw bytes
//! (the documented `keygen group` output); untagged 32-byte files, including signing keys
//! from before the tag, are accepted as any kind.
//!
//! Which key types the bytes become, and where new secrets come from, is
//! [`crate::store::keys`].
//!
//! # Where the service finds its keys
//!
//! Key files stay private to whoever owns them (mode 0600, root's under systemd). The shipped
//! unit hands the daemon the files in [`SERVICE_KEY_DIR`] as systemd credentials
//! (`LoadCredential=keys:/etc/lootsync/keys`): systemd copies each file `NAME` there, at
//! service start, to `$CREDENTIALS_DIRECTORY/keys_NAME`, readable by the service user only.
//! [`read_private`] reads a key file in that directory from its credential when there is
//! one, and any other key file directly. [`KeyAccess`] says, for `config check`, whether a
//! given user will get at a key file one way or the other.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Secret key length in bytes (the same for all three kinds).
pub const SECRET_BYTES: usize = 32;
/// Length of the kind tag that starts a key file.
pub const TAG_BYTES: usize = 8;

/// The environment variable in which systemd names the service's credentials directory.
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The directory of key files the shipped unit passes to the daemon as credentials.
pub const SERVICE_KEY_DIR: &str = "/etc/lootsync/keys";
/// The credential id the unit gives [`SERVICE_KEY_DIR`] (`LoadCredential=keys:...`):
/// systemd names the credential of each file `NAME` in it `keys_NAME`.
pub const SERVICE_CREDENTIAL_ID: &str = "keys";

/// Which key a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// The group key that seals every datagram (`keygen group`).
    Group,
    /// An officer's signing key (`keygen officer`).
    Officer,
    /// The group's root signing key, which signs roster changes (`keygen root`).
    Root,
}

impl KeyKind {
    const ALL: [KeyKind; 3] = [KeyKind::Group, KeyKind::Officer, KeyKind::Root];

    /// The `lootsync keygen` command that makes a key of this kind.
    fn command(self) -> &'static str {
        match self {
            KeyKind::Group => "group FILE",
            KeyKind::Officer => "officer FILE",
            KeyKind::Root => "root FILE",
        }
    }

    fn tag(self) -> &'static [u8; TAG_BYTES] {
        match self {
            KeyKind::Group => b"LSKgrp1\n",
            KeyKind::Officer => b"LSKoff1\n",
            KeyKind::Root => b"LSKroot1",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Group => "a group key",
            KeyKind::Officer => "an officer key",
            KeyKind::Root => "the root key",
        })
    }
}

/// Why a key file's contents are not a key of the expected kind.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyFormatError {
    /// The file holds a key of another kind.
    #[error("it holds {found}, not {expected}")]
    WrongKind {
        /// The kind the file holds.
        found: KeyKind,
        /// The kind that was asked for.
        expected: KeyKind,
    },
    /// The file is neither a tagged key nor 32 raw bytes.
    #[error(
        "it is not a lootsync key ({len} bytes; expected {} with a kind tag, or {SECRET_BYTES} \
         from an older keygen)",
        TAG_BYTES + SECRET_BYTES
    )]
    NotAKey {
        /// The file's length.
        len: usize,
    },
}

/// Why a secret key file could not be written or read: the one error of every key file
/// (group, officer, root), whatever module uses the key.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed (the OS error is the source, printed once by
    /// whoever prints the chain).
    #[error("cannot access key file {}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// This process may not read the file: the usual mistake of a service whose key files
    /// are root's. The message names the layout that works.
    #[error(
        "key file {} is not readable by this process (uid {uid}): under systemd keep key \
         files in {SERVICE_KEY_DIR}/ (root-owned, mode 0600), which lootsync.service passes \
         to the daemon as credentials (LoadCredential={SERVICE_CREDENTIAL_ID}:{SERVICE_KEY_DIR}), \
         then `systemctl restart lootsync`; run by hand, the file must be the running \
         user's own, mode 0600",
        path.display()
    )]
    NotReadable {
        /// The key file.
        path: PathBuf,
        /// Who tried.
        uid: u32,
        /// The OS error (permission denied).
        #[source]
        source: std::io::Error,
    },
    /// The file is readable (or writable) by group or others.
    #[error(
        "key file {} has mode {mode:04o}: group or others may access it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key of the expected kind.
    #[error("key file {}: {reason} (make one with `lootsync keygen {}`)", path.display(), expected.command())]
    Format {
        /// The key file.
        path: PathBuf,
        /// The kind that was asked for.
        expected: KeyKind,
        /// What it holds instead (in the message, not a separate cause, so it is said once).
        reason: KeyFormatError,
    },
    /// `keygen` refuses to overwrite an existing key.
    #[error("{} already exists; refusing to overwrite a key", .0.display())]
    Exists(PathBuf),
}

/// Writes `contents` to a new key file at `path`, mode 0600, synced; never overwrites.
pub fn create_private(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let io = |source| io_error(path, source);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.to_path_buf()),
            _ => io(source),
        })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The secret in the key file at `path`, refusing a file group or others may access, or one
/// that holds another kind of key. Under systemd (`$CREDENTIALS_DIRECTORY` set), a key file
/// in [`SERVICE_KEY_DIR`] is read from its credential when the unit passed one.
pub fn read_private(path: &Path, kind: KeyKind) -> Result<[u8; SECRET_BYTES], KeyFileError> {
    let credentials = std::env::var_os(CREDENTIALS_ENV).map(PathBuf::from);
    read_private_with(path, kind, credentials.as_deref())
}

/// [`read_private`] with the credentials directory given (`None`: not under systemd).
pub fn read_private_with(
    path: &Path,
    kind: KeyKind,
    credentials: Option<&Path>,
) -> Result<[u8; SECRET_BYTES], KeyFileError> {
    let credential = credentials
        .and_then(|dir| credential_for(path, dir))
        .filter(|credential| credential.exists());
    let bytes = match credential {
        // systemd made this copy readable by the service user only (its mode may show an
        // ACL mask in the group bits, so the mode check below does not apply to it).
        Some(credential) => std::fs::read(&credential).map_err(|source| io_error(path, source))?,
        None => {
            check_private_mode(path)?;
            std::fs::read(path).map_err(|source| io_error(path, source))?
        }
    };
    decode(kind, &bytes).map_err(|reason| KeyFileError::Format {
        path: path.to_path_buf(),
        expected: kind,
        reason,
    })
}

/// Whether [`read_private`] would read `path` from a credential: the file of credential
/// `keys_NAME` in `credentials` for a key file `NAME` in [`SERVICE_KEY_DIR`], else `None`.
pub fn credential_for(path: &Path, credentials: &Path) -> Option<PathBuf> {
    if !in_service_key_dir(path) {
        return None;
    }
    let name = path.file_name()?.to_str()?;
    Some(credentials.join(format!("{SERVICE_CREDENTIAL_ID}_{name}")))
}

/// Whether `path` names a file directly in [`SERVICE_KEY_DIR`] (the files the unit passes
/// as credentials; systemd skips subdirectories' files under other names).
pub fn in_service_key_dir(path: &Path) -> bool {
    path.parent() == Some(Path::new(SERVICE_KEY_DIR))
}

/// Refuses a key file that group or others may access.
fn check_private_mode(path: &Path) -> Result<(), KeyFileError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| io_error(path, source))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The error for an OS failure on `path`: a refused read names the layout that works.
fn io_error(path: &Path, source: std::io::Error) -> KeyFileError {
    let path = path.to_path_buf();
    match source.kind() {
        std::io::ErrorKind::PermissionDenied => KeyFileError::NotReadable {
            path,
            uid: nix::unistd::geteuid().as_raw(),
            source,
        },
        _ => KeyFileError::Io { path, source },
    }
}

/// Whether a user can get at a key file, as `config check --user` reports it.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyAccess {
    /// The unit passes it as a credential: the user needs no access to the file itself.
    Credential,
    /// The user may read the file itself.
    Readable,
    /// The user may not read it, and the unit does not pass it either.
    Unreadable {
        /// The file's owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
}

impl KeyAccess {
    /// How `user` (uid, and every group id it is in) gets at the key file `path`; the file
    /// is assumed to exist (an error otherwise). Only the file's own bits and owner are
    /// judged, not the directories above it or the unit's sandbox.
    pub fn of(path: &Path, uid: u32, groups: &[u32]) -> Result<KeyAccess, KeyFileError> {
        if in_service_key_dir(path) {
            return Ok(KeyAccess::Credential);
        }
        let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        let mode = meta.permissions().mode() & 0o7777;
        let readable = uid == 0
            || if meta.uid() == uid {
                mode & 0o400 != 0
            } else if groups.contains(&meta.gid()) {
                mode & 0o040 != 0
            } else {
                mode & 0o004 != 0
            };
        Ok(if readable {
            KeyAccess::Readable
        } else {
            KeyAccess::Unreadable {
                owner: meta.uid(),
                mode,
            }
        })
    }
}

/// The file contents for a new key of `kind`.
pub fn encode(kind: KeyKind, secret: &[u8; SECRET_BYTES]) -> Vec<u8> {
    let mut bytes = kind.tag().to_vec();
    bytes.extend_from_slice(secret);
    bytes
}

/// The secret in a key file's contents, if they hold a key of `expected` kind (or an
/// untagged key from before tags).
pub fn decode(expected: KeyKind, bytes: &[u8]) -> Result<[u8; SECRET_BYTES], KeyFormatError> {
    if let Ok(legacy) = <[u8; SECRET_BYTES]>::try_from(bytes) {
        return Ok(legacy);
    }
    let not_a_key = KeyFormatError::NotAKey { len: bytes.len() };
    if bytes.len() != TAG_BYTES + SECRET_BYTES {
        return Err(not_a_key);
    }
    let (tag, secret) = bytes.split_at(TAG_BYTES);
    let found = KeyKind::ALL
        .into_iter()
        .find(|kind| kind.tag() == tag)
        .ok_or(not_a_key)?;
    if found != expected {
        return Err(KeyFormatError::WrongKind { found, expected });
    }
    Ok(secret.try_into().expect("length checked above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_the_wrong_kind_is_named() {
        let secret = [7u8; SECRET_BYTES];
        for kind in KeyKind::ALL {
            assert_eq!(decode(kind, &encode(kind, &secret)), Ok(secret));
        }
        assert_eq!(
            decode(KeyKind::Officer, &encode(KeyKind::Root, &secret)),
            Err(KeyFormatError::WrongKind {
                found: KeyKind::Root,
                expected: KeyKind::Officer
            })
        );
        let message = decode(KeyKind::Group, &encode(KeyKind::Officer, &secret))
            .unwrap_err()
            .to_string();
        assert_eq!(message, "it holds an officer key, not a group key");
    }

    #[test]
    fn a_service_key_is_read_from_its_credential_and_other_keys_from_their_file() {
        let secret = [5u8; SECRET_BYTES];
        let credentials = tempfile::tempdir().unwrap();
        let in_dir = Path::new(SERVICE_KEY_DIR).join("group.key");
        let credential = credentials.path().join("keys_group.key");
        assert_eq!(
            credential_for(&in_dir, credentials.path()),
            Some(credential.clone())
        );
        // systemd's copy may show an ACL mask as group bits: that is not a key others read.
        std::fs::write(&credential, encode(KeyKind::Group, &secret)).unwrap();
        std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert_eq!(
            read_private_with(&in_dir, KeyKind::Group, Some(credentials.path())).unwrap(),
            secret
        );
        let wrong = read_private_with(&in_dir, KeyKind::Officer, Some(credentials.path()));
        assert!(
            matches!(wrong, Err(KeyFileError::Format { .. })),
            "{wrong:?}"
        );

        // Elsewhere, or without credentials, the file itself is read, and its mode checked.
        let elsewhere = credentials.path().join("own.key");
        assert_eq!(credential_for(&elsewhere, credentials.path()), None);
        create_private(&elsewhere, &encode(KeyKind::Group, &secret)).unwrap();
        assert_eq!(
            read_private_with(&elsewhere, KeyKind::Group, Some(credentials.path())).unwrap(),
            secret
        );
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o640)).unwrap();
        let open = read_private_with(&elsewhere, KeyKind::Group, None).unwrap_err();
        assert!(open.to_string().contains("chmod 600"), "{open}");
    }

    #[test]
    fn a_refused_read_names_the_layout_that_works_and_the_os_error_once() {
        let denied = io_error(
            Path::new("/etc/lootsync/group.key"),
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        let chain = format!("{:#}", anyhow::Error::new(denied));
        assert!(chain.contains(SERVICE_KEY_DIR), "{chain}");
        assert!(chain.contains("systemctl restart lootsync"), "{chain}");
        assert_eq!(chain.matches("os error 13").count(), 1, "{chain}");
        let missing = io_error(
            Path::new("/nowhere/group.key"),
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        let chain = format!("{:#}", anyhow::Error::new(missing));
        assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
    }

    #[test]
    fn key_access_follows_the_owner_and_the_service_key_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("officer.key");
        create_private(&path, &encode(KeyKind::Officer, &[1; SECRET_BYTES])).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let (owner, group) = (meta.uid(), meta.gid());
        let stranger = owner.wrapping_add(4242).max(1);
        assert_eq!(
            KeyAccess::of(&path, owner, &[]).unwrap(),
            KeyAccess::Readable
        );
        assert_eq!(KeyAccess::of(&path, 0, &[]).unwrap(), KeyAccess::Readable);
        assert_eq!(
            KeyAccess::of(&path, stranger, &[group]).unwrap(),
            KeyAccess::Unreadable { owner, mode: 0o600 }
        );
        // The unit passes files of its key directory in, whoever owns them.
        assert_eq!(
            KeyAccess::of(&Path::new(SERVICE_KEY_DIR).join("x.key"), stranger, &[]).unwrap(),
            KeyAccess::Credential
        );
    }

    #[test]
    fn untagged_keys_are_accepted_and_anything_else_refused() {
        let secret = [9u8; SECRET_BYTES];
        assert_eq!(decode(KeyKind::Root, &secret), Ok(secret));
        for len in [0, 31, 33, 39, 41] {
            assert_eq!(
                decode(KeyKind::Root, &vec![0; len]),
                Err(KeyFormatError::NotAKey { len })
            );
        }
        let mut bad_tag = encode(KeyKind::Root, &secret);
        bad_tag[0] ^= 1;
        assert_eq!(
            decode(KeyKind::Root, &bad_tag),
            Err(KeyFormatError::NotAKey { len: 40 })
        );
    }
}
