//! The public halves of signing: an ed25519 [`PublicKey`] and the [`Seal`] (signer and
//! signature) an entry carries. Plain types, below both the entry that holds them and the
//! signing code that makes and checks them ([`crate::proto::signature`]).

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

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

/// Why a public key's text form does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PublicKeyParseError {
    /// Not 64 hex digits.
    #[error(
        "bad public key: expected 64 hex digits (as printed by `lootsync keygen officer` or \
         `lootsync keygen root`)"
    )]
    NotHex,
    /// 64 hex digits, but not a point on the curve, so no signature could ever match it.
    #[error("bad public key: not a valid ed25519 point")]
    NotAPoint,
}

impl FromStr for PublicKey {
    type Err = PublicKeyParseError;

    fn from_str(text: &str) -> Result<PublicKey, PublicKeyParseError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PublicKeyParseError::NotHex);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| PublicKeyParseError::NotHex)?;
        }
        VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyParseError::NotAPoint)?;
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
