//! The secret keys a peer keeps in files, and the operating-system entropy new secrets come
//! from.
//!
//! The key types themselves are pure ([`GroupKey`], [`Keyring`], [`SecretKey`] in
//! [`crate::proto`]) and are built from bytes; this module reads and writes those bytes
//! through [`crate::store::keyfile`] (format and private file access) and draws fresh ones
//! from the OS. The OS random source is used here and only here, so the pure layers stay
//! deterministic and a test can see every place entropy enters.

use crate::proto::seal::{GroupKey, KeyId, Keyring, NoncePrefix, KEY_BYTES};
use crate::proto::signature::SecretKey;
use crate::store::keyfile::{self, KeyFileError, KeyKind, SECRET_BYTES};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The operating system gave no random bytes.
#[derive(Debug, Error)]
#[error("cannot get random bytes from the operating system: {0}")]
pub struct EntropyError(pub getrandom::Error);

impl From<getrandom::Error> for EntropyError {
    fn from(source: getrandom::Error) -> EntropyError {
        EntropyError(source)
    }
}

/// Why a group key file could not be made, or a daemon's group keys not set up (a key file
/// unreadable, or no entropy for the nonce prefix).
#[derive(Debug, Error)]
pub enum GroupKeyError {
    /// The key file could not be written or read, or holds no group key.
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// No randomness for the new key.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

/// Why an officer or root (signing) key file could not be made.
#[derive(Debug, Error)]
pub enum SigningKeyError {
    /// The key file could not be written or read, or holds another kind of key.
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// No randomness for the new key.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(EntropyError)?;
    Ok(bytes)
}

/// A fresh nonce prefix for this process's [`crate::proto::seal::Sealer`].
pub fn nonce_prefix_from_os() -> Result<NoncePrefix, EntropyError> {
    random_bytes().map(NoncePrefix)
}

/// A seed for the core's [`SeededRng`](crate::core::rng::SeededRng) in the real daemon: OS
/// randomness, or, if the OS cannot give any, the time mixed with the process id.
pub fn rng_seed_from_os() -> u64 {
    // The seed drives jitter and node ids, not secrets: time is still unique enough for
    // those, and UUID randomness then still varies per process.
    random_bytes::<8>()
        .map(u64::from_le_bytes)
        .unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            nanos ^ std::process::id() as u64
        })
}

/// Reads a group key file, refusing one group or others may access.
pub fn load_group_key(path: &Path) -> Result<GroupKey, KeyFileError> {
    let secret = keyfile::read_private(path, KeyKind::Group)?;
    Ok(GroupKey::from_bytes(&secret))
}

/// Reads the current group key file and the previous ones still accepted.
pub fn load_keyring(current: &Path, previous: &[PathBuf]) -> Result<Keyring, KeyFileError> {
    let current = load_group_key(current)?;
    let previous = previous
        .iter()
        .map(|path| load_group_key(path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keyring::new(current, previous))
}

/// Writes a new random group key to `path` with mode 0600 (never overwriting a file) and
/// returns its id.
pub fn create_group_key_file(path: &Path) -> Result<KeyId, GroupKeyError> {
    let bytes: [u8; KEY_BYTES] = random_bytes()?;
    // The group key file stays 32 raw bytes, the form other tools expect; the signing keys'
    // files carry a kind tag (see `keyfile`), so one given as the group key is named.
    keyfile::create_private(path, &bytes)?;
    Ok(GroupKey::from_bytes(&bytes).id())
}

/// Reads a signing key file of `kind`, refusing one that group or others may access or that
/// holds another kind of key.
pub fn load_signing_key(path: &Path, kind: KeyKind) -> Result<SecretKey, KeyFileError> {
    Ok(SecretKey::from_seed(keyfile::read_private(path, kind)?))
}

/// Writes a new random signing key of `kind` to `path` (mode 0600, never overwriting) and
/// returns it.
pub fn create_signing_key_file(path: &Path, kind: KeyKind) -> Result<SecretKey, SigningKeyError> {
    let seed: [u8; SECRET_BYTES] = random_bytes()?;
    keyfile::create_private(path, &keyfile::encode(kind, &seed))?;
    Ok(SecretKey::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.key");
        let id = create_group_key_file(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_BYTES as u64);
        assert_eq!(load_group_key(&path).unwrap().id(), id);
        assert!(matches!(
            create_group_key_file(&path),
            Err(GroupKeyError::File(KeyFileError::Exists(_)))
        ));
        assert_eq!(load_group_key(&path).unwrap().id(), id, "key overwritten");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_group_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::TooOpen { mode: 0o644, .. }));
        let message = err.to_string();
        assert!(
            message.contains("group.key") && message.contains("0644"),
            "{message}"
        );

        let short = dir.path().join("short.key");
        std::fs::write(&short, [0u8; 31]).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_group_key(&short),
            Err(KeyFileError::Format { .. })
        ));
        // An officer's signing key given as the group key is named for what it is.
        let officer = dir.path().join("officer.key");
        create_signing_key_file(&officer, KeyKind::Officer).unwrap();
        let message = load_group_key(&officer).unwrap_err().to_string();
        assert!(
            message.contains("holds an officer key, not a group key"),
            "{message}"
        );
    }

    #[test]
    fn signing_key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("officer.key");
        let key = create_signing_key_file(&path, KeyKind::Officer).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_signing_key(&path, KeyKind::Officer).unwrap();
        assert_eq!(loaded.public(), key.public());
        assert!(matches!(
            create_signing_key_file(&path, KeyKind::Officer),
            Err(SigningKeyError::File(KeyFileError::Exists(_)))
        ));
        // An officer key given where the root key belongs is named as such.
        let wrong = load_signing_key(&path, KeyKind::Root)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("holds an officer key, not the root key"),
            "{wrong}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_signing_key(&path, KeyKind::Officer),
            Err(KeyFileError::TooOpen { .. })
        ));
        let short = dir.path().join("short.key");
        std::fs::write(&short, b"xyz").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_signing_key(&short, KeyKind::Officer),
            Err(KeyFileError::Format { .. })
        ));
        // A key written before kind tags (32 raw bytes) still loads.
        let legacy = dir.path().join("legacy.key");
        std::fs::write(&legacy, [5u8; 32]).unwrap();
        std::fs::set_permissions(&legacy, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_signing_key(&legacy, KeyKind::Root).unwrap().public(),
            SecretKey::from_seed([5; 32]).public()
        );
    }
}
