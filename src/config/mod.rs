//! Daemon configuration: one TOML file, parsed strictly and validated before use.
//!
//! Every key has a default, so an empty file is a working single-host setup on loopback.
//! Unknown keys are rejected rather than ignored: a misspelt key that silently fell back
//! to its default would leave a peer quietly outside its group. [`Config::validate`] runs on
//! every load and names the offending key, so an operator can fix the file without reading
//! code. [`Config::to_toml_string`] prints the effective configuration back in the same
//! format, durations included, so what a daemon is running with can be checked or saved.
//!
//! One file per section, each with its struct, defaults and validation:
//! - `group`: `[group]`, the ledger's name and the multicast group ([`GroupConfig`]).
//! - `whisper`: `[whisper]`, the per-peer unicast socket ([`WhisperConfig`]).
//! - `sync`: `[sync]`, discovery and replication timing ([`SyncConfig`]).
//! - `storage`: `[storage]`, how the log reaches the disk ([`StorageConfig`]).
//! - `security`: `[security]`, the group key and officer keys ([`SecurityConfig`]).
//! - `control`: `[control]`, who may use the control socket ([`ControlConfig`]).
//! - `log`: `[log]`, diagnostic output ([`LogConfig`]).
//! - `http`: `[http]`, the web page and metrics ([`HttpConfig`]).
//! - `duration`: durations written as `"500ms"` or `"1h 30m"`.
//! - [`starter`]: the commented starter config `lootsync init` writes.
//! - this file: [`Config`] itself, loading and the checks across sections.

mod control;
mod duration;
mod group;
mod http;
mod log;
mod peers;
mod security;
pub mod starter;
mod storage;
mod sync;
mod whisper;

pub use control::{ControlConfig, MAX_UNIX_GROUP_LEN};
pub use group::{GroupConfig, EXAMPLE_GROUP_ADDRESS, MAX_GROUP_NAME_LEN};
pub use http::{HttpConfig, DEFAULT_HTTP_BIND};
pub use log::LogConfig;
pub use peers::{
    PeerAddressError, PeerTarget, PeersConfig, MAX_LISTED_PEERS, MAX_RESOLVE_INTERVAL,
    MIN_RESOLVE_INTERVAL,
};
pub use security::SecurityConfig;
pub use storage::{FsyncPolicy, StorageConfig, MAX_BATCH_INTERVAL, MIN_BATCH_INTERVAL};
pub use sync::{SyncConfig, MAX_CLOCK_DRIFT_LIMIT, MAX_HEARTBEAT, MAX_PEER_TIMEOUT, MIN_HEARTBEAT};
pub use whisper::WhisperConfig;

use crate::proto::keys::PublicKey;
use crate::proto::signature::SecretKey;
use crate::store::keyfile::{KeyFileError, KeyKind};
use crate::store::keys::load_signing_key;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Node name used when the hostname cannot be read or is not a valid node name.
pub const FALLBACK_NODE: &str = "lootsync";
/// Longest node name, in bytes of UTF-8. The node name is the default actor of entries, so
/// it has the same bound as entry names (`entry::MAX_NAME_BYTES`).
pub const MAX_NODE_BYTES: usize = 64;

