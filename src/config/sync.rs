//! `[sync]`: the timing of peer discovery and replication, and how far a peer's clock may
//! lead ours.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Shortest allowed heartbeat; faster would flood the group for no benefit.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest allowed heartbeat; slower would make new peers wait minutes to be noticed.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(5 * 60);
/// Longest allowed peer timeout; also keeps deadline arithmetic far from overflow.
pub const MAX_PEER_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest allowed `self.max_clock_drift`; beyond a week a broken peer clock could push
/// every timestamp in the group far into the future.
pub const MAX_CLOCK_DRIFT_LIMIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Peer discovery and replication timing (`[sync]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Whether to talk to peers at all. Off turns the daemon into a local-only ledger,
    /// e.g. for inspecting or repairing state without touching the group.
    pub enabled: bool,
    /// Interval between HELLO announcements (100ms to 5min). Shorter notices peers and
    /// divergence sooner at the price of more traffic.
    #[serde(with = "super::duration")]
    pub heartbeat: Duration,
    /// Silence after which a peer is considered gone. Must exceed `heartbeat` so that one
    /// late or lost HELLO does not drop a live peer.
    #[serde(with = "super::duration")]
    pub peer_timeout: Duration,
    /// How far ahead of our clock a peer's timestamp may push our hybrid logical clock
    /// (0 to 7 days). Bounds the damage a peer with a wrong clock can do; messages further
    /// ahead are rejected instead of dragging every later timestamp into the future.
    #[serde(with = "super::duration")]
    pub max_clock_drift: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            enabled: true,
            heartbeat: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(10),
            max_clock_drift: Duration::from_secs(60 * 60),
        }
    }
}

impl SyncConfig {
    /// Checks every interval against its bounds, and the peer timeout against the heartbeat.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat < MIN_HEARTBEAT || self.heartbeat > MAX_HEARTBEAT {
            return Err(invalid(
                "sync.heartbeat",
                format!(
                    "{} is out of range {}..={}",
                    humantime::format_duration(self.heartbeat),
                    humantime::format_duration(MIN_HEARTBEAT),
                    humantime::format_duration(MAX_HEARTBEAT),
                ),
            ));
        }
        if self.peer_timeout <= self.heartbeat {
            return Err(invalid(
                "sync.peer_timeout",
                format!(
                    "{} must be longer than sync.heartbeat ({}), or live peers would time out \
                     between heartbeats",
                    humantime::format_duration(self.peer_timeout),
                    humantime::format_duration(self.heartbeat),
                ),
            ));
        }
        if self.peer_timeout > MAX_PEER_TIMEOUT {
            return Err(invalid(
                "sync.peer_timeout",
                format!(
                    "{} is longer than the maximum {}",
                    humantime::format_duration(self.peer_timeout),
                    humantime::format_duration(MAX_PEER_TIMEOUT),
                ),
            ));
        }
        if self.max_clock_drift > MAX_CLOCK_DRIFT_LIMIT {
            return Err(invalid(
                "sync.max_clock_drift",
                format!(
                    "{} is longer than the maximum {}",
                    humantime::format_duration(self.max_clock_drift),
                    humantime::format_duration(MAX_CLOCK_DRIFT_LIMIT),
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_invalid, assert_parse_error, parse};
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn each_sync_validation_error_names_its_key() {
        assert_invalid("[sync]\nheartbeat = \"0s\"", "sync.heartbeat");
        assert_invalid("[sync]\nheartbeat = \"99ms\"", "sync.heartbeat");
        assert_invalid(
            "[sync]\nheartbeat = \"5min 1s\"\npeer_timeout = \"1h\"",
            "sync.heartbeat",
        );
        assert_invalid("[sync]\npeer_timeout = \"2s\"", "sync.peer_timeout");
        assert_invalid("[sync]\npeer_timeout = \"1s\"", "sync.peer_timeout");
        assert_invalid("[sync]\npeer_timeout = \"2days\"", "sync.peer_timeout");
        assert_invalid("[sync]\nmax_clock_drift = \"8d\"", "sync.max_clock_drift");
    }

    #[test]
    fn unparsable_duration_names_key_and_position() {
        let msg = assert_parse_error("[sync]\nheartbeat = \"2 parsecs\"\n", "heartbeat", 2);
        assert!(msg.contains("2 parsecs"), "{msg}");
    }

    #[test]
    fn durations_round_trip_through_toml() {
        let text = "[sync]\nheartbeat = \"1s 500ms\"\npeer_timeout = \"1h 30m\"\n\
                    max_clock_drift = \"2d 3h 4m 5s 6ms\"\n";
        let c = parse(text).unwrap();
        assert_eq!(c.sync.heartbeat, Duration::from_millis(1500));
        assert_eq!(c.sync.peer_timeout, Duration::from_secs(5400));
        let printed = c.to_toml_string();
        assert!(printed.contains("peer_timeout = \"1h 30m\""), "{printed}");
        let back = Config::from_toml_str(&printed, "<printed>").unwrap();
        assert_eq!(back, c);
    }
}
