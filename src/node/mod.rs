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

pub use apply::{apply, judged_under, ApplyError, LedgerCommand};
pub use open::{
    acquire_lock, open_log, open_log_indexed, open_offline, release_freed_memory, DAEMON_LOCK_WAIT,
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
        tuning: tuning(config),
    }
}

/// The protocol knobs the config sets (`[peers]`); the rest keep their defaults.
fn tuning(config: &Config) -> Tuning {
    let defaults = Tuning::default();
    let max_learned = config.peers.max_learned;
    Tuning {
        // Never below the heartbeat: a silent listed peer is not tried more often than an
        // answering one hears from us.
        listed_retry_max_ms: config
            .peers
            .retry_max
            .max(config.sync.heartbeat)
            .as_millis() as u64,
        max_learned_peers: max_learned,
        // The peer table and the per-address limits must hold every learned peer besides
        // the listed and LAN ones, or a hub's spokes would push each other out.
        max_peers: defaults.max_peers.max(max_learned + 64),
        max_sources: defaults.max_sources.max(2 * max_learned),
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn peers_keys_reach_the_sync_core() {
        let mut config = Config::default();
        config.peers.retry_max = Duration::from_secs(40);
        config.peers.max_learned = 1_000;
        let tuning = peer_config(&config, 1).tuning;
        assert_eq!(tuning.listed_retry_max_ms, 40_000);
        assert_eq!(tuning.max_learned_peers, 1_000);
        // Room for every learned peer in the peer table and the per-address limits.
        assert!(tuning.max_peers >= 1_000 + 64);
        assert!(tuning.max_sources >= 2_000);
        // A heartbeat longer than the ceiling wins.
        config.sync.heartbeat = Duration::from_secs(60);
        assert_eq!(peer_config(&config, 1).tuning.listed_retry_max_ms, 60_000);
        let defaults = peer_config(&Config::default(), 1).tuning;
        assert_eq!(defaults.listed_retry_max_ms, 15_000);
        assert_eq!(defaults.max_learned_peers, 256);
    }
}
