//! Officer keys, entry signatures and the officer roster kept in the log.
//!
//! Every entry may carry a [`Seal`]: the signer's ed25519 public key and a signature over a
//! canonical encoding of every other field (postcard of [`SignedFields`] after a domain
//! separation prefix). A seal is checked once, when an entry arrives from a peer; the log on
//! disk is trusted (checksummed, written by us), so a million-entry replay does no crypto.
//!
//! Which signed entries *count* is a pure function of the set of entries: replay them in
//! (at, digest) order; a roster change counts only if signed by the group's root key, and a point
//! entry only if its signer is an officer at that point of the order ([`Roster::judge`]).
//! Every peer holding the same set therefore computes the same totals, whatever order the
//! entries arrived in.

use crate::proto::entry::{Entry, EntryId, EntryKind, Hlc};
pub use crate::store::keyfile::KeyKind;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use thiserror::Error;

/// Prefix of every signed message, so a signature made for an entry can never be replayed
/// as a signature over anything else signed with the same key.
const SIGNING_DOMAIN: &[u8] = b"lootsync entry v1\0";

/// An ed25519 public key. Its one text form, used in config, commands and output, is 64
/// lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<PublicKey, KeyError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError::BadPublicKey(
                "expected 64 hex digits (as printed by `lootsync keygen officer` or `lootsync keygen root`)".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        }
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::BadPublicKey("not a valid ed25519 point".into()))?;
        Ok(PublicKey(bytes))
    }
}

/// The signature part of an entry: who signed it and the ed25519 signature (R and s halves,
/// 32 bytes each, so serde needs no big-array support).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The signer's public key.
    pub signer: PublicKey,
    /// First half of the signature (the point R).
    pub r: [u8; 32],
    /// Second half of the signature (the scalar s).
    pub s: [u8; 32],
}

/// Everything an entry's signature covers: every field except the signature itself, with
/// the signer's key included so a signature cannot be re-attributed.
#[derive(Serialize)]
struct SignedFields<'a> {
    id: &'a EntryId,
    at: Hlc,
    actor: &'a str,
    target: &'a str,
    delta: i64,
    new_total: i64,
    reason: &'a str,
    kind: &'a EntryKind,
    signer: &'a PublicKey,
}

fn signed_message(entry: &Entry, signer: &PublicKey) -> Vec<u8> {
    let fields = SignedFields {
        id: &entry.id,
        at: entry.at,
        actor: &entry.actor,
        target: &entry.target,
        delta: entry.delta,
        new_total: entry.new_total,
        reason: &entry.reason,
        kind: &entry.kind,
        signer,
    };
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend(postcard::to_stdvec(&fields).expect("signed fields always serialize"));
    message
}

/// Why a key, key file or signature is not acceptable.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A public key in text form does not parse.
    #[error("bad public key: {0}")]
    BadPublicKey(String),
    /// A key file could not be written or read, or holds another kind of key.
    #[error(transparent)]
    File(#[from] crate::store::keyfile::KeyFileError),
    /// The OS random source failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

/// Why an entry's seal does not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// The signer field is not a valid ed25519 key.
    #[error("signer is not a valid public key")]
    BadSigner,
    /// The signature does not match the entry.
    #[error("signature does not match the entry")]
    BadSignature,
}

/// A secret signing key (an officer's, or the group's root key: both are plain ed25519
/// keypairs), loaded from or written to a kind-tagged key file ([`crate::store::keyfile`]) with
/// mode 0600.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A key from 32 secret bytes (tests and the simulator use fixed seeds).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// A fresh random key from the OS.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey::from_seed(seed))
    }

    /// Writes a new random key of `kind` to `path` (mode 0600, never overwriting) and
    /// returns it.
    pub fn create_file(path: &Path, kind: KeyKind) -> Result<SecretKey, KeyError> {
        let key = SecretKey::generate()?;
        crate::store::keyfile::create_private(
            path,
            &crate::store::keyfile::encode(kind, &key.0.to_bytes()),
        )?;
        Ok(key)
    }

    /// Loads a key file of `kind`, refusing one that other users may read or that holds
    /// another kind of key.
    pub fn load(path: &Path, kind: KeyKind) -> Result<SecretKey, KeyError> {
        Ok(SecretKey::from_seed(crate::store::keyfile::read_private(
            path, kind,
        )?))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `entry` in place (replacing any earlier seal).
    pub fn sign(&self, entry: &mut Entry) {
        let signer = self.public();
        let signature = self.0.sign(&signed_message(entry, &signer)).to_bytes();
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&signature[..32]);
        s.copy_from_slice(&signature[32..]);
        entry.seal = Some(Seal { signer, r, s });
    }
}

/// Checks an entry's seal, if it has one. An unsigned entry passes (whether it *counts* is
/// the roster's decision).
pub fn verify(entry: &Entry) -> Result<(), SealError> {
    let Some(seal) = &entry.seal else {
        return Ok(());
    };
    let key = VerifyingKey::from_bytes(&seal.signer.0).map_err(|_| SealError::BadSigner)?;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&seal.r);
    bytes[32..].copy_from_slice(&seal.s);
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(&signed_message(entry, &seal.signer), &signature)
        .map_err(|_| SealError::BadSignature)
}
