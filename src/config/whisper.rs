//! `[whisper]`: the per-peer unicast socket that bulk replies come back on.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The per-peer unicast socket (`[whisper]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// Local address of the unicast socket that receives SYNC_RESPONSE datagrams, so bulk
    /// replies to one peer do not go to the whole group. Port 0 picks a free port; peers
    /// learn the actual port from this peer's HELLO.
    pub bind: SocketAddrV4,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        }
    }
}

impl WhisperConfig {
    /// Checks that the socket binds a unicast address.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bind = self.bind.ip();
        if bind.is_multicast() || bind.is_broadcast() {
            return Err(invalid(
                "whisper.bind",
                format!("{bind} is not a unicast address; give a local interface address"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_invalid;

    #[test]
    fn each_whisper_validation_error_names_its_key() {
        assert_invalid("[whisper]\nbind = \"239.1.2.3:0\"", "whisper.bind");
    }
}
