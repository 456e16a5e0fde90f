//! `[control]`: who may use the control socket.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// Longest Unix group name accepted for `control.group` (the shadow-utils limit).
pub const MAX_UNIX_GROUP_LEN: usize = 32;

/// Access to the control socket (`[control]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Unix group allowed to use the control socket. Unset: the socket is mode 0600, so
    /// only the daemon's own user (and root) can run `lootsync adjust` and friends. Set:
    /// the socket is mode 0660 and owned by this group, so officers in the group can too
    /// (the daemon's user must be a member, and the state directory must let the group in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl ControlConfig {
    /// Checks the Unix group name (its existence is checked where the daemon runs).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(group) = &self.group {
            validate_unix_group(group).map_err(|m| invalid("control.group", m))?;
        }
        Ok(())
    }
}

/// Checks a Unix group name the way `groupadd` does: 1 to 32 characters of
/// `A-Z a-z 0-9 _ . -`, not starting with `-`. Whether the group exists is checked when the
/// daemon starts, on the machine that runs it.
fn validate_unix_group(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > MAX_UNIX_GROUP_LEN || !ok_chars || name.starts_with('-') {
        return Err(format!(
            "{name:?} is not a Unix group name (1 to {MAX_UNIX_GROUP_LEN} characters of A-Z, \
             a-z, 0-9, '_', '.' and '-', not starting with '-'); leave it unset for mode 0600"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_invalid;

    #[test]
    fn each_control_validation_error_names_its_key() {
        assert_invalid("[control]\ngroup = \"\"", "control.group");
        assert_invalid("[control]\ngroup = \"-officers\"", "control.group");
        assert_invalid("[control]\ngroup = \"raid officers\"", "control.group");
        assert_invalid(
            &format!("[control]\ngroup = \"{}\"", "g".repeat(33)),
            "control.group",
        );
    }
}
