//! The control protocol, shared by client and server.
//!
//! One JSON object per line each way. A request is tagged by `cmd`
//! (`{"cmd":"adjust","player":"Aria","delta":5,"reason":"boss kill"}`); a reply is
//! `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
//!
//! Every command is a struct implementing [`Command`], whose `Output` is the type its result
//! decodes to, so a caller cannot ask for points and read a status. [`Request`] is the union
//! the server receives and [`Response`] the union it answers with.

use crate::core::histogram::Histogram;
use crate::core::ledger::HistoryRow;
use crate::core::roster::plan::RosterView;
use crate::proto::entry::Entry;
use crate::proto::keys::PublicKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Longest request line accepted, in bytes (not counting its newline): room for an
/// `import` or `award` of [`MAX_BATCH`] players with the longest names.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// Most players one `award` or `import` may name (a guild's whole roster fits).
pub const MAX_BATCH: usize = 1000;
/// Longest reply line the client accepts (history of a big log can be large).
pub const MAX_REPLY_BYTES: u64 = 512 * 1024 * 1024;

/// A command with a typed result.
pub trait Command: Into<Request> + Send + 'static {
    /// What a successful reply carries.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Wraps a result into the server's reply union.
    fn respond(output: Self::Output) -> Response;
}

/// Record a point adjustment (durable before the reply).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    /// Player whose points change.
    pub player: String,
    /// Points to add (negative to remove).
    pub delta: i64,
    /// Why.
    pub reason: String,
    /// Who makes the change; the daemon's node name when absent.
    #[serde(default)]
    pub actor: Option<String>,
}

/// Award the same points to several players: one entry each, written, fsynced and sent as
/// one batch, or nothing at all when any item is bad.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Award {
    /// The players, each at most once (names match in any letter case).
    pub players: Vec<String>,
    /// Points each gets (negative to remove).
    pub delta: i64,
    /// Why.
    pub reason: String,
    /// Who makes the change; the daemon's node name when absent.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only plan: write nothing, answer what would be written.
    #[serde(default)]
    pub dry_run: bool,
}

/// Decay every non-zero total on this peer by a percentage, as one batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decay {
    /// The percentage in hundredths (1000 is 10 %), more than 0 and at most 10,000.
    pub percent_hundredths: u32,
    /// Why.
    pub reason: String,
    /// Who makes the change; the daemon's node name when absent.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only plan: write nothing, answer what would be written.
    #[serde(default)]
    pub dry_run: bool,
}

/// Append the entry undoing an earlier point entry, linked to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revert {
    /// The entry: a prefix of its digest or id, matching exactly one entry.
    pub entry: String,
    /// The officer's words, after the link (may be empty).
    #[serde(default)]
    pub reason: String,
    /// Who makes the change; the daemon's node name when absent.
    #[serde(default)]
    pub actor: Option<String>,
}

/// One line of an import: a player and the balance they should have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    /// The player.
    pub player: String,
    /// Their total once imported.
    pub points: i64,
}

/// Set players' totals to given balances (opening balances), one entry per player whose
/// total differs, as one batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// The balances, each player at most once.
    pub balances: Vec<Balance>,
    /// Why.
    pub reason: String,
    /// Who makes the change; the daemon's node name when absent.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only plan: write nothing, answer what would be written.
    #[serde(default)]
    pub dry_run: bool,
}

/// Append an entry made and signed elsewhere (an officer roster change signed by the root
/// key, which the daemon does not hold). Its seal is checked first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Append {
    /// The signed entry.
    pub entry: Box<Entry>,
}

/// Current totals. (Braced, so a request with extra fields is refused.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Points {}

/// History with running totals, optionally for one player.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Only this player's entries.
    #[serde(default)]
    pub player: Option<String>,
}

/// What `officer add`/`officer remove` need to know about one officer name: the officers,
/// the revoked keys and the name's keys with the entries of theirs that count
/// ([`RosterView`]), judged under `root_public_key`, the key that will sign the change.
/// Refused when the ledger is judged under no root key or another one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterQuery {
    /// The officer's name (compared in any letter case).
    pub name: String,
    /// The root key the change will be signed by.
    pub root_public_key: PublicKey,
}

/// Node, group, sync state, peers and counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {}

/// Switch sync on or off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSync {
    /// The new state.
    pub enabled: bool,
}

/// Switch SYNC debug logging on or off at run time (the seed's `/sfdebug`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchDebug {
    /// The new state.
    pub enabled: bool,
}

