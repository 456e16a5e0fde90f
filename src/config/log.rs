//! `[log]`: diagnostic output.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// Diagnostic output (`[log]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` EnvFilter directive, e.g. `"info"` or `"info,sync=debug"` (the latter
    /// shows every SYNC message). Checked at load time so a typo fails startup instead of
    /// silently hiding logs.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// Checks the filter directive now, so a typo fails startup instead of hiding logs.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let level = &self.level;
        if level.trim().is_empty() {
            return Err(invalid(
                "log.level",
                "must not be empty; use e.g. \"info\" or \"info,sync=debug\"",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{level:?} is not a valid filter directive ({e}); \
                     use e.g. \"info\" or \"info,sync=debug\""
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_invalid;

    #[test]
    fn each_log_validation_error_names_its_key() {
        assert_invalid("[log]\nlevel = \"\"", "log.level");
        assert_invalid("[log]\nlevel = \"info,sync=loud\"", "log.level");
    }
}
