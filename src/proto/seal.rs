//! The group key: sealing every datagram so only key holders can read or inject traffic.
//!
//! A sealed datagram is
//! `[SEALED_VERSION][key id: 4][nonce: 24][XChaCha20-Poly1305(clear datagram) + tag: 16]`.
//! The sealed plaintext is the whole clear datagram of [`crate::proto::wire`] (its own
//! version byte included), so [`crate::proto::wire::decode`] runs unchanged after
//! [`Sealer::open`]. The version byte and key id are authenticated as associated data. The
//! whole sealed datagram stays within [`MAX_DATAGRAM`]: the packers fill clear datagrams only
//! up to [`crate::proto::limits::MAX_MESSAGE`], which leaves room for [`SEAL_OVERHEAD`] (the
//! layout's sizes live in [`crate::proto::limits`], below both this module and the codec).
//!
//! Keys come in as bytes: reading key files and drawing fresh keys is the store's business
//! (`store::keys`, a layer above), so this module stays pure.
//!
//! Key rotation without downtime: a [`Keyring`] seals with its current key and opens with
//! the current key or any previous one, picked by the key id (a hash of the key, so it
//! names a key without revealing it). Roll a new key out as `previous_key_files` first,
//! then swap it to `group_key_file` everywhere, then drop the old one.
//!
//! Nonces: XChaCha20's 192-bit nonce is `[16-byte per-process random prefix][64-bit
//! counter]`. The prefix comes from the operating system's entropy in the daemon (see
//! `store::keys::nonce_prefix_from_os`), never from the core's seeded SplitMix RNG: that
//! generator's state is revealed by the node id it broadcasts, and a repeated nonce under one
//! key would leak plaintext and allow forgeries. With a fresh 128-bit random prefix per
//! process and a counter within it, two processes sharing a key repeat a nonce with
//! probability ~2^-128 per pair, and one process never does.

use crate::proto::limits::{KEY_ID_BYTES, MAX_DATAGRAM, NONCE_BYTES, SEAL_OVERHEAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use thiserror::Error;

/// Leading byte of a sealed datagram (clear datagrams start with `wire::WIRE_VERSION`).
pub const SEALED_VERSION: u8 = 0xA1;
/// Bytes of a group key.
pub const KEY_BYTES: usize = 32;

/// Names a key in sealed datagrams: the first bytes of a domain-separated SHA-256 of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_BYTES]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A 32-byte group key. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct GroupKey {
    cipher: XChaCha20Poly1305,
    id: KeyId,
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupKey({})", self.id)
    }
}

impl GroupKey {
    /// A key from its raw bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> GroupKey {
        let digest = Sha256::new()
            .chain_update(b"lootsync group key id v1\0")
            .chain_update(bytes)
            .finalize();
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        GroupKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
            id: KeyId(id),
        }
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// The keys a daemon accepts: the current one (also used to seal) and previous ones.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: GroupKey,
    previous: Vec<GroupKey>,
}

impl Keyring {
    /// A keyring sealing with `current` and also opening datagrams sealed with `previous`.
    pub fn new(current: GroupKey, previous: Vec<GroupKey>) -> Keyring {
        Keyring { current, previous }
    }

    /// Id of the key used for sealing.
    pub fn current_id(&self) -> KeyId {
        self.current.id()
    }

    fn find(&self, id: KeyId) -> Option<&GroupKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

/// The per-process random part of every nonce: 128 bits from the operating system in the
/// daemon (`store::keys::nonce_prefix_from_os`), fixed bytes in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoncePrefix(pub [u8; 16]);

/// Why a datagram could not be sealed or opened.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DatagramSealError {
    /// A clear datagram reached a daemon that has a group key.
    #[error("unsealed datagram (this group requires the group key)")]
    Unsealed,
    /// A sealed datagram reached a daemon without a group key.
    #[error("sealed datagram but no group key is configured")]
    NoKey,
    /// Too short to hold the sealed header and tag.
    #[error("sealed datagram of {0} bytes is too short")]
    Short(usize),
    /// Longer than any datagram a peer sends (rejected before spending a decryption).
    #[error("sealed datagram of {0} bytes exceeds the 1200-byte limit")]
    TooLarge(usize),
    /// Sealed with a key id we do not hold.
    #[error("sealed with unknown key id {0}")]
    UnknownKey(KeyId),
    /// The tag did not verify: wrong key, tampered, or forged.
    #[error("authentication failed for key id {0}")]
    BadTag(KeyId),
    /// Sealing itself failed (plaintext too long for the cipher; cannot happen below 1200).
    #[error("cannot seal datagram")]
    Seal,
}