/// Whole daemon configuration (one TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This peer's name, shown to other peers and used as the actor of adjustments made
    /// here when none is given. Defaults to the machine's hostname (or `"lootsync"`), so
    /// peers on different machines are told apart without any configuration.
    pub node: String,
    /// Directory holding the ledger and other persistent state. Relative paths are taken
    /// from the daemon's working directory; services should use an absolute path such as
    /// `/var/lib/lootsync`.
    pub state_dir: PathBuf,
    /// Which ledger this peer belongs to and the multicast group its LAN peers meet on, if
    /// any (`[group]`).
    pub group: GroupConfig,
    /// This daemon's unicast socket: replies, and everything to and from unicast peers
    /// (`[whisper]`).
    pub whisper: WhisperConfig,
    /// Unicast peers contacted by address, beyond the LAN (`[peers]`).
    pub peers: PeersConfig,
    /// Timing of peer discovery and replication (`[sync]`).
    pub sync: SyncConfig,
    /// Diagnostic output (`[log]`).
    pub log: LogConfig,
    /// Who may use the control socket (`[control]`).
    pub control: ControlConfig,
    /// How the log reaches the disk (`[storage]`).
    pub storage: StorageConfig,
    /// Keys: the group key and officer signatures (`[security]`).
    pub security: SecurityConfig,
    /// The web page and metrics (`[http]`).
    pub http: HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: default_node(),
            state_dir: PathBuf::from("./lootsync-data"),
            group: GroupConfig::default(),
            whisper: WhisperConfig::default(),
            peers: PeersConfig::default(),
            sync: SyncConfig::default(),
            log: LogConfig::default(),
            control: ControlConfig::default(),
            storage: StorageConfig::default(),
            security: SecurityConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8, ...). The I/O error is
    /// the [`source`](std::error::Error::source), so print the whole chain (e.g. anyhow's
    /// `{:#}`) to see it.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// File that was being read.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the schema (unknown key, wrong type,
    /// unparsable duration).
    #[error("cannot parse config {origin}: {message}")]
    Parse {
        /// Where the text came from: a file path, or `<embedded defaults>`.
        origin: String,
        /// The TOML error, which already locates the problem by line, column and key.
        message: String,
    },
    /// The file parsed but a value is out of range or inconsistent.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `group.port`.
        key: &'static str,
        /// What is wrong with the value and what is expected instead.
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text. `origin` names the text's source in error
    /// messages (a file path, or `<embedded defaults>`).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value for range and consistency; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_node(&self.node).map_err(|m| invalid("node", m))?;
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must not be empty"));
        }
        // Checked here rather than left to `to_toml_string`, so that any valid config can
        // be printed back.
        if self.state_dir.to_str().is_none() {
            return Err(invalid(
                "state_dir",
                format!("{} is not valid UTF-8", self.state_dir.display()),
            ));
        }

        self.group.validate()?;

        self.whisper.validate()?;

        self.peers.validate()?;
        self.check_peers_reachable()?;

        self.sync.validate()?;

        self.control.validate()?;

        self.storage.validate()?;

        self.security.validate()?;

        self.log.validate()?;

        self.http.validate()?;
        Ok(())
    }

    /// A whisper socket bound to loopback cannot send to another machine: listing a peer
    /// elsewhere by IP with the default `whisper.bind` would fail only at run time, one
    /// send error at a time. (Host names are checked when they resolve, by the daemon.)
    fn check_peers_reachable(&self) -> Result<(), ConfigError> {
        if !self.whisper.bind.ip().is_loopback() {
            return Ok(());
        }
        let targets = self.peers.targets().unwrap_or_default();
        let elsewhere = targets.iter().find_map(|target| match target {
            PeerTarget::Ip(addr) if !addr.ip().is_loopback() => Some(addr),
            _ => None,
        });
        match elsewhere {
            Some(addr) => Err(invalid(
                "peers.addresses",
                format!(
                    "{addr} is on another machine, but whisper.bind {} only reaches this one; \
                     set whisper.bind to \"0.0.0.0:0\" (or a fixed port, or this machine's \
                     address)",
                    self.whisper.bind
                ),
            )),
            None => Ok(()),
        }
    }

    /// The group's root public key, if configured (already checked by `validate`).
    pub fn root_public_key(&self) -> Option<PublicKey> {
        self.security
            .root_public_key
            .as_deref()
            .and_then(|text| text.parse().ok())
    }

    /// Loads this machine's officer key, if one is configured (refusing a file others can
    /// read).
    pub fn officer_key(&self) -> Result<Option<Arc<SecretKey>>, KeyFileError> {
        self.security
            .officer_key_file
            .as_deref()
            .map(|path| load_signing_key(path, KeyKind::Officer).map(Arc::new))
            .transpose()
    }

    /// The effective configuration as TOML, in the same format the file is read in.
    pub fn to_toml_string(&self) -> String {
        match toml::to_string_pretty(self) {
            Ok(text) => text,
            // Only reachable for a config that fails `validate` (non-UTF-8 `state_dir`);
            // a comment keeps the output valid TOML without hiding the problem.
            Err(e) => format!("# cannot render configuration as TOML: {e}\n"),
        }
    }
}

/// A validation error naming its key.
fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Checks a node name; the same rules as entry actor names.
fn validate_node(node: &str) -> Result<(), String> {
    if node.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    if node.len() > MAX_NODE_BYTES {
        return Err(format!(
            "is {} bytes long, more than the maximum {MAX_NODE_BYTES}",
            node.len()
        ));
    }
    if node.chars().any(char::is_control) {
        return Err(format!("{node:?} contains control characters"));
    }
    Ok(())
}

/// The default node name: the hostname if it is a valid node name, else [`FALLBACK_NODE`].
fn default_node() -> String {
    hostname().unwrap_or_else(|| FALLBACK_NODE.to_owned())
}

/// This machine's hostname, if it is a valid node name.
fn hostname() -> Option<String> {
    node_from_hostname(&gethostname::gethostname())
}

