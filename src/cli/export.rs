//! `lootsync export`: standings or the full audit trail as CSV or JSON, for spreadsheets,
//! websites and backups of the readable record.
//!
//! The data comes from the same `points` and `history` requests the other commands use, so
//! an export reads the running daemon's ledger, or the log itself when no daemon runs.

use super::args::ExportFormat;
use loot_sync::core::ledger::HistoryRow;
use std::collections::BTreeMap;

/// Column names of a history export, in order; the JSON objects use the same keys.
pub const HISTORY_COLUMNS: [&str; 14] = [
    "id",
    "at",
    "time",
    "actor",
    "player",
    "delta",
    "new_total_as_authored",
    "total",
    "reason",
    "kind",
    "signer",
    "rejected",
    "digest",
    "signed_by",
];

/// The `kind` column: what an entry does.
fn kind_name(kind: &loot_sync::proto::entry::EntryKind) -> &'static str {
    match kind {
        loot_sync::proto::entry::EntryKind::Points => "points",
        loot_sync::proto::entry::EntryKind::OfficerAdd { .. } => "officer_add",
        loot_sync::proto::entry::EntryKind::OfficerRemove => "officer_remove",
        loot_sync::proto::entry::EntryKind::OfficerRevoke { .. } => "officer_revoke",
    }
}

/// The `signer` column: the signer's public key in hex, empty for an unsigned entry.
fn signer_text(entry: &loot_sync::proto::entry::Entry) -> String {
    entry
        .seal
        .map(|seal| seal.signer.to_string())
        .unwrap_or_default()
}

/// Standings in display order: highest total first, ties by name, so an export reads like
/// `lootsync points`.
pub fn ranked(totals: &BTreeMap<String, i64>) -> Vec<(&str, i64)> {
    let mut rows: Vec<(&str, i64)> = totals.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows
}

/// Renders standings (`player,points`).
pub fn standings(totals: &BTreeMap<String, i64>, format: ExportFormat) -> String {
    let rows = ranked(totals);
    match format {
        ExportFormat::Csv => {
            let mut out = String::from("player,points\r\n");
            for (player, total) in rows {
                push_csv_row(&mut out, &[player, &total.to_string()]);
            }
            out
        }
        ExportFormat::Json => {
            let array: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|(player, points)| serde_json::json!({ "player": player, "points": points }))
                .collect();
            json_line(&serde_json::Value::Array(array))
        }
    }
}

/// Renders the audit trail in replay order with running totals.
pub fn history(rows: &[HistoryRow], format: ExportFormat) -> String {
    match format {
        ExportFormat::Csv => {
            let mut out = HISTORY_COLUMNS.join(",");
            out.push_str("\r\n");
            for row in rows {
                let e = &row.entry;
                push_csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.at.0.to_string(),
                        &e.at.wall_time(),
                        &e.actor,
                        &e.target,
                        &e.delta.to_string(),
                        &e.new_total.to_string(),
                        &row.total.to_string(),
                        &e.reason,
                        kind_name(&e.kind),
                        &signer_text(e),
                        row.rejected.as_deref().unwrap_or(""),
                        &e.digest().to_hex(),
                        row.signed_by.as_deref().unwrap_or(""),
                    ],
                );
            }
            out
        }
        ExportFormat::Json => {
            let array: Vec<serde_json::Value> = rows.iter().map(history_json).collect();
            json_line(&serde_json::Value::Array(array))
        }
    }
}

/// One history row as a flat JSON object (the keys of [`HISTORY_COLUMNS`]); also what
/// `lootsync history --json` prints.
pub fn history_json(row: &HistoryRow) -> serde_json::Value {
    let e = &row.entry;
    serde_json::json!({
        "id": e.id,
        "digest": e.digest().to_hex(),
        "signed_by": row.signed_by,
        "at": e.at.0,
        "time": e.at.wall_time(),
        "actor": e.actor,
        "player": e.target,
        "delta": e.delta,
        "new_total_as_authored": e.new_total,
        "total": row.total,
        "reason": e.reason,
        "kind": kind_name(&e.kind),
        "signer": signer_text(e),
        "rejected": row.rejected,
    })
}

fn json_line(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are strings.
    let mut out = serde_json::to_string(value).unwrap_or_default();
    out.push('\n');
    out
}

/// Appends one CSV record. Fields holding a comma, quote or line break are quoted with
/// inner quotes doubled (RFC 4180), so reasons with any text survive a round trip.
fn push_csv_row(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use loot_sync::proto::entry::{Entry, Hlc};

    fn row(target: &str, delta: i64, total: i64, reason: &str) -> HistoryRow {
        HistoryRow {
            signed_by: None,
            entry: Entry {
                id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
                at: Hlc(1_700_000_000_000 << 16),
                actor: "officer".into(),
                target: target.into(),
                delta,
                new_total: total,
                reason: reason.into(),
                kind: loot_sync::proto::entry::EntryKind::Points,
                seal: None,
            },
            total,
            rejected: None,
        }
    }

    /// A minimal RFC 4180 reader, to prove the writer's quoting round-trips.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') => {}
                (false, '\n') => {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        records
    }

    #[test]
    fn standings_are_ranked_in_both_formats() {
        let totals = BTreeMap::from([("Bob".to_string(), -5), ("Alice".to_string(), 30)]);
        assert_eq!(
            standings(&totals, ExportFormat::Csv),
            "player,points\r\nAlice,30\r\nBob,-5\r\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&standings(&totals, ExportFormat::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"player":"Alice","points":30},{"player":"Bob","points":-5}])
        );
        assert_eq!(
            standings(&BTreeMap::new(), ExportFormat::Csv),
            "player,points\r\n"
        );
    }

    #[test]
    fn awkward_reasons_round_trip_through_csv() {
        let reason = "said \"hi\", then\nleft, with a tab\tand é";
        let out = history(&[row("Bob, Jr.", -5, -5, reason)], ExportFormat::Csv);
        let records = parse_csv(&out);
        assert_eq!(records.len(), 2, "{out}");
        assert_eq!(records[0], HISTORY_COLUMNS.to_vec());
        assert_eq!(records[1][4], "Bob, Jr.");
        assert_eq!(records[1][5], "-5");
        assert_eq!(records[1][8], reason);
        assert_eq!(records[1][9..12], ["points", "", ""], "unsigned, counted");
        assert_eq!(records[1][12].len(), 32, "the full digest");
        assert_eq!(records[1][1], (1_700_000_000_000u64 << 16).to_string());
    }

    #[test]
    fn history_json_uses_the_column_names() {
        let out = history(&[row("Bob", 7, 7, "r")], ExportFormat::Json);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let object = json[0].as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = HISTORY_COLUMNS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json[0]["delta"], 7);
        assert_eq!(json[0]["player"], "Bob");
    }
}
