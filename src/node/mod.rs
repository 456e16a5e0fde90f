//! What the daemon and the offline CLI share: opening the log under the state-directory lock
//! and the ledger requests both serve.
//!
//! An adjust, a points query or a history query does the same thing whether it arrives over
//! the control socket or is run by the CLI directly on the log (no daemon running, which is
//! how an officer edits offline): one code path, so both behave identically.
//!
//! - `open`: opening the log (lock, replay, torn-tail warning) into a ledger or a peer.
//! - `apply`: requests a ledger answers by itself ([`apply()`]): adjust, append, points, history.
//! - [`progress`]: progress bars for long log scans.
//! - this file: the wall clock and the sync core's config, which both need.

mod apply;
mod open;
pub mod progress;

pub use apply::{apply, ApplyError, LedgerCommand};
pub use open::{
    acquire_lock, open_log, open_log_indexed, open_offline, DAEMON_LOCK_WAIT,
    OFFLINE_CHECKPOINT_RECORDS, OFFLINE_LOCK_WAIT,
};

use crate::config::Config;
use crate::core::sync::{PeerConfig, Tuning};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock, in Unix milliseconds.
pub fn system_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The sync core's settings, taken from the config.
pub fn peer_config(config: &Config, whisper_port: u16) -> PeerConfig {
    PeerConfig {
        node_name: config.node.clone(),
        group: config.group.name.clone(),
        whisper_port,
        sync_enabled: config.sync.enabled,
        multicast: config.group.address.is_some(),
        heartbeat_ms: config.sync.heartbeat.as_millis() as u64,
        peer_timeout_ms: config.sync.peer_timeout.as_millis() as u64,
        max_clock_drift_ms: config.sync.max_clock_drift.as_millis() as u64,
        tuning: Tuning::default(),
    }
}
