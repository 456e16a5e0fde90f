//! `[security]`: the group key that seals datagrams and the keys behind officer signatures.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Keys (`[security]`): the group key that seals every datagram (no key: clear text, loud
/// warning), and officer signatures (no root key: open roster, any peer may author entries,
/// unsigned; the loopback quick start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// File holding the 32-byte group key (`lootsync keygen group FILE`, mode 0600). Every
    /// datagram is sealed with it; peers without it hear nothing and are not heard. Unset:
    /// datagrams travel in the clear and the daemon warns at start-up (fine for a loopback
    /// trial, never for a LAN). Relative paths are taken from the working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_key_file: Option<PathBuf>,
    /// Older key files still accepted when receiving (never used to send), so keys rotate
    /// without downtime: add the new key here everywhere, then make it `group_key_file`
    /// everywhere, then remove the old one.
    pub previous_key_files: Vec<PathBuf>,
    /// The group's root public key (64 hex digits, as printed by `lootsync keygen`). Only
    /// roster changes signed by it count, and only officers' signed entries count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_public_key: Option<String>,
    /// This machine's officer secret key (mode 0600), used to sign local adjusts. Needed to
    /// adjust once a root key is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub officer_key_file: Option<PathBuf>,
    /// The root secret key, for `lootsync officer add/remove` (`--root-key` overrides it).
    /// Best kept off the daemon's machines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_file: Option<PathBuf>,
}

impl SecurityConfig {
    /// Checks the root public key and that every key file named is a usable path.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(text) = &self.root_public_key {
            text.parse::<crate::proto::keys::PublicKey>()
                .map_err(|e| invalid("security.root_public_key", e.to_string()))?;
        }
        if self
            .officer_key_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("security.officer_key_file", "must not be empty"));
        }
        if self
            .root_key_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("security.root_key_file", "must not be empty"));
        }
        if self.group_key_file.is_none() && !self.previous_key_files.is_empty() {
            return Err(invalid(
                "security.previous_key_files",
                "needs security.group_key_file: previous keys only make sense beside a current one",
            ));
        }
        for path in self.group_key_file.iter().chain(&self.previous_key_files) {
            if path.as_os_str().is_empty() || path.to_str().is_none() {
                let key = if Some(path) == self.group_key_file.as_ref() {
                    "security.group_key_file"
                } else {
                    "security.previous_key_files"
                };
                return Err(invalid(key, "must be a non-empty UTF-8 path"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_invalid, parse};
    use crate::config::Config;
    use std::path::PathBuf;

    #[test]
    fn each_security_validation_error_names_its_key() {
        assert_invalid(
            "[security]\nroot_public_key = \"not-a-key\"",
            "security.root_public_key",
        );
        assert_invalid(
            &format!("[security]\nroot_public_key = \"{}\"", "g".repeat(64)),
            "security.root_public_key",
        );
        assert_invalid(
            "[security]\nofficer_key_file = \"\"",
            "security.officer_key_file",
        );
    }

    #[test]
    fn security_keys_parse_validate_and_round_trip() {
        let c = parse(
            "[security]\ngroup_key_file = \"/etc/lootsync/group.key\"\n\
             previous_key_files = [\"/etc/lootsync/old.key\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.security.group_key_file,
            Some(PathBuf::from("/etc/lootsync/group.key"))
        );
        assert_eq!(c.security.previous_key_files.len(), 1);
        let back = Config::from_toml_str(&c.to_toml_string(), "<printed>").unwrap();
        assert_eq!(back, c);
        assert_invalid(
            "[security]\nprevious_key_files = [\"/old.key\"]\n",
            "security.previous_key_files",
        );
        assert_invalid(
            "[security]\ngroup_key_file = \"\"\n",
            "security.group_key_file",
        );
        assert!(
            parse("[security]\nkey = \"x\"\n").is_err(),
            "unknown key accepted"
        );
    }
}
