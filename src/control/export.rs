//! The records `lootsync export` and `history --json` print, one place for them so the web
//! page's JSON (`/api/history`) is byte for byte what the CLI prints; and [`terminal_safe`],
//! how text a peer chose is shown by the CLI and the web page alike (the one escaping
//! function lives in [`crate::proto::text`]).

use crate::core::ledger::HistoryRow;
use crate::proto::entry::EntryKind;
use serde::Serialize;
use std::collections::BTreeMap;

/// One line of a standings export; its fields are the columns, in order.
#[derive(Debug, Default, Serialize)]
pub struct Standing<'a> {
    /// The player's name.
    pub player: &'a str,
    /// Their total.
    pub points: i64,
}

/// One line of a history export; its fields are the columns, in order, and the keys of the
/// JSON objects.
#[derive(Debug, Default, Serialize)]
pub struct HistoryRecord<'a> {
    id: String,
    /// The raw clock stamp, which sorts exactly as the replay does.
    at: u64,
    time: String,
    actor: &'a str,
    player: &'a str,
    delta: i64,
    new_total_as_authored: i64,
    total: i64,
    reason: &'a str,
    /// What the entry does: `points` or a roster change.
    kind: &'static str,
    /// The signer's public key in hex; empty in CSV, `null` in JSON, for an unsigned entry.
    signer: Option<String>,
    rejected: Option<&'a str>,
    digest: String,
    signed_by: Option<&'a str>,
    /// The digest of the entry this one reverts.
    reverts: Option<&'a str>,
}

impl<'a> HistoryRecord<'a> {
    /// The record of one history row.
    pub fn of(row: &'a HistoryRow) -> HistoryRecord<'a> {
        let e = &row.entry;
        HistoryRecord {
            id: e.id.to_string(),
            at: e.at.0,
            time: e.at.wall_time(),
            actor: &e.actor,
            player: &e.target,
            delta: e.delta,
            new_total_as_authored: e.new_total,
            total: row.total,
            reason: &e.reason,
            kind: match e.kind {
                EntryKind::Points => "points",
                EntryKind::OfficerAdd { .. } => "officer_add",
                EntryKind::OfficerRemove => "officer_remove",
                EntryKind::OfficerRevoke { .. } => "officer_revoke",
            },
            signer: e.seal.map(|seal| seal.signer.to_string()),
            rejected: row.rejected.as_deref(),
            digest: e.digest().to_hex(),
            signed_by: row.signed_by.as_deref(),
            reverts: row.reverts.as_deref(),
        }
    }
}

/// Standings in display order: highest total first, ties by name, so an export reads like
/// `lootsync points`.
pub fn ranked(totals: &BTreeMap<String, i64>) -> Vec<(&str, i64)> {
    let mut rows: Vec<(&str, i64)> = totals.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows
}

/// A JSON array of `records` and a newline: `history --json`, `export --format json`.
pub fn json_array<R: Serialize>(records: impl Iterator<Item = R>) -> serde_json::Result<String> {
    let array = records
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = serde_json::to_string(&array)?;
    out.push('\n');
    Ok(out)
}

/// How text a peer chose is shown by the CLI and the web page alike.
pub use crate::proto::text::terminal_safe;
