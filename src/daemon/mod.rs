//! The daemon: wires the sans-IO [`Peer`](crate::core::sync::Peer) to real sockets, the log
//! file, the control socket and time. Every protocol decision is the peer's.
//!
//! # Threads
//!
//! The thread that serves the sockets never touches the disk. The peer reads entry bodies
//! back from the log (to answer a range) and a local adjust
//! waits for its fdatasync, so the peer and the log live on a **core thread** of their own
//! (a plain `std::thread`, `driver`), fed by one channel and waiting on it with a timeout
//! until the peer's next timer or the batch-flush deadline. Everything else only moves
//! bytes:
//!
//! * **receive loops** (tokio tasks, one per socket, `io`) read datagrams and forward
//!   `(channel, from, bytes)` to the core thread; a bounded inbox makes them stop reading
//!   while the core is far behind, so a flood waits in the kernel, not in our memory;
//! * the **send task** drains the datagrams the core thread queues;
//! * the **control server** (tokio tasks, [`crate::control::server`]) parses requests and
//!   forwards them to the core thread with a channel for the reply;
//! * the **group-commit thread** (`commit`) runs the fdatasync of merged remote entries
//!   and reports back to the core thread as an event;
//! * the **replay thread** (`replayer`) sums the totals again when a merged roster change
//!   sorts before entries already held (every body read back), from a snapshot the ledger
//!   hands out, and reports back as an event; totals lag meanwhile;
//! * the **resolver task** ([`resolve`]) looks up the `[peers]` host names at start-up and
//!   every `resolve_interval`, and hands the core thread the addresses as an event (a slow
//!   DNS server must not stall the core; a name that does not resolve is a warning and a
//!   retry, never a failure);
//! * **history**, and the roster query of `officer add`/`officer remove`, are built on a
//!   short-lived thread from a snapshot of the index, so reading a big log back stalls
//!   neither sync nor the sockets;
//! * a **checkpoint** of the log (`checkpoint`) is written from time to time on a
//!   short-lived thread of its own, from a snapshot the core thread takes.
//!
//! The core thread also holds the group socket, if there is one (no `[group] address`, no
//! multicast and no group socket), to join and leave the multicast group when sync is
//! switched (plain system calls that never wait).
//!
//! Why a thread and not a core that asks for bodies through actions: the ledger reads bodies
//! deep inside replay and answering, and splitting every such read into a request and a
//! later input would turn straight-line code into a state machine for no gain in what can
//! be tested; the peer stays sans-IO either way (its reader is injected).
//!
//! A graceful stop runs in this order: stop taking events, send what the peer still queued,
//! wait for the group commit in flight, flush, write a checkpoint, remove the control
//! socket, release the lock.
//!
//! # Files
//! - `start`: start-up: keys, log, sockets and control socket opened in order ([`start()`]).
//! - `driver`: the core thread, the only one that touches the peer and the log.
//! - `commit`: the group-commit thread, where merged entries' fdatasyncs run.
//! - `replayer`: the replay thread, where totals are summed again after a roster change.
//! - [`allocator`]: glibc's allocator told to give large freed buffers back.
//! - `checkpoint`: when checkpoints of the log are written, and the thread writing one.
//! - `io`: the socket tasks: receive loops and the send task.
//! - `event`: the messages between the threads.
//! - `failure_streak`: how often a failure repeating with every attempt is logged.
//! - `status`: what `lootsync status` shows, and the daemon's own counters.
//! - `running`: the handle to a running daemon ([`RunningDaemon`]).
//! - `options`: the hooks tests, benchmarks and the CLI plug in ([`DaemonOptions`]).
//! - `clock`: wall-clock time behind a trait ([`Clock`]), so tests can run a wrong clock.
//! - `error`: why a daemon could not start ([`DaemonError`]).
//! - [`net`]: the two UDP sockets, every option set before bind.
//! - [`notify`]: systemd's service notification protocol.
//! - `reload`: what SIGHUP (`systemctl reload`) re-reads and applies ([`Reloaded`]).
//! - this file: running until a stop signal, reloading on SIGHUP, telling systemd
//!   ([`run_until_signal`]).

pub mod allocator;
mod checkpoint;
mod clock;
mod commit;
mod driver;
mod error;
mod event;
mod failure_streak;
mod io;
pub mod net;
pub mod notify;
mod options;
mod reload;
mod replayer;
mod resolve;
mod running;
mod start;
mod status;

pub use clock::{Clock, OffsetClock, SystemClock};
pub use error::DaemonError;
pub use options::{DaemonOptions, LedgerObserver, LogControl, LogControlError};
pub use reload::{ReloadError, Reloaded};
pub use running::RunningDaemon;
pub use start::start;

use crate::config::Config;
use tracing::{debug, info, warn};

/// Runs a daemon until SIGINT or SIGTERM, then shuts it down gracefully. SIGHUP re-reads
/// `options.config_file` and applies what a running daemon can take ([`RunningDaemon::reload`]).
pub async fn run_until_signal(config: Config, options: DaemonOptions) -> Result<(), DaemonError> {
    // Before start-up: SIGHUP's default action would end the process during a long replay.
    let mut signals = Signals::new();
    let config_file = options.config_file.clone();
    let daemon = start(config, options).await?;
    // `start` returns once the log is replayed and every socket is bound: that is ready.
    notify_systemd("READY=1\nSTATUS=log replayed, sockets up");
    while let Signal::Reload = signals.next().await {
        notify_systemd(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        reload::reload_from_file(&daemon, config_file.as_deref()).await;
        notify_systemd("READY=1\nSTATUS=reloaded, sockets up");
    }
    info!("shutting down");
    notify_systemd("STOPPING=1");
    daemon.stop().await;
    Ok(())
}

/// Tells systemd about a state change; a failure only costs the notification, so it is
/// logged rather than stopping the daemon.
fn notify_systemd(state: &str) {
    match notify::notify(state) {
        Ok(true) => debug!("notified systemd: {}", state.replace('\n', " ")),
        Ok(false) => {}
        Err(err) => warn!("{err}"),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, which systemd wants beside `RELOADING=1`.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill; CLOCK_MONOTONIC always exists
    // on Linux, and on failure `now` stays zero (systemd then only lacks the timestamp).
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// What a signal asks of the daemon.
enum Signal {
    Stop,
    Reload,
}

/// The signals the daemon acts on: SIGINT and SIGTERM stop it, SIGHUP reloads.
struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(err) => {
                warn!("cannot watch {name} ({err})");
                None
            }
        };
        Signals {
            terminate: watch(SignalKind::terminate(), "SIGTERM"),
            interrupt: watch(SignalKind::interrupt(), "SIGINT"),
            hangup: watch(SignalKind::hangup(), "SIGHUP"),
        }
    }

    async fn next(&mut self) -> Signal {
        // A signal that cannot be watched never arrives.
        async fn recv(stream: &mut Option<tokio::signal::unix::Signal>) {
            match stream {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.terminate) => Signal::Stop,
            _ = recv(&mut self.interrupt) => Signal::Stop,
            _ = recv(&mut self.hangup) => Signal::Reload,
        }
    }
}
