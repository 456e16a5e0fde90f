//! `[peers]`: unicast peers this daemon contacts by address, beyond its multicast LAN (a
//! hub, a friend's home).
//!
//! The addresses are only checked for syntax here: whether a name resolves can change while
//! the daemon runs (a home IP changes, DNS is down at boot), so the daemon resolves names
//! itself and treats a failure as a warning and a retry, never as a bad config.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;

/// Most listed addresses. Every one is contacted each heartbeat, so the list is a cost paid
/// forever; a guild needs a hub or a handful of friends, not hundreds.
pub const MAX_LISTED_PEERS: usize = 256;
/// Shortest allowed `peers.resolve_interval`: faster would only load the resolver.
pub const MIN_RESOLVE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest allowed `peers.resolve_interval`: a home IP that changed must be found again
/// within a day.
pub const MAX_RESOLVE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest allowed `peers.retry_max`.
pub const MIN_RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest allowed `peers.retry_max`: a hub that came back must be found within the hour.
pub const MAX_RETRY_MAX: Duration = Duration::from_secs(60 * 60);
/// Most allowed `peers.max_learned`: each learned peer gets every heartbeat and every
/// forwarded entry, so this bounds what one daemon (a hub) sends.
pub const MAX_LEARNED_PEERS: usize = 4_096;
/// Longest host name (RFC 1035: 253 characters without the trailing dot).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Unicast peers contacted by address (`[peers]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    /// Peers to contact by unicast, as `IP:port` or `host:port` (the port is the peer's
    /// fixed `whisper.bind` port). Empty (the default) means none: the daemon still talks
    /// to its multicast group and to any peer that contacts it.
    pub addresses: Vec<String>,
    /// How often host names in `addresses` are resolved again (1s to 1d), so a peer whose
    /// address changes (a home connection) is found again. IP literals are never resolved.
    #[serde(with = "super::duration")]
    pub resolve_interval: Duration,
    /// Longest wait between two HELLOs to a listed peer that does not answer (1s to 1h; a
    /// longer `sync.heartbeat` wins, so silent peers are never tried more often than
    /// answering ones get HELLOs). The wait starts at one heartbeat and doubles up to this; a
    /// listed peer is never given up (a hub restarts, a home comes back).
    #[serde(with = "super::duration")]
    pub retry_max: Duration,
    /// Most learned peers (peers that contacted us, typically the homes listing a hub) kept
    /// as destinations (0 to 4096; 0: none, only listed and multicast peers); beyond this the
    /// one heard from longest ago is forgotten.
    pub max_learned: usize,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            addresses: Vec::new(),
            resolve_interval: Duration::from_secs(60),
            retry_max: Duration::from_secs(15),
            max_learned: 256,
        }
    }
}

impl PeersConfig {
    /// The listed addresses, parsed. Fails only for a config that `validate` refuses.
    pub fn targets(&self) -> Result<Vec<PeerTarget>, PeerAddressError> {
        self.addresses.iter().map(|text| text.parse()).collect()
    }

