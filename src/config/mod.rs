//! Daemon configuration: one TOML file, parsed strictly and validated before use.
//!
//! Every key has a default, so an empty file is a working single-host setup on loopback.
//! Unknown keys are rejected rather than ignored: a misspelt key that silently fell back
//! to its default would leave a peer quietly outside its group. [`Config::validate`] runs on
//! every load and names the offending key, so an operator can fix the file without reading
//! code. [`Config::to_toml_string`] prints the effective configuration back in the same
//! format, durations included, so what a daemon is running with can be checked or saved.

pub mod starter;

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Node name used when the hostname cannot be read or is not a valid node name.
pub const FALLBACK_NODE: &str = "lootsync";
/// Longest node name, in bytes of UTF-8. The node name is the default actor of entries, so
/// it has the same bound as entry names (`entry::MAX_NAME_BYTES`).
pub const MAX_NODE_BYTES: usize = 64;
/// Longest group name, in characters. The group name becomes a file name in `state_dir`.
pub const MAX_GROUP_NAME_LEN: usize = 32;
/// Shortest allowed heartbeat; faster would flood the group for no benefit.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest allowed heartbeat; slower would make new peers wait minutes to be noticed.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(5 * 60);
/// Longest allowed peer timeout; also keeps deadline arithmetic far from overflow.
pub const MAX_PEER_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest allowed `sync.max_clock_drift`; beyond a week a broken peer clock could push
/// every timestamp in the group far into the future.
pub const MAX_CLOCK_DRIFT_LIMIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Shortest allowed `storage.batch_interval`; use `fsync = "always"` for no batching.
pub const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(1);
/// Longest allowed `storage.batch_interval`: merged entries must reach the disk soon.
pub const MAX_BATCH_INTERVAL: Duration = Duration::from_secs(10);

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
    /// Which ledger this peer belongs to and where its peers are found (`[group]`).
    pub group: GroupConfig,
    /// Unicast socket for replies addressed to this peer only (`[whisper]`).
    pub whisper: WhisperConfig,
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
}

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
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
}

/// The multicast group shared by all peers of one ledger (`[group]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Ledger name. Peers only sync with peers using the same name, so several ledgers can
    /// share one multicast group. It is also used as a file name, hence the restricted
    /// alphabet: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
    pub name: String,
    /// IPv4 multicast address the peers meet on. The default lies in the
    /// organisation-local scope (239.255.0.0/16), which routers do not forward off-site.
    pub address: Ipv4Addr,
    /// UDP port of the multicast group; every peer of the group must use the same one.
    pub port: u16,
    /// Address of the local interface to join the group on. The loopback default only
    /// reaches peers on this machine; production configs set the LAN interface's address.
    pub interface: Ipv4Addr,
    /// Multicast time-to-live: how many routers datagrams may cross. 1 keeps them on the
    /// local network segment, which is where peers are expected to be.
    pub ttl: u32,
}

/// The per-peer unicast socket (`[whisper]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// Local address of the unicast socket that receives SYNC_RESPONSE datagrams, so bulk
    /// replies to one peer do not go to the whole group. Port 0 picks a free port; peers
    /// learn the actual port from this peer's HELLO.
    pub bind: SocketAddrV4,
}

/// Peer discovery and replication timing (`[sync]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Whether to talk to peers at all. Off turns the daemon into a local-only ledger,
    /// e.g. for inspecting or repairing state without touching the group.
    pub enabled: bool,
    /// Interval between HELLO announcements (100ms to 5min). Shorter notices peers and
    /// divergence sooner at the price of more traffic.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Silence after which a peer is considered gone. Must exceed `heartbeat` so that one
    /// late or lost HELLO does not drop a live peer.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// How far ahead of our clock a peer's timestamp may push our hybrid logical clock
    /// (0 to 7 days). Bounds the damage a peer with a wrong clock can do; messages further
    /// ahead are rejected instead of dragging every later timestamp into the future.
    #[serde(with = "humantime_serde")]
    pub max_clock_drift: Duration,
}

/// Diagnostic output (`[log]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` EnvFilter directive, e.g. `"info"` or `"info,sync=debug"` (the latter
    /// shows every SYNC message). Checked at load time so a typo fails startup instead of
    /// silently hiding logs.
    pub level: String,
}

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

/// Longest Unix group name accepted for `control.group` (the shadow-utils limit).
pub const MAX_UNIX_GROUP_LEN: usize = 32;

