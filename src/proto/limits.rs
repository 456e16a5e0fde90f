//! Datagram sizes, in one place below both the codec ([`crate::proto::wire`]), which packs
//! messages to fit, and the sealing layer ([`crate::proto::seal`]), which adds its overhead
//! and refuses anything larger.

/// Largest datagram we send or accept: small enough to never fragment on a 1280+ MTU path.
/// With a group key this bounds the *sealed* datagram.
pub const MAX_DATAGRAM: usize = 1200;
/// Bytes of the key id in each sealed datagram.
pub const KEY_ID_BYTES: usize = 4;
/// Bytes of the XChaCha20-Poly1305 nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// What sealing adds to a clear datagram: the sealed version byte, the key id, the nonce
/// and the tag.
pub const SEAL_OVERHEAD: usize = 1 + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;
/// Largest clear datagram we build: room is left for the group-key seal, so a message that
/// fits here fits [`MAX_DATAGRAM`] once sealed (with or without a key, so packing is the
/// same either way).
pub const MAX_MESSAGE: usize = MAX_DATAGRAM - SEAL_OVERHEAD;
