//! The on-disk form of the secret signing keys (officer, root): an 8-byte tag naming the
//! kind, then the 32 secret bytes. The tag lets a command say "this is an officer key, not
//! the root key" instead of silently signing with the wrong key, and the group key loader
//! names a signing key given in its place. The group key file itself stays 32 raw bytes
//! (the documented `keygen group` output); untagged 32-byte files, including signing keys
//! from before the tag, are accepted as any kind.
//!
//! Which key types the bytes become, and where new secrets come from, is
//! [`crate::store::keys`].

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Secret key length in bytes (the same for all three kinds).
pub const SECRET_BYTES: usize = 32;
/// Length of the kind tag that starts a key file.
pub const TAG_BYTES: usize = 8;

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
    /// Reading or writing the file failed.
    #[error("cannot access key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
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
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
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
/// that holds another kind of key.
pub fn read_private(path: &Path, kind: KeyKind) -> Result<[u8; SECRET_BYTES], KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode(kind, &bytes).map_err(|reason| KeyFileError::Format {
        path: path.to_path_buf(),
        expected: kind,
        reason,
    })
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
