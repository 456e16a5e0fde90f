//! How a daemon is run beyond its config: the hooks tests, benchmarks and the CLI plug in.

use super::clock::{Clock, SystemClock};
use crate::core::sync::Channel;
use crate::proto::entry::Entry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Why debug logging could not be switched (whatever the installed [`LogControl`] hit).
pub type LogControlError = Box<dyn std::error::Error + Send + Sync>;

/// Switches the `sync` target's debug logging at run time (the CLI installs one backed by a
/// tracing reload handle; tests can install their own).
pub trait LogControl: Send + Sync + 'static {
    /// Turns SYNC debug lines on or off.
    fn set_sync_debug(&self, enabled: bool) -> Result<(), LogControlError>;

    /// Replaces the configured filter (`log.level`, on reload), keeping the SYNC switch.
    fn set_level(&self, _level: &str) -> Result<(), LogControlError> {
        Err("this daemon's log filter cannot be changed at run time".into())
    }
}

/// Sees entries enter a daemon's ledger the moment they do (a measurement hook: the
/// benchmarks time propagation with it, where polling the control socket would add
/// its own round trip and quantisation).
pub trait LedgerObserver: Send + Sync + 'static {
    /// A local adjust is durable and applied; called on the core thread just before its
    /// success reply is sent, so keep it quick.
    fn acknowledged(&self, _entry: &Entry) {}
    /// Entries learned from peers were applied to the ledger and appended to the log; called
    /// on the core thread, so keep it quick.
    fn merged(&self, _entries: &[Entry]) {}
    /// A datagram from `from` was read from a socket. Called on that socket's receive task
    /// before the core thread sees it, so it shows whether the sockets are served while the
    /// core is busy.
    fn datagram_arrived(&self, _channel: Channel, _from: SocketAddr) {}
}

/// How a daemon is run beyond its config: hooks for tests and tools.
#[derive(Clone)]
pub struct DaemonOptions {
    /// Run-time control of debug logging; `None` when logging is not ours to change.
    pub log_control: Option<Arc<dyn LogControl>>,
    /// Wall clock for entry timestamps.
    pub clock: Arc<dyn Clock>,
    /// Fraction of received datagrams to drop on purpose (test hook for lossy networks).
    pub receive_drop_rate: f64,
    /// Seed for the peer's RNG; random when `None`.
    pub seed: Option<u64>,
    /// Told about every entry entering the ledger; `None` in normal runs.
    pub observer: Option<Arc<dyn LedgerObserver>>,
    /// The file the config was read from, read again on SIGHUP (`systemctl reload`);
    /// `None`: a reload only says there is nothing to re-read.
    pub config_file: Option<PathBuf>,
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            log_control: None,
            clock: Arc::new(SystemClock),
            receive_drop_rate: 0.0,
            seed: None,
            observer: None,
            config_file: None,
        }
    }
}