/// Any request, as it travels: tagged by `cmd`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// See [`Adjust`].
    Adjust(Adjust),
    /// See [`Append`].
    Append(Append),
    /// See [`Award`].
    Award(Award),
    /// See [`Decay`].
    Decay(Decay),
    /// See [`Revert`].
    Revert(Revert),
    /// See [`Import`].
    Import(Import),
    /// See [`Points`].
    Points(Points),
    /// See [`History`].
    History(History),
    /// See [`RosterQuery`].
    Roster(RosterQuery),
    /// See [`Status`].
    Status(Status),
    /// See [`SwitchSync`].
    Sync(SwitchSync),
    /// See [`SwitchDebug`].
    Debug(SwitchDebug),
}

/// Result of an adjust.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdjustResult {
    /// The entry as recorded.
    pub entry: Entry,
    /// The player's total after replaying it.
    pub total: i64,
    /// Notes for the officer: the name matched an existing player spelled differently, or
    /// a new player's name looks like an existing one's.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One entry of a batch (award, decay, import, revert), written or planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchChange {
    /// The player.
    pub player: String,
    /// Their total before.
    pub before: i64,
    /// Points the entry adds.
    pub delta: i64,
    /// Their total after (on this peer).
    pub after: i64,
    /// The entry as recorded; `None` in a dry run.
    #[serde(default)]
    pub entry: Option<Entry>,
}

/// Result of a batch: what was written (or, in a dry run, would be).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Whether the entries are on disk (false: a dry run, nothing written).
    pub written: bool,
    /// One per entry, in the order written.
    pub changes: Vec<BatchChange>,
    /// Notes for the officer (name spellings matched, look-alikes).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Totals by player.
pub type PointsResult = BTreeMap<String, i64>;
/// History rows in replay order.
pub type HistoryResult = Vec<HistoryRow>;

/// How a peer reaches us, as `status` and `peers` show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerReach {
    /// Heard on the multicast group channel recently (the default: daemons from before
    /// unicast peers only had multicast).
    #[default]
    Multicast,
    /// At an address listed in `[peers] addresses`.
    Listed,
    /// It contacted us by unicast (a spoke, as seen by a hub).
    Learned,
}

impl PeerReach {
    /// The word used in output: `multicast`, `listed` or `learned`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerReach::Multicast => "multicast",
            PeerReach::Listed => "listed",
            PeerReach::Learned => "learned",
        }
    }
}

/// One peer as shown by `status`: a peer heard recently, or a listed address (heard or not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its node name, if announced. Chosen by the peer: may hold anything, so escape it
    /// before printing it on a terminal.
    pub name: Option<String>,
    /// Its node id (16 hex digits); `None` for a listed address nobody answered from.
    #[serde(default)]
    pub node: Option<String>,
    /// Its address: where we send to it (the address its datagrams came from, as a NAT
    /// shows it, or the listed address).
    pub address: String,
    /// How it reaches us.
    #[serde(default)]
    pub reached: PeerReach,
    /// Milliseconds since we last heard it; `None` if never.
    pub last_heard_ms_ago: Option<u64>,
    /// Whether its last reported fingerprint equals ours.
    pub in_sync: bool,
}

/// One entry of `[peers] addresses` and how it resolved, as shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedStatus {
    /// The address as configured (`host:port` or `IP:port`).
    pub address: String,
    /// The addresses contacted for it: the last successful resolution, kept while later
    /// lookups fail. Empty until the name first resolves.
    pub resolved: Vec<String>,
    /// Why the last lookup failed, if it did.
    pub error: Option<String>,
    /// Lookups failed in a row (0 once it resolves).
    pub failures: u64,
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
    /// The multicast group and the interface it is joined on (`"239.255.76.83:47683 on
    /// 127.0.0.1"`); `None` without multicast.
    #[serde(default)]
    pub multicast: Option<String>,
    /// Our whisper (unicast) address as bound; peers on other networks need its port.
    #[serde(default)]
    pub whisper: Option<String>,
    /// Entries in the log.
    pub entries: usize,
    /// Set fingerprint (count:hash prefix).
    pub fingerprint: String,
    /// Known peers, then listed addresses no known peer answers from.
    pub peers: Vec<PeerStatus>,
    /// `[peers] addresses` and how each resolved, in configuration order.
    #[serde(default)]
    pub listed: Vec<ListedStatus>,
    /// Counters: datagrams sent/received, drops by reason, sessions.
    pub counters: BTreeMap<String, u64>,
    /// Id of the group key sealing datagrams (8 hex digits); `None` in the clear.
    #[serde(default)]
    pub group_key_id: Option<String>,
    /// Officers on the roster as this peer judges it; `None` without a root key (an open
    /// roster).
    #[serde(default)]
    pub roster_size: Option<usize>,
    /// Latency histograms (`catch_up`, `fsync`), bucketed by
    /// [`crate::core::histogram::BOUNDS_US`].
    #[serde(default)]
    pub histograms: BTreeMap<String, Histogram>,
    /// The officer roster at the end of the log (empty for an open roster).
    #[serde(default)]
    pub officers: Vec<OfficerStatus>,
    /// The web page, when `[http]` turns it on.
    #[serde(default)]
    pub http: Option<HttpStatus>,
}