impl DatagramSealError {
    /// Short label for drop counters (`dropped_<label>`).
    pub fn label(&self) -> &'static str {
        match self {
            DatagramSealError::Unsealed => "unsealed",
            DatagramSealError::NoKey => "sealed_no_key",
            DatagramSealError::Short(_) | DatagramSealError::BadTag(_) => "bad_key",
            DatagramSealError::TooLarge(_) => "too_large",
            DatagramSealError::UnknownKey(_) => "unknown_key",
            DatagramSealError::Seal => "seal_failed",
        }
    }
}

/// Seals outgoing and opens incoming datagrams; without a keyring it passes clear datagrams
/// through (the loopback quick start).
#[derive(Clone, Debug)]
pub struct Sealer {
    keyring: Option<Keyring>,
    prefix: NoncePrefix,
    counter: u64,
}

impl Default for Sealer {
    fn default() -> Sealer {
        Sealer::clear()
    }
}

impl Sealer {
    /// No key: datagrams travel in the clear.
    pub fn clear() -> Sealer {
        Sealer {
            keyring: None,
            prefix: NoncePrefix([0; 16]),
            counter: 0,
        }
    }

    /// Seals with `keyring`; nonces start from `prefix` (see the module docs).
    pub fn new(keyring: Keyring, prefix: NoncePrefix) -> Sealer {
        Sealer {
            keyring: Some(keyring),
            prefix,
            counter: 0,
        }
    }

    /// Id of the key datagrams are sealed with; `None` without a group key.
    pub fn key_id(&self) -> Option<KeyId> {
        self.keyring.as_ref().map(Keyring::current_id)
    }

    /// Whether a group key is configured.
    pub fn is_keyed(&self) -> bool {
        self.keyring.is_some()
    }

    /// Bytes this sealer adds to each datagram.
    pub fn overhead(&self) -> usize {
        if self.is_keyed() {
            SEAL_OVERHEAD
        } else {
            0
        }
    }

    /// Seals one clear datagram (returns it unchanged without a key).
    pub fn seal(&mut self, clear: Vec<u8>) -> Result<Vec<u8>, DatagramSealError> {
        let Some(keyring) = &self.keyring else {
            return Ok(clear);
        };
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..16].copy_from_slice(&self.prefix.0);
        nonce[16..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter = self.counter.wrapping_add(1);
        let key = &keyring.current;
        let mut header = Vec::with_capacity(SEAL_OVERHEAD + clear.len());
        header.push(SEALED_VERSION);
        header.extend_from_slice(&key.id.0);
        let aad_len = header.len();
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &clear,
                    aad: &header[..aad_len],
                },
            )
            .map_err(|_| DatagramSealError::Seal)?;
        header.extend_from_slice(&nonce);
        header.extend_from_slice(&sealed);
        Ok(header)
    }

    /// Opens one received datagram, giving the clear datagram for `wire::decode`.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<Cow<'a, [u8]>, DatagramSealError> {
        open_with(self.keyring.as_ref(), datagram)
    }
}

