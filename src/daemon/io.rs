//! The socket tasks: the only part of the daemon that runs on the tokio runtime besides the
//! control server. They move bytes and nothing else, so no disk read, fsync or replay the
//! core does can keep a socket unserved.
//!
//! * One receive loop per socket reads datagrams and forwards `(channel, from, bytes)` to the
//!   core thread's inbox.
//! * The core thread sends from the whisper socket itself (which also sends the group's
//!   multicast, see [`super::net`]) without waiting ([`Outlet`]): a datagram then leaves
//!   as soon as the core has decided it, instead of crossing to another thread first.
//! * One send task sends what the core could not send at once (the socket buffer was
//!   full), in order: once something waits for it, the core queues everything behind it
//!   until the queue is empty again.

use super::event::{Event, Outgoing};
use super::options::LedgerObserver;
use crate::core::sync::Channel;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
const OUTBOX_DATAGRAMS: usize = 1024;

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

/// How the core thread sends: straight from the whisper socket when nothing waits in the
/// send task's queue and the socket takes the datagram at once, else through that queue.
pub(super) struct Outlet {
    socket: Arc<UdpSocket>,
    queue: tokio::sync::mpsc::Sender<Outgoing>,
    /// Datagrams in the queue the send task has not sent yet. While any wait, the core
    /// queues too, so datagrams leave in the order the core decided them.
    queued: Arc<AtomicUsize>,
    send_errors: Arc<AtomicU64>,
}

impl Outlet {
    /// An outlet on `socket`, and the send task that serves its queue (to be spawned on the
    /// runtime).
    pub(super) fn new(
        socket: Arc<UdpSocket>,
        send_errors: Arc<AtomicU64>,
    ) -> (Outlet, impl std::future::Future<Output = ()>) {
        let (queue, outgoing) = tokio::sync::mpsc::channel(OUTBOX_DATAGRAMS);
        let queued = Arc::new(AtomicUsize::new(0));
        let task = send_loop(
            socket.clone(),
            outgoing,
            queued.clone(),
            send_errors.clone(),
        );
        let outlet = Outlet {
            socket,
            queue,
            queued,
            send_errors,
        };
        (outlet, task)
    }

    /// Sends `bytes` to `to`. Never waits for the socket; waits only while the send task
    /// is a full queue behind.
    pub(super) fn send(&self, to: SocketAddr, bytes: Vec<u8>) {
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.socket.try_send_to(&bytes, to) {
                Ok(_) => return,
                // The socket buffer is full (or tokio has not seen it writable yet): the
                // send task waits for it.
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => {
                    self.send_errors.fetch_add(1, Ordering::Relaxed);
                    debug!(target: "sync", "SYNC send to {to} failed: {err}");
                    return;
                }
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        // An error means the send task is gone, which happens only as the runtime shuts
        // down.
        if self.queue.blocking_send(Outgoing { to, bytes }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Sends what the core thread queued, until the core thread drops its end and the queue is
/// empty (so the datagrams of a graceful stop still go out).
async fn send_loop(
    socket: Arc<UdpSocket>,
    mut outbox: tokio::sync::mpsc::Receiver<Outgoing>,
    queued: Arc<AtomicUsize>,
    send_errors: Arc<AtomicU64>,
) {
    while let Some(Outgoing { to, bytes }) = outbox.recv().await {
        if let Err(err) = socket.send_to(&bytes, to).await {
            send_errors.fetch_add(1, Ordering::Relaxed);
            debug!(target: "sync", "SYNC send to {to} failed: {err}");
        }
        // Only after the send: the core must not overtake a datagram still in our hands.
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Group => "group",
        Channel::Whisper => "whisper",
    }
}
