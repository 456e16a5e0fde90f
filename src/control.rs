//! The control socket: how the CLI talks to a running daemon.
//!
//! A Unix domain socket in the state directory (mode 0600), one JSON object per line each
//! way. Requests are bounded in size and parsed strictly; a bad request gets an error reply
//! and never disturbs the daemon.

use crate::entry::Entry;
use crate::ledger::HistoryRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// File name of the control socket inside the state directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request line accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Longest reply line the client accepts (history of a big log can be large).
pub const MAX_REPLY_BYTES: u64 = 512 * 1024 * 1024;

/// Path of the control socket for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// A request from the CLI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Record a point adjustment (durable before the reply).
    Adjust {
        /// Player whose points change.
        player: String,
        /// Points to add (negative to remove).
        delta: i64,
        /// Why.
        reason: String,
        /// Who makes the change; the daemon's node name when absent.
        #[serde(default)]
        actor: Option<String>,
    },
    /// Current totals. (Struct variants, so unknown fields are rejected.)
    Points {},
    /// History with running totals, optionally for one player.
    History {
        /// Only this player's entries.
        #[serde(default)]
        player: Option<String>,
    },
    /// Node, group, sync state, peers and counters.
    Status {},
    /// Switch sync on or off.
    Sync {
        /// The new state.
        enabled: bool,
    },
    /// Switch SYNC debug logging on or off at run time (the seed's `/sfdebug`).
    Debug {
        /// The new state.
        enabled: bool,
    },
}

/// The reply to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result, when `ok` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Reply {
    /// A successful reply carrying `value`.
    pub fn ok<T: Serialize>(value: &T) -> Reply {
        match serde_json::to_value(value) {
            Ok(value) => Reply {
                ok: true,
                error: None,
                result: Some(value),
            },
            Err(err) => Reply::error(format!("cannot encode reply: {err}")),
        }
    }

    /// A failure reply.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            result: None,
        }
    }
}

/// Result of an adjust.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdjustResult {
    /// The entry as recorded.
    pub entry: Entry,
    /// The player's total after replaying it.
    pub total: i64,
}

/// Totals by player.
pub type PointsResult = BTreeMap<String, i64>;
/// History rows in replay order.
pub type HistoryResult = Vec<HistoryRow>;

/// One peer as shown by `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its node name, if announced.
    pub name: Option<String>,
    /// Its whisper address.
    pub address: String,
    /// Milliseconds since we last heard it.
    pub last_heard_ms_ago: u64,
    /// Whether its last reported fingerprint equals ours.
    pub in_sync: bool,
}

/// Result of `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    /// Our node name.
    pub node: String,
    /// Group name.
    pub group: String,
    /// Whether sync is on.
    pub sync_enabled: bool,
    /// Entries in the log.
    pub entries: usize,
    /// Set fingerprint (count:hash prefix).
    pub fingerprint: String,
    /// Known peers.
    pub peers: Vec<PeerStatus>,
    /// Counters: datagrams sent/received, drops by reason, sessions.
    pub counters: BTreeMap<String, u64>,
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    serde_json::from_str(line.trim()).map_err(|err| format!("bad request: {err}"))
}

/// A control request could not be completed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// No daemon is listening (no socket, or connection refused).
    #[error("no daemon is listening on {path}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The conversation failed part-way.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's reply could not be understood.
    #[error("control socket {path}: unreadable reply: {message}")]
    BadReply {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request to the daemon listening on `path` and returns its result value.
pub fn call(path: &Path, request: &Request) -> Result<serde_json::Value, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning {
                path: path.to_path_buf(),
            })
        }
        Err(err) => return Err(io_err(err)),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err)?;
    let mut line = serde_json::to_string(request).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_REPLY_BYTES))
        .read_line(&mut reply)
        .map_err(io_err)?;
    let reply: Reply = serde_json::from_str(&reply).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if reply.ok {
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(ControlError::Refused(
            reply.error.unwrap_or_else(|| "request failed".into()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_strictly() {
        assert_eq!(parse_request(r#"{"cmd":"points"}"#), Ok(Request::Points {}));
        assert_eq!(
            parse_request(r#"{"cmd":"adjust","player":"Bob","delta":-5,"reason":"r"}"#),
            Ok(Request::Adjust {
                player: "Bob".into(),
                delta: -5,
                reason: "r".into(),
                actor: None
            })
        );
        assert!(parse_request(r#"{"cmd":"points","extra":1}"#).is_err());
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
        assert!(parse_request("not json").is_err());
        assert!(parse_request(&"x".repeat(MAX_REQUEST_BYTES + 1)).is_err());
    }

    #[test]
    fn missing_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = call(&socket_path(dir.path()), &Request::Points {}).unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }));
    }
}