/// Opens a datagram with `keyring` (or expects a clear one without); shared by [`Sealer`] and
/// the fuzz targets.
pub fn open_with<'a>(
    keyring: Option<&Keyring>,
    datagram: &'a [u8],
) -> Result<Cow<'a, [u8]>, DatagramSealError> {
    let sealed = datagram.first() == Some(&SEALED_VERSION);
    let Some(keyring) = keyring else {
        return if sealed {
            Err(DatagramSealError::NoKey)
        } else {
            Ok(Cow::Borrowed(datagram))
        };
    };
    if !sealed {
        return Err(DatagramSealError::Unsealed);
    }
    if datagram.len() < SEAL_OVERHEAD {
        return Err(DatagramSealError::Short(datagram.len()));
    }
    if datagram.len() > MAX_DATAGRAM {
        return Err(DatagramSealError::TooLarge(datagram.len()));
    }
    let (aad, rest) = datagram.split_at(1 + KEY_ID_BYTES);
    let mut id = [0u8; KEY_ID_BYTES];
    id.copy_from_slice(&aad[1..]);
    let id = KeyId(id);
    let key = keyring.find(id).ok_or(DatagramSealError::UnknownKey(id))?;
    let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
    key.cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Cow::Owned)
        .map_err(|_| DatagramSealError::BadTag(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(byte: u8) -> Keyring {
        Keyring::new(GroupKey::from_bytes(&[byte; KEY_BYTES]), Vec::new())
    }

    #[test]
    fn seal_open_round_trip_and_overhead() {
        let mut sealer = Sealer::new(keyring(1), NoncePrefix([7; 16]));
        let clear = b"\x01hello group".to_vec();
        let sealed = sealer.seal(clear.clone()).unwrap();
        assert_eq!(sealed.len(), clear.len() + SEAL_OVERHEAD);
        assert_eq!(sealed[0], SEALED_VERSION);
        assert!(
            !sealed.windows(5).any(|w| w == b"hello"),
            "plaintext leaked"
        );
        assert_eq!(sealer.open(&sealed).unwrap().as_ref(), clear.as_slice());
        // Every datagram gets a fresh nonce.
        let again = sealer.seal(clear.clone()).unwrap();
        assert_ne!(again[5..29], sealed[5..29]);
    }

    #[test]
    fn wrong_key_tamper_and_mode_mismatch_are_rejected() {
        let mut a = Sealer::new(keyring(1), NoncePrefix([1; 16]));
        let b = Sealer::new(keyring(2), NoncePrefix([2; 16]));
        let sealed = a.seal(b"\x01secret".to_vec()).unwrap();
        assert!(matches!(
            b.open(&sealed),
            Err(DatagramSealError::UnknownKey(_))
        ));
        // Same key id claimed, wrong key: the tag fails.
        let mut forged = sealed.clone();
        forged[1..5].copy_from_slice(&b.keyring.as_ref().unwrap().current_id().0);
        assert!(matches!(b.open(&forged), Err(DatagramSealError::BadTag(_))));
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x40;
            assert!(a.open(&flipped).is_err(), "flip at {i} accepted");
        }
        for cut in 0..sealed.len() {
            assert!(a.open(&sealed[..cut]).is_err(), "cut at {cut} accepted");
        }
        assert_eq!(a.open(b"\x01clear"), Err(DatagramSealError::Unsealed));
        let huge = a.seal(vec![1; MAX_DATAGRAM]).unwrap();
        assert_eq!(a.open(&huge), Err(DatagramSealError::TooLarge(huge.len())));
        assert_eq!(Sealer::clear().open(&sealed), Err(DatagramSealError::NoKey));
        assert_eq!(
            Sealer::clear().open(b"\x01clear").unwrap().as_ref(),
            b"\x01clear"
        );
    }

    /// Regression for fuzz finding `fuzz/regressions/sealed_datagram/crash-6101f2c8…`: a
    /// 1202-byte clear message sealed by a peer is 1247 bytes, over the datagram limit. It
    /// must be refused as too large without decrypting. (That a keyed sync peer counts the
    /// drop is checked with the sync core's sealing tests.)
    #[test]
    fn fuzz_regression_sealed_datagram_over_the_limit() {
        let mut message = vec![0x7a, 0x01, 0x03, 0x00, 0x01, 0x03, 0x01];
        message.resize(1202, 0x16);
        let mut sender = Sealer::new(keyring(7), NoncePrefix([2; 16]));
        let sealed = sender.seal(message).unwrap();
        assert_eq!(sealed.len(), 1247);
        assert_eq!(sender.open(&sealed), Err(DatagramSealError::TooLarge(1247)));
    }

    #[test]
    fn previous_keys_still_open_while_current_seals() {
        let old = GroupKey::from_bytes(&[1; KEY_BYTES]);
        let new = GroupKey::from_bytes(&[2; KEY_BYTES]);
        let mut old_peer = Sealer::new(Keyring::new(old.clone(), vec![]), NoncePrefix([1; 16]));
        let mut rotated = Sealer::new(Keyring::new(new.clone(), vec![old]), NoncePrefix([2; 16]));
        let from_old = old_peer.seal(b"\x01a".to_vec()).unwrap();
        assert_eq!(rotated.open(&from_old).unwrap().as_ref(), b"\x01a");
        let from_rotated = rotated.seal(b"\x01b".to_vec()).unwrap();
        assert_eq!(&from_rotated[1..5], &new.id().0);
        // The old-key-only peer cannot read the new key: rotation finishes by giving
        // everyone the new key before it becomes current anywhere.
        assert!(old_peer.open(&from_rotated).is_err());
    }
}