/// One officer of the roster, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficerStatus {
    /// The roster name. Chosen by whoever holds the root key, but carried by peers: escape
    /// it before showing it.
    pub name: String,
    /// The officer's public key (hex).
    pub key: String,
}

/// The web page as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpStatus {
    /// `http.bind` as configured.
    pub bind: String,
    /// Where the page is served (`http://IP:port/`), or `None` when it could not be.
    pub url: Option<String>,
    /// Why it is not served (the port is taken, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Result of `sync on|off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Whether sync is on now.
    pub sync_enabled: bool,
}

/// Result of `debug on|off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugState {
    /// Whether SYNC debug lines are logged now.
    pub sync_debug: bool,
}

/// Any successful result, as the server sends it: the bare result, untagged (the client
/// knows from its request which one to expect).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// To [`Adjust`].
    Adjusted(Box<AdjustResult>),
    /// To [`Append`]: the entry as stored.
    Appended(Box<Entry>),
    /// To [`Award`], [`Decay`], [`Revert`] and [`Import`].
    Batch(BatchResult),
    /// To [`Points`].
    Points(PointsResult),
    /// To [`History`].
    History(HistoryResult),
    /// To [`RosterQuery`].
    Roster(Box<RosterView>),
    /// To [`Status`].
    Status(Box<StatusResult>),
    /// To [`SwitchSync`].
    Sync(SyncState),
    /// To [`SwitchDebug`].
    Debug(DebugState),
}

macro_rules! command {
    ($command:ident => $variant:ident, $output:ty, $respond:expr) => {
        impl From<$command> for Request {
            fn from(command: $command) -> Request {
                Request::$variant(command)
            }
        }

        impl Command for $command {
            type Output = $output;
            fn respond(output: $output) -> Response {
                $respond(output)
            }
        }
    };
}

command!(Adjust => Adjust, AdjustResult, |o| Response::Adjusted(Box::new(o)));
command!(Append => Append, Entry, |o| Response::Appended(Box::new(o)));
command!(Award => Award, BatchResult, Response::Batch);
command!(Decay => Decay, BatchResult, Response::Batch);
command!(Revert => Revert, BatchResult, Response::Batch);
command!(Import => Import, BatchResult, Response::Batch);
command!(Points => Points, PointsResult, Response::Points);
command!(History => History, HistoryResult, Response::History);
command!(RosterQuery => Roster, RosterView, |o| Response::Roster(Box::new(o)));
command!(Status => Status, StatusResult, |o| Response::Status(Box::new(o)));
command!(SwitchSync => Sync, SyncState, Response::Sync);
command!(SwitchDebug => Debug, DebugState, Response::Debug);

/// Why the daemon refused a request: the error as typed where it happened. Only its text
/// crosses the socket (the client gets it as [`super::ControlError::Refused`]).
pub type Refusal = Box<dyn std::error::Error + Send + Sync>;

/// How a request ended, on the server side.
pub type Outcome = Result<Response, Refusal>;

/// The reply envelope, `{"ok":..,"result":..,"error":..}`: `T` is a [`Response`] when the
/// server writes it and a command's `Output` when the client reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result, when `ok` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
}

impl<T> Reply<T> {
    /// A successful reply.
    pub fn ok(result: T) -> Reply<T> {
        Reply {
            ok: true,
            error: None,
            result: Some(result),
        }
    }

    /// A failure reply.
    pub fn error(message: impl Into<String>) -> Reply<T> {
        Reply {
            ok: false,
            error: Some(message.into()),
            result: None,
        }
    }
}

impl From<Outcome> for Reply<Response> {
    fn from(outcome: Outcome) -> Reply<Response> {
        match outcome {
            Ok(response) => Reply::ok(response),
            Err(refusal) => Reply::error(refusal.to_string()),
        }
    }
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