/// The hostname as a node name, if it is a valid one (UTF-8, within the node name rules).
fn node_from_hostname(hostname: &std::ffi::OsStr) -> Option<String> {
    let name = hostname.to_str()?;
    validate_node(name).ok()?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    const EXAMPLE: &str = include_str!("../../config/lootsync.toml");

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml")
    }

    /// Asserts that `text` fails validation on `key`, and that the message names the key.
    pub(super) fn assert_invalid(text: &str, key: &str) {
        match parse(text) {
            Err(e @ ConfigError::Invalid { key: k, .. }) => {
                assert_eq!(k, key, "wrong key for {text:?}: {e}");
                assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
            }
            other => panic!("expected invalid {key} for {text:?}, got {other:?}"),
        }
    }

    /// Asserts that `text` fails to parse with a message naming `needle` and a position.
    pub(super) fn assert_parse_error(text: &str, needle: &str, line: usize) -> String {
        match parse(text) {
            Err(e @ ConfigError::Parse { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{needle:?} not in {msg}");
                assert!(msg.contains("test.toml"), "origin missing: {msg}");
                assert!(
                    msg.contains(&format!("line {line}, column")),
                    "no line/column: {msg}"
                );
                msg
            }
            other => panic!("expected parse error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::default();
        assert_eq!(c.node, default_node());
        assert!(validate_node(&c.node).is_ok());
        assert_eq!(c.state_dir, PathBuf::from("./lootsync-data"));
        assert_eq!(c.group.name, "raid");
        assert_eq!(c.group.address, None);
        assert_eq!(c.group.port, 47683);
        assert_eq!(c.group.interface, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(c.group.ttl, 1);
        assert_eq!(c.whisper.bind, "127.0.0.1:0".parse().unwrap());
        assert!(c.peers.addresses.is_empty());
        assert_eq!(c.peers.resolve_interval, Duration::from_secs(60));
        assert!(c.sync.enabled);
        assert_eq!(c.sync.heartbeat, Duration::from_secs(2));
        assert_eq!(c.sync.peer_timeout, Duration::from_secs(10));
        assert_eq!(c.sync.max_clock_drift, Duration::from_secs(3600));
        assert_eq!(c.log.level, "info");
        c.validate().unwrap();
    }

    #[test]
    fn empty_text_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("[group]\n[sync]\n").unwrap(), Config::default());
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let c = parse("[group]\nport = 5000\n").unwrap();
        assert_eq!(c.group.port, 5000);
        assert_eq!(c.group.name, "raid");
        assert_eq!(c.sync, SyncConfig::default());
    }

    #[test]
    fn hostname_handling() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            node_from_hostname(OsStr::new("box")),
            Some("box".to_owned())
        );
        assert_eq!(node_from_hostname(OsStr::new("")), None);
        assert_eq!(node_from_hostname(OsStr::from_bytes(b"\xff\xfe")), None);
        assert_eq!(node_from_hostname(OsStr::new("a\tb")), None);
        let long = "h".repeat(MAX_NODE_BYTES + 1);
        assert_eq!(node_from_hostname(OsStr::new(&long)), None);
    }

    #[test]
    fn example_file_parses_and_matches_its_comments() {
        let c = parse(EXAMPLE).unwrap();
        let expected = Config {
            node: "alice".to_owned(),
            state_dir: PathBuf::from("./lootsync-data"),
            group: GroupConfig {
                name: "raid".to_owned(),
                address: Some(EXAMPLE_GROUP_ADDRESS),
                port: 47683,
                interface: Ipv4Addr::LOCALHOST,
                ttl: 1,
            },
            whisper: WhisperConfig {
                bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            },
            peers: PeersConfig {
                addresses: Vec::new(),
                resolve_interval: Duration::from_secs(60),
                retry_max: Duration::from_secs(15),
                max_learned: 256,
            },
            sync: SyncConfig {
                enabled: true,
                heartbeat: Duration::from_secs(2),
                peer_timeout: Duration::from_secs(10),
                max_clock_drift: Duration::from_secs(3600),
            },
            log: LogConfig {
                level: "info".to_owned(),
            },
            control: ControlConfig { group: None },
            storage: StorageConfig {
                fsync: FsyncPolicy::Batch,
                batch_interval: Duration::from_millis(50),
            },
            security: SecurityConfig::default(),
            http: HttpConfig::default(),
        };
        assert_eq!(c, expected);
        // Apart from the node name and the multicast group (which the defaults leave off,
        // and the example sets so that it works on loopback as it is), the example
        // documents exactly the defaults.
        let mut defaults = Config {
            node: "alice".to_owned(),
            ..Config::default()
        };
        defaults.group.address = Some(EXAMPLE_GROUP_ADDRESS);
        assert_eq!(c, defaults);
    }

    #[test]
    fn load_reads_file_and_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lootsync.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(Config::load(&path).unwrap().node, "alice");

        let missing = dir.path().join("missing.toml");
        let err = Config::load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.toml"), "{err}");
        assert!(std::error::Error::source(&err).is_some());

        std::fs::write(&path, "[group]\nport = 0\n").unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Invalid {
                key: "group.port",
                ..
            })
        ));
        std::fs::write(&path, "nope = 1\n").unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn each_validation_error_names_its_key() {
        assert_invalid("node = \"\"", "node");
        assert_invalid("node = \"   \"", "node");
        assert_invalid("node = \"a\\nb\"", "node");
        assert_invalid(&format!("node = \"{}\"", "n".repeat(65)), "node");
        assert_invalid("state_dir = \"\"", "state_dir");
    }

    #[test]
    fn listed_peers_elsewhere_need_a_whisper_socket_that_reaches_them() {
        assert_invalid(
            "[peers]\naddresses = [\"198.51.100.7:47684\"]",
            "peers.addresses",
        );
        let e =
            parse("[peers]\naddresses = [\"127.0.0.1:1\", \"198.51.100.7:47684\"]").unwrap_err();
        assert!(e.to_string().contains("0.0.0.0:0"), "{e}");
        parse("[whisper]\nbind = \"0.0.0.0:0\"\n[peers]\naddresses = [\"198.51.100.7:1\"]")
            .unwrap();
        parse("[whisper]\nbind = \"10.0.0.2:0\"\n[peers]\naddresses = [\"198.51.100.7:1\"]")
            .unwrap();
        // Loopback to loopback, and names (checked once resolved) are fine.
        parse("[peers]\naddresses = [\"127.0.0.1:1\", \"hub.example.org:2\"]").unwrap();
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        assert_parse_error("node = \"bob\"\nfoo = 1\n", "foo", 2);
    }

    #[test]
    fn unknown_nested_key_is_rejected() {
        let msg = assert_parse_error("[group]\nport = 5000\ncolour = 1\n", "colour", 3);
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_type_is_a_parse_error() {
        assert_parse_error("[group]\nport = \"high\"\n", "port", 2);
        assert_parse_error("[group]\naddress = \"not-an-ip\"\n", "address", 2);
        assert_parse_error("[group]\nport = 70000\n", "port", 2);
        assert_parse_error("[sync]\nheartbeat = 2\n", "heartbeat", 2);
    }

    #[test]
    fn boundary_values_are_accepted() {
        parse("[group]\nttl = 255\nname = \"A-z_09\"").unwrap();
        parse("[group]\nttl = 0").unwrap();
        parse(&format!("[group]\nname = \"{}\"", "g".repeat(32))).unwrap();
        parse(&format!("node = \"{}\"", "n".repeat(64))).unwrap();
        parse("[sync]\nheartbeat = \"100ms\"\npeer_timeout = \"101ms\"").unwrap();
        parse("[sync]\nheartbeat = \"5min\"\npeer_timeout = \"24h\"").unwrap();
        parse("[sync]\nmax_clock_drift = \"0s\"").unwrap();
        parse("[sync]\nmax_clock_drift = \"7d\"").unwrap();
        parse("[log]\nlevel = \"info,sync=debug\"").unwrap();
        parse("[whisper]\nbind = \"0.0.0.0:4000\"").unwrap();
        let c = parse("[control]\ngroup = \"raid-officers\"").unwrap();
        assert_eq!(c.control.group.as_deref(), Some("raid-officers"));
        let printed = c.to_toml_string();
        assert_eq!(Config::from_toml_str(&printed, "<printed>").unwrap(), c);
    }

    #[test]
    fn full_config_round_trips_through_toml() {
        let c = parse(EXAMPLE).unwrap();
        let printed = c.to_toml_string();
        assert!(printed.contains("heartbeat = \"2s\""), "{printed}");
        assert!(printed.contains("[group]"), "{printed}");
        assert_eq!(Config::from_toml_str(&printed, "<printed>").unwrap(), c);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_state_dir_is_rejected_and_printing_does_not_panic() {
        use std::os::unix::ffi::OsStrExt;
        let c = Config {
            state_dir: PathBuf::from(std::ffi::OsStr::from_bytes(b"/var/\xff")),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "state_dir",
                ..
            })
        ));
        assert!(c.to_toml_string().starts_with('#'));
    }
}
