//! Protocol types: pure data and functions shared by every layer above, with no I/O and no
//! entropy of their own (keys and nonce prefixes come in as bytes).
//!
//! Bottom up, each module using only those above it in this list:
//! - [`hlc`]: the hybrid logical clock that stamps entries.
//! - [`digest`]: an entry's content digest and its (at, digest) sort key.
//! - [`fingerprint`]: set fingerprints that sync compares.
//! - [`keys`]: ed25519 public keys and the seal (signature) an entry carries.
//! - [`entry`]: the immutable log entry and its bounds.
//! - [`batch`]: entries as their encodings, the way a merge hands them to the log.
//! - [`text`]: rules for new names and reasons, when two names are one player, and escaping
//!   text read back for a terminal.
//! - [`comb`]: fixed-base tables that multiply one point by many scalars quickly.
//! - [`signature`]: signing entries and checking their seals.
//! - [`limits`]: datagram sizes shared by the codec and the sealing layer.
//! - [`wire`]: the datagram codec (version byte + postcard).
//! - [`seal`]: the group key: sealing and opening datagrams (XChaCha20-Poly1305).

pub mod batch;
pub mod comb;
pub mod digest;
pub mod entry;
pub mod fingerprint;
pub mod hlc;
pub mod keys;
pub mod limits;
pub mod seal;
pub mod signature;
pub mod text;
pub mod wire;
