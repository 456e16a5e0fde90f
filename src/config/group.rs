//! `[group]`: which ledger this peer belongs to and the multicast group its peers meet on,
//! if any: without `address` a peer talks to listed (`[peers]`) and learned peers only.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Longest group name, in characters. The group name becomes a file name in `state_dir`.
pub const MAX_GROUP_NAME_LEN: usize = 32;

/// The multicast group address the shipped example config and the built-in defaults of
/// `lootsync run` (no `--config`) use. It lies in the organisation-local scope
/// (239.255.0.0/16), which routers do not forward off-site.
pub const EXAMPLE_GROUP_ADDRESS: Ipv4Addr = Ipv4Addr::new(239, 255, 76, 83);

/// The ledger's name and the multicast group shared by the peers of one LAN (`[group]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Ledger name. Peers only sync with peers using the same name, so several ledgers can
    /// share one multicast group. It is also used as a file name, hence the restricted
    /// alphabet: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
    pub name: String,
    /// IPv4 multicast address the peers of a LAN meet on. Unset (the default): no multicast
    /// at all, so no group socket is opened and `port`, `interface` and `ttl` are ignored;
    /// the peer then talks only to the `[peers]` it lists and the peers that contact it.
    /// Kept optional rather than defaulted because a peer on a home connection or a hub has
    /// no LAN group to join, and must not send multicast onto whatever network it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// UDP port of the multicast group; every peer of the group must use the same one.
    pub port: u16,
    /// Address of the local interface to join the group on. The loopback default only
    /// reaches peers on this machine; production configs set the LAN interface's address.
    pub interface: Ipv4Addr,
    /// Multicast time-to-live: how many routers datagrams may cross. 1 keeps them on the
    /// local network segment, which is where peers are expected to be.
    pub ttl: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            name: "raid".to_owned(),
            address: None,
            port: 47683,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 1,
        }
    }
}

impl GroupConfig {
    /// The multicast group to join, as `address:port`, if multicast is on.
    pub fn multicast(&self) -> Option<SocketAddrV4> {
        self.address
            .map(|address| SocketAddrV4::new(address, self.port))
    }

    /// Checks the group name, the multicast address and the interface to join on. `port`,
    /// `interface` and `ttl` are checked even when `address` is unset and they are
    /// ignored: a bad value is a mistake either way, and would bite the day multicast is
    /// switched on.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        validate_group_name(&self.name).map_err(|m| invalid("group.name", m))?;
        if let Some(address) = self.address.filter(|a| !a.is_multicast()) {
            return Err(invalid(
                "group.address",
                format!(
                    "{address} is not a multicast address (use one in 224.0.0.0/4, e.g. \
                     {EXAMPLE_GROUP_ADDRESS}; leave it out for no multicast at all)"
                ),
            ));
        }
        if self.port == 0 {
            return Err(invalid(
                "group.port",
                "must be non-zero: every peer has to listen on the same fixed port",
            ));
        }
        if self.interface.is_multicast()
            || self.interface.is_unspecified()
            || self.interface.is_broadcast()
        {
            return Err(invalid(
                "group.interface",
                format!(
                    "{} is not a local interface address; give the IPv4 address of the LAN \
                     interface to join on (or 127.0.0.1 for peers on this machine only)",
                    self.interface
                ),
            ));
        }
        if self.ttl > 255 {
            return Err(invalid(
                "group.ttl",
                format!("{} is out of range 0..=255", self.ttl),
            ));
        }
        Ok(())
    }
}

/// Checks a group name, which is used as a file name and so must not contain separators,
/// dots or anything a file system might treat specially.
fn validate_group_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || name.len() > MAX_GROUP_NAME_LEN || !ok_chars {
        return Err(format!(
            "{name:?} must be 1 to {MAX_GROUP_NAME_LEN} characters of A-Z, a-z, 0-9, '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_invalid, parse};

    #[test]
    fn each_group_validation_error_names_its_key() {
        assert_invalid("[group]\nname = \"../x\"", "group.name");
        assert_invalid("[group]\nname = \"\"", "group.name");
        assert_invalid(
            &format!("[group]\nname = \"{}\"", "g".repeat(33)),
            "group.name",
        );
        assert_invalid("[group]\naddress = \"10.0.0.1\"", "group.address");
        assert_invalid("[group]\nport = 0", "group.port");
        assert_invalid("[group]\ninterface = \"0.0.0.0\"", "group.interface");
        assert_invalid("[group]\ninterface = \"239.1.2.3\"", "group.interface");
        assert_invalid("[group]\nttl = 256", "group.ttl");
    }

    #[test]
    fn messages_are_specific() {
        let e = parse("[group]\naddress = \"10.0.0.1\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for `group.address`: 10.0.0.1 is not a multicast address \
             (use one in 224.0.0.0/4, e.g. 239.255.76.83; leave it out for no multicast at all)"
        );
        let e = parse("[group]\ninterface = \"0.0.0.0\"").unwrap_err();
        assert!(e.to_string().contains("LAN interface"), "{e}");
    }

    #[test]
    fn address_is_optional_and_the_multicast_keys_stay_checked_without_it() {
        let c = parse("[group]\nport = 5000\ninterface = \"10.1.2.3\"\nttl = 4").unwrap();
        assert_eq!(c.group.address, None);
        assert_eq!(c.group.multicast(), None);
        let c = parse("[group]\naddress = \"239.1.2.3\"\nport = 5000").unwrap();
        assert_eq!(c.group.multicast(), Some("239.1.2.3:5000".parse().unwrap()));
        // Ignored without an address, but still a mistake.
        assert_invalid("[group]\nport = 0", "group.port");
        assert_invalid("[group]\nttl = 256", "group.ttl");
        // Printed back without an `address` line, and read back the same.
        let c = parse("[group]\nport = 5000").unwrap();
        let printed = c.to_toml_string();
        assert!(!printed.contains("address ="), "{printed}");
        assert_eq!(parse(&printed).unwrap(), c);
    }
}
