//! The messages between the daemon's threads: what the core thread is told ([`Event`]) and
//! what it hands the send task ([`Outgoing`]). In a file of their own so the core thread, the
//! socket tasks and the commit thread all depend on them and not on each other.

use super::resolve::ListedUpdate;
use crate::control::{Outcome, Request};
use crate::core::sync::Channel;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// What the core thread is told.
pub(super) enum Event {
    /// A datagram read from one of the sockets.
    Datagram {
        /// Which socket.
        channel: Channel,
        /// Its source address.
        from: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A control request and where its reply goes.
    Control(Request, oneshot::Sender<Outcome>),
    /// `[peers] addresses` were resolved (again): the addresses to contact and how each
    /// configured address resolved.
    Listed(ListedUpdate),
    /// The group commit in flight finished with this outcome.
    Flushed(std::io::Result<()>),
    /// The replay handed to the replay thread ended: its totals, or none if it stopped
    /// early (stale) or failed (`failed` is true when its thread panicked).
    Replayed {
        /// What it summed.
        result: crate::core::ledger::ReplayResult,
        /// Whether the replay panicked.
        failed: bool,
    },
    /// Reload: apply a re-read config and keys, and say what was done.
    Reload(
        Box<super::reload::Reload>,
        oneshot::Sender<super::reload::Reloaded>,
    ),
    /// Graceful shutdown: send what is queued, flush, remove the control socket, unlock.
    Stop,
    /// Stop at once, as a crash would: nothing flushed beyond what is already synced.
    Abort,
}

/// A datagram the core thread wants sent.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Where to (the group address for multicast, a peer's address for unicast).
    pub to: SocketAddr,
    /// The sealed datagram.
    pub bytes: Vec<u8>,
}
