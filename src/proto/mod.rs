//! Protocol types: pure data and functions shared by every layer above, with no I/O.
//!
//! - [`entry`]: the immutable log entry, its content digest, its (at, digest) key and the
//!   hybrid logical clock.
//! - [`signature`]: officer and root keys and entry signatures.
//! - [`wire`]: the datagram codec (version byte + postcard).
//! - [`seal`]: the group key: sealing and opening datagrams (XChaCha20-Poly1305).

pub mod entry;
pub mod seal;
pub mod signature;
pub mod wire;
