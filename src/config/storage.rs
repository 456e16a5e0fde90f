//! `[storage]`: how the log reaches the disk.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Shortest allowed `storage.batch_interval`; use `fsync = "always"` for no batching.
pub const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(1);
/// Longest allowed `storage.batch_interval`: merged entries must reach the disk soon.
pub const MAX_BATCH_INTERVAL: Duration = Duration::from_secs(10);

/// When the daemon fsyncs entries merged from peers. A local adjust is durable before it
/// reports success under either policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Every batch of merged entries (one datagram's worth) is fsynced as it is appended.
    Always,
    /// Merged entries are group-committed: one fsync at most `batch_interval` after the
    /// first unsynced append.
    Batch,
}

/// How the log reaches the disk (`[storage]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `"always"` or `"batch"`: when entries merged from peers are fsynced. `"batch"` makes
    /// a big catch-up far faster; a crash may then lose up to `batch_interval` of merged
    /// entries, which peers send again. Local adjusts are always durable before success.
    pub fsync: FsyncPolicy,
    /// Under `fsync = "batch"`, the longest a merged entry waits for its fsync (1ms to 10s).
    #[serde(with = "super::duration")]
    pub batch_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: FsyncPolicy::Batch,
            batch_interval: Duration::from_millis(50),
        }
    }
}

impl StorageConfig {
    /// Checks the group-commit interval against its bounds.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let interval = self.batch_interval;
        if !(MIN_BATCH_INTERVAL..=MAX_BATCH_INTERVAL).contains(&interval) {
            return Err(invalid(
                "storage.batch_interval",
                format!(
                    "{} is out of range {}..={} (for no batching at all, set \
                     storage.fsync = \"always\")",
                    humantime::format_duration(interval),
                    humantime::format_duration(MIN_BATCH_INTERVAL),
                    humantime::format_duration(MAX_BATCH_INTERVAL),
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_invalid, assert_parse_error, parse};
    use std::time::Duration;

    #[test]
    fn each_storage_validation_error_names_its_key() {
        assert_invalid(
            "[storage]\nbatch_interval = \"0s\"",
            "storage.batch_interval",
        );
        assert_invalid(
            "[storage]\nbatch_interval = \"11s\"",
            "storage.batch_interval",
        );
    }

    #[test]
    fn fsync_policy_parses_and_rejects_unknown_values() {
        let c = parse("[storage]\nfsync = \"always\"\nbatch_interval = \"10s\"").unwrap();
        assert_eq!(c.storage.fsync, FsyncPolicy::Always);
        assert_eq!(c.storage.batch_interval, Duration::from_secs(10));
        let c = parse("[storage]\nfsync = \"batch\"\nbatch_interval = \"1ms\"").unwrap();
        assert_eq!(c.storage.fsync, FsyncPolicy::Batch);
        let msg = assert_parse_error("[storage]\nfsync = \"sometimes\"\n", "sometimes", 2);
        assert!(msg.contains("always") && msg.contains("batch"), "{msg}");
        assert_parse_error("[storage]\nfsync = \"batch\"\nflush = 1\n", "flush", 3);
    }
}