impl Default for Config {
    fn default() -> Self {
        Config {
            node: default_node(),
            state_dir: PathBuf::from("./lootsync-data"),
            group: GroupConfig::default(),
            whisper: WhisperConfig::default(),
            sync: SyncConfig::default(),
            log: LogConfig::default(),
            control: ControlConfig::default(),
            storage: StorageConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: FsyncPolicy::Batch,
            batch_interval: Duration::from_millis(50),
        }
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            name: "raid".to_owned(),
            address: Ipv4Addr::new(239, 255, 76, 83),
            port: 47683,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 1,
        }
    }
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        }
    }
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

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
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
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }

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

        let group = &self.group;
        validate_group_name(&group.name).map_err(|m| invalid("group.name", m))?;
        if !group.address.is_multicast() {
            return Err(invalid(
                "group.address",
                format!(
                    "{} is not a multicast address (use one in 224.0.0.0/4, e.g. 239.255.76.83)",
                    group.address
                ),
            ));
        }
        if group.port == 0 {
            return Err(invalid(
                "group.port",
                "must be non-zero: every peer has to listen on the same fixed port",
            ));
        }
        if group.interface.is_multicast()
            || group.interface.is_unspecified()
            || group.interface.is_broadcast()
        {
            return Err(invalid(
                "group.interface",
                format!(
                    "{} is not a local interface address; give the IPv4 address of the LAN \
                     interface to join on (or 127.0.0.1 for peers on this machine only)",
                    group.interface
                ),
            ));
        }
        if group.ttl > 255 {
            return Err(invalid(
                "group.ttl",
                format!("{} is out of range 0..=255", group.ttl),
            ));
        }

        let bind = self.whisper.bind.ip();
        if bind.is_multicast() || bind.is_broadcast() {
            return Err(invalid(
                "whisper.bind",
                format!("{bind} is not a unicast address; give a local interface address"),
            ));
        }

        let sync = &self.sync;
        if sync.heartbeat < MIN_HEARTBEAT || sync.heartbeat > MAX_HEARTBEAT {
            return Err(invalid(
                "sync.heartbeat",
                format!(
                    "{} is out of range {}..={}",
                    humantime::format_duration(sync.heartbeat),
                    humantime::format_duration(MIN_HEARTBEAT),
                    humantime::format_duration(MAX_HEARTBEAT),
                ),
            ));
        }
        if sync.peer_timeout <= sync.heartbeat {
            return Err(invalid(
                "sync.peer_timeout",
                format!(
                    "{} must be longer than sync.heartbeat ({}), or live peers would time out \
                     between heartbeats",
                    humantime::format_duration(sync.peer_timeout),
                    humantime::format_duration(sync.heartbeat),
                ),
            ));
        }
        if sync.peer_timeout > MAX_PEER_TIMEOUT {
            return Err(invalid(
                "sync.peer_timeout",
                format!(
                    "{} is longer than the maximum {}",
                    humantime::format_duration(sync.peer_timeout),
                    humantime::format_duration(MAX_PEER_TIMEOUT),
                ),
            ));
        }
        if sync.max_clock_drift > MAX_CLOCK_DRIFT_LIMIT {
            return Err(invalid(
                "sync.max_clock_drift",
                format!(
                    "{} is longer than the maximum {}",
                    humantime::format_duration(sync.max_clock_drift),
                    humantime::format_duration(MAX_CLOCK_DRIFT_LIMIT),
                ),
            ));
        }

        if let Some(group) = &self.control.group {
            validate_unix_group(group).map_err(|m| invalid("control.group", m))?;
        }

        let interval = self.storage.batch_interval;
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

        if let Some(text) = &self.security.root_public_key {
            text.parse::<crate::proto::signature::PublicKey>()
                .map_err(|e| invalid("security.root_public_key", e.to_string()))?;
        }
        if self
            .security
            .officer_key_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("security.officer_key_file", "must not be empty"));
        }
        if self
            .security
            .root_key_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("security.root_key_file", "must not be empty"));
        }

        let security = &self.security;
        if security.group_key_file.is_none() && !security.previous_key_files.is_empty() {
            return Err(invalid(
                "security.previous_key_files",
                "needs security.group_key_file: previous keys only make sense beside a current one",
            ));
        }
        for path in security
            .group_key_file
            .iter()
            .chain(&security.previous_key_files)
        {
            if path.as_os_str().is_empty() || path.to_str().is_none() {
                let key = if Some(path) == security.group_key_file.as_ref() {
                    "security.group_key_file"
                } else {
                    "security.previous_key_files"
                };
                return Err(invalid(key, "must be a non-empty UTF-8 path"));
            }
        }

        let level = &self.log.level;
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

    /// The group's root public key, if configured (already checked by `validate`).
    pub fn root_public_key(&self) -> Option<crate::proto::signature::PublicKey> {
        self.security
            .root_public_key
            .as_deref()
            .and_then(|text| text.parse().ok())
    }

    /// Loads this machine's officer key, if one is configured (refusing a file others can
    /// read).
    pub fn officer_key(
        &self,
    ) -> Result<
        Option<std::sync::Arc<crate::proto::signature::SecretKey>>,
        crate::proto::signature::KeyError,
    > {
        self.security
            .officer_key_file
            .as_deref()
            .map(|path| {
                crate::proto::signature::SecretKey::load(
                    path,
                    crate::store::keyfile::KeyKind::Officer,
                )
                .map(std::sync::Arc::new)
            })
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

    const EXAMPLE: &str = include_str!("../../config/lootsync.toml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml")
    }

    /// Asserts that `text` fails validation on `key`, and that the message names the key.
    fn assert_invalid(text: &str, key: &str) {
        match parse(text) {
            Err(e @ ConfigError::Invalid { key: k, .. }) => {
                assert_eq!(k, key, "wrong key for {text:?}: {e}");
                assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
            }
            other => panic!("expected invalid {key} for {text:?}, got {other:?}"),
        }
    }

    /// Asserts that `text` fails to parse with a message naming `needle` and a position.
    fn assert_parse_error(text: &str, needle: &str, line: usize) -> String {
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
        assert_eq!(c.group.address, Ipv4Addr::new(239, 255, 76, 83));
        assert_eq!(c.group.port, 47683);
        assert_eq!(c.group.interface, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(c.group.ttl, 1);
        assert_eq!(c.whisper.bind, "127.0.0.1:0".parse().unwrap());
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
                address: Ipv4Addr::new(239, 255, 76, 83),
                port: 47683,
                interface: Ipv4Addr::LOCALHOST,
                ttl: 1,
            },
            whisper: WhisperConfig {
                bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
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
        };
        assert_eq!(c, expected);
        // Apart from the node name, the example documents exactly the defaults.
        let defaults = Config {
            node: "alice".to_owned(),
            ..Config::default()
        };
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

    #[test]
    fn unparsable_duration_names_key_and_position() {
        let msg = assert_parse_error("[sync]\nheartbeat = \"2 parsecs\"\n", "heartbeat", 2);
        assert!(msg.contains("2 parsecs"), "{msg}");
    }

    #[test]
    fn each_validation_error_names_its_key() {
        assert_invalid("node = \"\"", "node");
        assert_invalid("node = \"   \"", "node");
        assert_invalid("node = \"a\\nb\"", "node");
        assert_invalid(&format!("node = \"{}\"", "n".repeat(65)), "node");
        assert_invalid("state_dir = \"\"", "state_dir");
        assert_invalid("[group]\nname = \"../x\"", "group.name");
        assert_invalid("[group]\nname = \"\"", "group.name");
        assert_invalid(
            &format!("[group]\nname = \"{}\"", "g".repeat(33)),
            "group.name",
        );
        assert_invalid("[group]\naddress = \"10.0.0.1\"", "group.address");
        assert_invalid("[group]\nport = 0", "group.port");
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
        assert_invalid("[group]\ninterface = \"0.0.0.0\"", "group.interface");
        assert_invalid("[group]\ninterface = \"239.1.2.3\"", "group.interface");
        assert_invalid("[group]\nttl = 256", "group.ttl");
        assert_invalid("[whisper]\nbind = \"239.1.2.3:0\"", "whisper.bind");
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
        assert_invalid(
            "[storage]\nbatch_interval = \"0s\"",
            "storage.batch_interval",
        );
        assert_invalid(
            "[storage]\nbatch_interval = \"11s\"",
            "storage.batch_interval",
        );
        assert_invalid("[log]\nlevel = \"\"", "log.level");
        assert_invalid("[control]\ngroup = \"\"", "control.group");
        assert_invalid("[control]\ngroup = \"-officers\"", "control.group");
        assert_invalid("[control]\ngroup = \"raid officers\"", "control.group");
        assert_invalid(
            &format!("[control]\ngroup = \"{}\"", "g".repeat(33)),
            "control.group",
        );
        assert_invalid("[log]\nlevel = \"info,sync=loud\"", "log.level");
    }

    #[test]
    fn messages_are_specific() {
        let e = parse("[group]\naddress = \"10.0.0.1\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for `group.address`: 10.0.0.1 is not a multicast address \
             (use one in 224.0.0.0/4, e.g. 239.255.76.83)"
        );
        let e = parse("[group]\ninterface = \"0.0.0.0\"").unwrap_err();
        assert!(e.to_string().contains("LAN interface"), "{e}");
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