    /// Checks the number of addresses, each address's syntax, duplicates and the interval.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.addresses.len() > MAX_LISTED_PEERS {
            return Err(invalid(
                "peers.addresses",
                format!(
                    "lists {} addresses, more than the maximum {MAX_LISTED_PEERS} (list a hub \
                     instead of every member)",
                    self.addresses.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for text in &self.addresses {
            let target: PeerTarget = text
                .parse()
                .map_err(|err| invalid("peers.addresses", format!("{text:?}: {err}")))?;
            // Host names are case-insensitive: `Hub.example.org` and `hub.example.org` are
            // one peer, and listing it twice would only double its traffic.
            if !seen.insert(target.to_string().to_ascii_lowercase()) {
                return Err(invalid(
                    "peers.addresses",
                    format!("{text:?} is listed twice"),
                ));
            }
        }
        let interval = self.resolve_interval;
        if !(MIN_RESOLVE_INTERVAL..=MAX_RESOLVE_INTERVAL).contains(&interval) {
            return Err(invalid(
                "peers.resolve_interval",
                format!(
                    "{} is out of range {}..={}",
                    humantime::format_duration(interval),
                    humantime::format_duration(MIN_RESOLVE_INTERVAL),
                    humantime::format_duration(MAX_RESOLVE_INTERVAL),
                ),
            ));
        }
        if !(MIN_RETRY_MAX..=MAX_RETRY_MAX).contains(&self.retry_max) {
            return Err(invalid(
                "peers.retry_max",
                format!(
                    "{} is out of range {}..={}",
                    humantime::format_duration(self.retry_max),
                    humantime::format_duration(MIN_RETRY_MAX),
                    humantime::format_duration(MAX_RETRY_MAX),
                ),
            ));
        }
        if self.max_learned > MAX_LEARNED_PEERS {
            return Err(invalid(
                "peers.max_learned",
                format!(
                    "{} is more than the maximum {MAX_LEARNED_PEERS}",
                    self.max_learned
                ),
            ));
        }
        Ok(())
    }
}

/// One listed peer: an IPv4 address, or a host name the daemon resolves, with a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerTarget {
    /// An IP literal: used as it is, no DNS needed.
    Ip(SocketAddrV4),
    /// A host name, resolved at start-up and every `resolve_interval`.
    Host {
        /// The name as written (syntax checked, not resolved).
        host: String,
        /// The peer's whisper port.
        port: u16,
    },
}

/// Why a `[peers] addresses` entry is not a valid address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerAddressError {
    /// No `:port` at the end.
    #[error("has no port; write host:port or IP:port, e.g. \"hub.example.org:47684\"")]
    NoPort,
    /// The port is not a number in 1..=65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// An IPv6 address: the whisper socket is IPv4.
    #[error("is an IPv6 address; only IPv4 peers are supported (the whisper socket is IPv4)")]
    Ipv6,
    /// An IPv4 address nobody can be reached at (unspecified, multicast, broadcast).
    #[error("{0} is not a unicast address a peer can listen on")]
    NotUnicast(Ipv4Addr),
    /// The host part is empty.
    #[error("has an empty host name")]
    EmptyHost,
    /// The host part is not a syntactically valid host name.
    #[error("host {host:?} is not a valid host name: {why}")]
    BadHost {
        /// The host part as written.
        host: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl FromStr for PeerTarget {
    type Err = PeerAddressError;

    fn from_str(text: &str) -> Result<PeerTarget, PeerAddressError> {
        if text.starts_with('[') || text.matches(':').count() > 1 {
            return Err(PeerAddressError::Ipv6);
        }
        let (host, port) = text.rsplit_once(':').ok_or(PeerAddressError::NoPort)?;
        // Digits only: `u16::from_str` would also take "+5".
        let number = match port.bytes().all(|b| b.is_ascii_digit()) {
            true => port.parse::<u16>().ok().filter(|&p| p != 0),
            false => None,
        };
        let port = number.ok_or_else(|| PeerAddressError::BadPort(port.to_owned()))?;
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                return Err(PeerAddressError::NotUnicast(ip));
            }
            return Ok(PeerTarget::Ip(SocketAddrV4::new(ip, port)));
        }
        validate_host(host)?;
        Ok(PeerTarget::Host {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerTarget::Ip(addr) => write!(f, "{addr}"),
            PeerTarget::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Checks host name syntax (RFC 1123 labels, plus `_`, which some internal names use). A
/// name that passes may still not resolve; that is the daemon's business at run time.
fn validate_host(host: &str) -> Result<(), PeerAddressError> {
    let bad = |why| PeerAddressError::BadHost {
        host: host.to_owned(),
        why,
    };
    if host.is_empty() {
        return Err(PeerAddressError::EmptyHost);
    }
    // One trailing dot marks a fully qualified name; it is not part of any label.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > MAX_HOST_LEN {
        return Err(bad("longer than 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(bad(
                "has an empty label (two dots in a row, or a leading dot)",
            ));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(bad("has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    // An all-digit last label is a mistyped IPv4 address ("10.0.0.256"), never a name.
    if labels
        .last()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("looks like an IPv4 address but is not a valid one"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_invalid, assert_parse_error, parse};
    use crate::config::Config;

    fn target(text: &str) -> Result<PeerTarget, PeerAddressError> {
        text.parse()
    }

    #[test]
    fn defaults_are_no_peers_and_one_minute() {
        let c = parse("").unwrap();
        assert!(c.peers.addresses.is_empty());
        assert_eq!(c.peers.resolve_interval, Duration::from_secs(60));
        assert_eq!(c.peers.retry_max, Duration::from_secs(15));
        assert_eq!(c.peers.max_learned, 256);
        // An empty list and no section mean the same.
        assert_eq!(parse("[peers]\naddresses = []").unwrap(), c);
    }

    #[test]
    fn addresses_parse_as_ip_literals_or_host_names() {
        let c = parse(
            "[whisper]\nbind = \"0.0.0.0:47684\"\n\
             [peers]\naddresses = [\"hub.example.org:47684\", \"198.51.100.7:47684\", \
             \"localhost:5000\", \"fqdn.example.org.:1\", \"_svc.example:65535\"]\n\
             resolve_interval = \"5m\"",
        )
        .unwrap();
        assert_eq!(c.peers.resolve_interval, Duration::from_secs(300));
        let targets = c.peers.targets().unwrap();
        assert_eq!(
            targets[0],
            PeerTarget::Host {
                host: "hub.example.org".into(),
                port: 47684
            }
        );
        assert_eq!(
            targets[1],
            PeerTarget::Ip("198.51.100.7:47684".parse().unwrap())
        );
        assert_eq!(targets[2].to_string(), "localhost:5000");
        assert_eq!(targets.len(), 5);
        let printed = c.to_toml_string();
        assert!(printed.contains("[peers]"), "{printed}");
        assert!(printed.contains("resolve_interval = \"5m\""), "{printed}");
        assert_eq!(Config::from_toml_str(&printed, "<printed>").unwrap(), c);
    }

    #[test]
    fn each_bad_address_is_refused_with_the_reason() {
        let cases = [
            ("hub.example.org", PeerAddressError::NoPort),
            ("hub.example.org:", PeerAddressError::BadPort(String::new())),
            ("hub.example.org:0", PeerAddressError::BadPort("0".into())),
            (
                "hub.example.org:65536",
                PeerAddressError::BadPort("65536".into()),
            ),
            ("hub.example.org:+5", PeerAddressError::BadPort("+5".into())),
            (
                "hub.example.org:http",
                PeerAddressError::BadPort("http".into()),
            ),
            (":47684", PeerAddressError::EmptyHost),
            ("[::1]:47684", PeerAddressError::Ipv6),
            ("::1:47684", PeerAddressError::Ipv6),
            (
                "0.0.0.0:47684",
                PeerAddressError::NotUnicast(Ipv4Addr::UNSPECIFIED),
            ),
            (
                "239.1.2.3:47684",
                PeerAddressError::NotUnicast(Ipv4Addr::new(239, 1, 2, 3)),
            ),
            (
                "255.255.255.255:1",
                PeerAddressError::NotUnicast(Ipv4Addr::BROADCAST),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(target(text), Err(expected), "{text}");
        }
        for host in [
            "a..b",
            ".a",
            "a b",
            "-a.example",
            "a-.example",
            "héllo.example",
            "10.0.0.256",
            "1.2.3",
            "a/b",
        ] {
            assert!(
                matches!(
                    target(&format!("{host}:1")),
                    Err(PeerAddressError::BadHost { .. })
                ),
                "{host}: {:?}",
                target(&format!("{host}:1"))
            );
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(matches!(
            target(&format!("{long_label}:1")),
            Err(PeerAddressError::BadHost { .. })
        ));
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert!(matches!(
            target(&format!("{long_name}:1")),
            Err(PeerAddressError::BadHost { .. })
        ));
    }

    #[test]
    fn each_peers_validation_error_names_its_key() {
        assert_invalid("[peers]\naddresses = [\"hub\"]", "peers.addresses");
        assert_invalid("[peers]\naddresses = [\"hub:0\"]", "peers.addresses");
        assert_invalid("[peers]\naddresses = [\":5\"]", "peers.addresses");
        assert_invalid("[peers]\naddresses = [\"[::1]:5\"]", "peers.addresses");
        assert_invalid(
            "[peers]\naddresses = [\"a.example:5\", \"A.example:5\"]",
            "peers.addresses",
        );
        let many: Vec<String> = (0..=MAX_LISTED_PEERS)
            .map(|i| format!("\"10.0.{}.{}:5\"", i / 250, i % 250 + 1))
            .collect();
        assert_invalid(
            &format!("[peers]\naddresses = [{}]", many.join(", ")),
            "peers.addresses",
        );
        assert_invalid(
            "[peers]\nresolve_interval = \"999ms\"",
            "peers.resolve_interval",
        );
        assert_invalid(
            "[peers]\nresolve_interval = \"1d 1s\"",
            "peers.resolve_interval",
        );
        assert_invalid("[peers]\nretry_max = \"999ms\"", "peers.retry_max");
        assert_invalid("[peers]\nretry_max = \"1h 1s\"", "peers.retry_max");
        assert_invalid("[peers]\nmax_learned = 4097", "peers.max_learned");
        // The message quotes the bad entry and says why.
        let e = parse("[peers]\naddresses = [\"127.0.0.2:5\", \"hub.example.org\"]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for `peers.addresses`: \"hub.example.org\": has no port; write \
             host:port or IP:port, e.g. \"hub.example.org:47684\""
        );
    }

    #[test]
    fn boundaries_are_accepted() {
        let most: Vec<String> = (0..MAX_LISTED_PEERS)
            .map(|i| format!("\"10.0.{}.{}:5\"", i / 250, i % 250 + 1))
            .collect();
        parse(&format!(
            "[whisper]\nbind = \"0.0.0.0:0\"\n[peers]\naddresses = [{}]",
            most.join(", ")
        ))
        .unwrap();
        parse("[peers]\nresolve_interval = \"1s\"").unwrap();
        parse("[peers]\nresolve_interval = \"1d\"").unwrap();
        let c = parse("[peers]\nretry_max = \"1h\"\nmax_learned = 4096").unwrap();
        assert_eq!(c.peers.retry_max, Duration::from_secs(3600));
        assert_eq!(c.peers.max_learned, 4096);
        parse("[peers]\nretry_max = \"2s\"\nmax_learned = 0").unwrap();
        parse("[peers]\naddresses = [\"127.0.0.1:1\", \"127.0.0.1:65535\"]").unwrap();
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_parse_errors() {
        assert_parse_error("[peers]\naddresses = \"hub:1\"\n", "addresses", 2);
        assert_parse_error("[peers]\naddresses = [47684]\n", "addresses", 2);
        assert_parse_error("[peers]\nresolve_interval = 60\n", "resolve_interval", 2);
        assert_parse_error("[peers]\nhub = \"x:1\"\n", "hub", 2);
        assert_parse_error("[peers]\nmax_learned = -1\n", "max_learned", 2);
        assert_parse_error("[peers]\nretry_max = 15\n", "retry_max", 2);
    }
}
