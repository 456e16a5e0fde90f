//! The control protocol: one JSON object per line each way, a request tagged by `cmd` and a
//! reply `{"ok":..,"result":..,"error":..}`. Client and server share these types.

use crate::core::ledger::HistoryRow;
use crate::proto::entry::Entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Longest request line accepted, in bytes (not counting its newline).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Longest reply line the client accepts (history of a big log can be large).
pub const MAX_REPLY_BYTES: u64 = 512 * 1024 * 1024;

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
    /// Append an entry made and signed elsewhere (an officer roster change signed by the
    /// root key, which the daemon does not hold). Its seal is checked first.
    Append {
        /// The signed entry.
        entry: Box<crate::proto::entry::Entry>,
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

/// Why a request line was refused before it reached the daemon.
#[derive(Debug, Error)]
pub enum BadRequest {
    /// The line is longer than [`MAX_REQUEST_BYTES`].
    #[error("request longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The line is not UTF-8.
    #[error("bad request: not UTF-8")]
    NotUtf8,
    /// The line is not a request (malformed JSON, unknown command or field, missing field).
    #[error("bad request: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses one request line (its newline, if any, included).
pub fn parse_request(line: &str) -> Result<Request, BadRequest> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.len() > MAX_REQUEST_BYTES {
        return Err(BadRequest::TooLong {
            max: MAX_REQUEST_BYTES,
        });
    }
    Ok(serde_json::from_str(line.trim())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_strictly() {
        assert_eq!(
            parse_request(r#"{"cmd":"points"}"#).unwrap(),
            Request::Points {}
        );
        assert_eq!(
            parse_request(r#"{"cmd":"adjust","player":"Bob","delta":-5,"reason":"r"}"#).unwrap(),
            Request::Adjust {
                player: "Bob".into(),
                delta: -5,
                reason: "r".into(),
                actor: None
            }
        );
        assert!(matches!(
            parse_request(r#"{"cmd":"points","extra":1}"#),
            Err(BadRequest::Json(_))
        ));
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
        assert!(parse_request("not json").is_err());
        assert!(matches!(
            parse_request(&"x".repeat(MAX_REQUEST_BYTES + 1)),
            Err(BadRequest::TooLong { .. })
        ));
        // The limit is on the request, not its newline: a padded request of exactly the
        // limit is accepted.
        let padded = format!(
            "{:<width$}\n",
            r#"{"cmd":"points"}"#,
            width = MAX_REQUEST_BYTES
        );
        assert_eq!(parse_request(&padded).unwrap(), Request::Points {});
    }
}