    fn refused_for(line: &str) -> String {
        match parse_request(line) {
            Err(BadRequest::Json(err)) => err.to_string(),
            other => panic!("{line}: expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn parses_requests_strictly() {
        assert_eq!(
            parse_request(r#"{"cmd":"points"}"#).unwrap(),
            Request::Points(Points {})
        );
        assert_eq!(
            parse_request(r#"{"cmd":"adjust","player":"Bob","delta":-5,"reason":"r"}"#).unwrap(),
            Request::Adjust(Adjust {
                player: "Bob".into(),
                delta: -5,
                reason: "r".into(),
                actor: None
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"sync","enabled":false}"#).unwrap(),
            Request::Sync(SwitchSync { enabled: false })
        );
        assert!(refused_for(r#"{"cmd":"points","extra":1}"#).contains("unknown field"));
        assert!(refused_for(r#"{"cmd":"status","x":true}"#).contains("unknown field"));
        assert!(refused_for(r#"{"cmd":"explode"}"#).contains("unknown variant"));
        assert!(refused_for(r#"{"cmd":"adjust","player":"A"}"#).contains("missing field"));
        assert!(parse_request("not json").is_err());
        assert!(matches!(
            parse_request(&"x".repeat(MAX_REQUEST_BYTES + 1)),
            Err(BadRequest::TooLong { .. })
        ));
        // The limit is on the request, not its newline: a padded request of exactly the
        // limit is accepted.
        let padded = {
            // Built by hand: format! widths stop at 65,535.
            let mut line = String::from(r#"{"cmd":"points"}"#);
            line.push_str(&" ".repeat(MAX_REQUEST_BYTES - line.len()));
            line.push('\n');
            line
        };
        assert_eq!(parse_request(&padded).unwrap(), Request::Points(Points {}));
    }

    #[test]
    fn the_largest_batch_fits_one_request() {
        let name = "n".repeat(crate::proto::entry::MAX_NAME_BYTES);
        let award = Award {
            players: vec![name.clone(); MAX_BATCH],
            delta: -1_000_000_000,
            reason: "r".repeat(crate::proto::entry::MAX_REASON_BYTES),
            actor: Some(name.clone()),
            dry_run: false,
        };
        let line = serde_json::to_string(&Request::from(award.clone())).unwrap();
        assert!(line.len() <= MAX_REQUEST_BYTES, "{}", line.len());
        assert_eq!(parse_request(&line).unwrap(), Request::Award(award));
        let import = Import {
            balances: vec![
                Balance {
                    player: name.clone(),
                    points: i64::MIN
                };
                MAX_BATCH
            ],
            reason: "r".repeat(crate::proto::entry::MAX_REASON_BYTES),
            actor: Some(name),
            dry_run: true,
        };
        let line = serde_json::to_string(&Request::from(import)).unwrap();
        assert!(line.len() <= MAX_REQUEST_BYTES, "{}", line.len());
    }

    #[test]
    fn requests_keep_their_wire_shape() {
        let line = serde_json::to_string(&Request::from(History {
            player: Some("Aria".into()),
        }))
        .unwrap();
        assert_eq!(line, r#"{"cmd":"history","player":"Aria"}"#);
        let line = serde_json::to_string(&Request::from(SwitchDebug { enabled: true })).unwrap();
        assert_eq!(line, r#"{"cmd":"debug","enabled":true}"#);
        let line = serde_json::to_string(&Request::from(Points {})).unwrap();
        assert_eq!(line, r#"{"cmd":"points"}"#);
        let query = RosterQuery {
            name: "Alice".into(),
            root_public_key: PublicKey([7; 32]),
        };
        let line = serde_json::to_string(&Request::from(query.clone())).unwrap();
        let key = format!("[{}]", ["7"; 32].join(","));
        assert_eq!(
            line,
            format!(r#"{{"cmd":"roster","name":"Alice","root_public_key":{key}}}"#)
        );
        assert_eq!(parse_request(&line).unwrap(), Request::Roster(query));
    }

    #[test]
    fn replies_keep_their_wire_shape_and_decode_as_the_command_expects() {
        let sent = Reply::from(Ok::<_, Refusal>(SwitchSync::respond(SyncState {
            sync_enabled: true,
        })));
        let line = serde_json::to_string(&sent).unwrap();
        assert_eq!(line, r#"{"ok":true,"result":{"sync_enabled":true}}"#);
        let read: Reply<SyncState> = serde_json::from_str(&line).unwrap();
        assert_eq!(read.result, Some(SyncState { sync_enabled: true }));

        let refused = Reply::from(Err::<Response, Refusal>("no such thing".into()));
        let line = serde_json::to_string(&refused).unwrap();
        assert_eq!(line, r#"{"ok":false,"error":"no such thing"}"#);
        let read: Reply<PointsResult> = serde_json::from_str(&line).unwrap();
        assert_eq!(read.error.as_deref(), Some("no such thing"));
    }
}
