//! The socket tasks: the only part of the daemon that runs on the tokio runtime besides the
//! control server. They move bytes and nothing else, so no disk read, fsync or replay the
//! core does can keep a socket unserved.
//!
//! * One receive loop per socket reads datagrams and forwards `(channel, from, bytes)` to the
//!   core thread's inbox.
//! * One send task drains the datagrams the core thread queues and sends them from the
//!   whisper socket (which also sends the group's multicast, see [`super::net`]).

use super::event::{Event, Outgoing};
use super::options::LedgerObserver;
use crate::core::sync::Channel;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::debug;

/// Largest datagram we read; anything longer is cut and then rejected by the codec.
const RECV_BUFFER: usize = 2048;
/// Datagrams that may wait for the core thread at once. Past this the receive loops stop
/// reading, so a flood waits in (and overflows from) the kernel's socket buffer as it would
/// with no queue, instead of growing the daemon's memory.
pub(super) const INBOX_DATAGRAMS: usize = 1024;
/// Datagrams the core thread may queue for sending before it waits for the send task.
pub(super) const OUTBOX_DATAGRAMS: usize = 1024;

/// What the receive loops need to hand datagrams to the core thread.
#[derive(Clone)]
pub(super) struct Inbox {
    /// The core thread's event channel.
    pub events: mpsc::Sender<Event>,
    /// Room left in the inbox, in datagrams; the core thread gives a slot back for each
    /// datagram it takes.
    pub slots: Arc<Semaphore>,
    /// Told about each datagram as it arrives.
    pub observer: Option<Arc<dyn LedgerObserver>>,
}

/// Reads datagrams from `socket` and forwards them to the core thread until the core
/// thread is gone.
pub(super) async fn receive_loop(socket: Arc<UdpSocket>, channel: Channel, inbox: Inbox) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        // Room first, then read: while the core is behind, datagrams stay in the kernel.
        let Ok(slot) = inbox.slots.acquire().await else {
            return;
        };
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                debug!(target: "sync", "SYNC {} receive failed: {err}", channel_name(channel));
                continue;
            }
        };
        if let Some(observer) = &inbox.observer {
            observer.datagram_arrived(channel, from);
        }
        // The core thread returns the slot once it has taken the datagram.
        slot.forget();
        let bytes = buf[..len].to_vec();
        let datagram = Event::Datagram {
            channel,
            from,
            bytes,
        };
        if inbox.events.send(datagram).is_err() {
            return;
        }
    }
}

/// Sends what the core thread queues, until the core thread drops its end and the queue is
/// empty (so the datagrams of a graceful stop still go out).
pub(super) async fn send_loop(
    socket: Arc<UdpSocket>,
    mut outbox: tokio::sync::mpsc::Receiver<Outgoing>,
    send_errors: Arc<AtomicU64>,
) {
    while let Some(Outgoing { to, bytes }) = outbox.recv().await {
        if let Err(err) = socket.send_to(&bytes, to).await {
            send_errors.fetch_add(1, Ordering::Relaxed);
            debug!(target: "sync", "SYNC send to {to} failed: {err}");
        }
    }
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Group => "group",
        Channel::Whisper => "whisper",
    }
}
