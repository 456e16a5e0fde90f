//! The interface between a [`Peer`] and whatever drives it: the time it is told, where a
//! datagram came in, and the actions it hands back. The driver owns every socket, clock and
//! file; these types only carry data.

use crate::proto::batch::EncodedBatch;
use ::core::net::SocketAddr;

#[cfg(doc)]
use super::Peer;

/// The time, as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (timers).
    pub mono_ms: u64,
    /// Wall-clock Unix milliseconds (entry timestamps). May be wrong; nothing depends on it
    /// for correctness.
    pub unix_ms: u64,
}

/// Which socket a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The multicast group channel.
    Group,
    /// Our unicast whisper socket.
    Whisper,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Multicast this datagram on the group channel.
    SendGroup(Vec<u8>),
    /// Send this datagram to one peer's whisper socket.
    SendTo(SocketAddr, Vec<u8>),
    /// Append these entries (learned from peers) to the log, then tell [`Peer::mark_stored`]
    /// where each went. They come encoded, each with its key: the merge encoded them once
    /// to hash them, and the log stores those bytes, so the driver neither hashes nor
    /// encodes them again. They are already applied in memory (the ledger holds the only
    /// decoded copy); the driver may group-commit them.
    Persist(EncodedBatch),
}
