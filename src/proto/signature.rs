//! Entry signatures: signing an entry with a [`SecretKey`] and checking the [`Seal`] it
//! carries.
//!
//! A seal is the signer's ed25519 public key and a signature over a canonical encoding of
//! every other field (postcard of `SignedFields` after a domain separation prefix). A seal
//! is checked once, when an entry arrives from a peer; the log on disk is trusted
//! (checksummed, written by us), so a million-entry replay does no crypto. Which signed
//! entries *count* is the roster's decision ([`crate::core::roster`]).

use crate::proto::entry::{Entry, EntryId, EntryKind};
use crate::proto::hlc::Hlc;
use crate::proto::keys::{PublicKey, Seal};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use std::fmt;
use thiserror::Error;

/// Prefix of every signed message, so a signature made for an entry can never be replayed
/// as a signature over anything else signed with the same key.
const SIGNING_DOMAIN: &[u8] = b"lootsync entry v1\0";

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

/// Why an entry's seal does not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signer field is not a valid ed25519 key.
    #[error("signer is not a valid public key")]
    BadSigner,
    /// The signature does not match the entry.
    #[error("signature does not match the entry")]
    BadSignature,
}

/// A secret signing key (an officer's, or the group's root key: both are plain ed25519
/// keypairs). Made from its 32 secret bytes; where those come from (a key file, fresh
/// entropy) is the business of the store layer's `store::keys`, so signing stays pure.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A key from its 32 secret bytes (read from a key file, drawn from the OS, or a fixed
    /// seed in tests and the simulator).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
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
pub fn verify(entry: &Entry) -> Result<(), SignatureError> {
    let Some(seal) = &entry.seal else {
        return Ok(());
    };
    let key = VerifyingKey::from_bytes(&seal.signer.0).map_err(|_| SignatureError::BadSigner)?;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&seal.r);
    bytes[32..].copy_from_slice(&seal.s);
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(&signed_message(entry, &seal.signer), &signature)
        .map_err(|_| SignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(ms: u64) -> Entry {
        crate::testing::EntryBuilder::at_ms(ms)
            .id_random([3; 10])
            .actor("alice")
            .target("Bob")
            .delta(5)
            .new_total(5)
            .reason("raid")
            .build()
    }

    #[test]
    fn public_key_text_round_trips_and_bad_text_is_named() {
        let key = SecretKey::from_seed([9; 32]).public();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert!("abc".parse::<PublicKey>().is_err());
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
    }

    #[test]
    fn signature_verifies_and_any_change_breaks_it() {
        let key = SecretKey::from_seed([1; 32]);
        let mut e = points(1_000);
        key.sign(&mut e);
        assert_eq!(verify(&e), Ok(()));
        let mut changed = e.clone();
        changed.delta = 500;
        assert_eq!(verify(&changed), Err(SignatureError::BadSignature));
        let mut reattributed = e.clone();
        reattributed.seal.as_mut().unwrap().signer = SecretKey::from_seed([2; 32]).public();
        assert_eq!(verify(&reattributed), Err(SignatureError::BadSignature));
        let mut flipped = e.clone();
        flipped.seal.as_mut().unwrap().s[0] ^= 1;
        assert!(verify(&flipped).is_err());
        assert_eq!(verify(&points(5)), Ok(()), "unsigned passes the seal check");
    }
}
