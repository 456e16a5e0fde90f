//! The records `lootsync export` and `history --json` print, one place for them so the web
//! page's JSON (`/api/history`) is byte for byte what the CLI prints; and [`terminal_safe`],
//! how text a peer chose is shown by the CLI and the web page alike.

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
    /// The signer's public key in hex, empty for an unsigned entry.
    signer: String,
    rejected: Option<&'a str>,
    digest: String,
    signed_by: Option<&'a str>,
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
            signer: e
                .seal
                .map(|seal| seal.signer.to_string())
                .unwrap_or_default(),
            rejected: row.rejected.as_deref(),
            digest: e.digest().to_hex(),
            signed_by: row.signed_by.as_deref(),
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

/// Text a peer chose (its node name, a reason), made safe to show on a terminal or a page: control characters (an
/// escape sequence could rewrite the screen) and the invisible characters that reorder or
/// hide text (bidirectional overrides, zero-width marks) are shown as `\u{..}` escapes.
pub fn terminal_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        let invisible = matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        );
        if c.is_control() || invisible {
            safe.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            safe.push(c);
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn peer_chosen_text_is_made_terminal_safe() {
        assert_eq!(terminal_safe("bob"), "bob");
        assert_eq!(terminal_safe("Zoë 🐉"), "Zoë 🐉");
        assert_eq!(terminal_safe("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(terminal_safe("x\ny\rz\u{7f}"), "x\\u{a}y\\u{d}z\\u{7f}");
        assert_eq!(terminal_safe("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(terminal_safe("a\u{200b}b"), "a\\u{200b}b");
        assert!(!terminal_safe("\u{9b}31m").chars().any(char::is_control));
    }
}
