//! `lootsync export`: standings or the full audit trail as CSV or JSON, for spreadsheets,
//! websites and backups of the readable record.
//!
//! The data comes from the same `points` and `history` requests the other commands use, so
//! an export reads the running daemon's ledger, or the log itself when no daemon runs.

use super::args::ExportFormat;
use anyhow::{bail, Context, Result};
pub use loot_sync::control::export::ranked;
use loot_sync::control::export::{json_array, HistoryRecord, Standing};
use loot_sync::control::Balance;
use loot_sync::core::ledger::HistoryRow;
use serde::Serialize;
use std::collections::BTreeMap;

/// Reads a standings file (`player,points`, as [`standings`] writes it in CSV: a header
/// line, RFC 4180 quoting) for `import`. Every error names its line; names are checked as
/// new entries' names are, and each player may appear once (in any letter case).
pub fn read_standings(bytes: &[u8]) -> Result<Vec<Balance>> {
    use loot_sync::proto::entry::MAX_NAME_BYTES;
    use loot_sync::proto::text::{clean_new_text, name_key, terminal_safe};
    use std::collections::HashMap;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut balances = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut header = false;
    for record in reader.records() {
        let record = record.map_err(|err| {
            let line = err.position().map_or(0, |p| p.line());
            anyhow::anyhow!("line {line}: {err}")
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if !header {
            let fields: Vec<&str> = record.iter().map(str::trim).collect();
            if fields != ["player", "points"] {
                bail!(
                    "line {line}: expected the header line `player,points` (as `lootsync export \
                     --format csv` writes it)"
                );
            }
            header = true;
            continue;
        }
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        if record.len() != 2 {
            bail!(
                "line {line}: expected 2 fields (player,points), found {}",
                record.len()
            );
        }
        let player = clean_new_text("player", &record[0], MAX_NAME_BYTES, true)
            .map_err(|err| anyhow::anyhow!("line {line}: player name: {err}"))?;
        let points: i64 = record[1].trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "line {line}: points {:?} is not a whole number",
                terminal_safe(&record[1])
            )
        })?;
        if let Some(first) = seen.insert(name_key(&player), line) {
            bail!(
                "line {line}: {} is already on line {first} (names match in any letter case)",
                terminal_safe(&player)
            );
        }
        balances.push(Balance { player, points });
    }
    if !header {
        bail!("the file is empty: expected the header line `player,points`");
    }
    Ok(balances)
}

/// Renders standings (`player,points`).
pub fn standings(totals: &BTreeMap<String, i64>, format: ExportFormat) -> Result<String> {
    let records = ranked(totals)
        .into_iter()
        .map(|(player, points)| Standing { player, points });
    render(records, format)
}

/// Renders the audit trail in replay order with running totals.
pub fn history(rows: &[HistoryRow], format: ExportFormat) -> Result<String> {
    render(rows.iter().map(HistoryRecord::of), format)
}

fn render<R: Serialize + Default>(
    records: impl Iterator<Item = R>,
    format: ExportFormat,
) -> Result<String> {
    match format {
        ExportFormat::Csv => csv_text(records),
        ExportFormat::Json => Ok(json_array(records)?),
    }
}

/// RFC 4180: a header line of the record type's field names, CRLF line ends, and fields
/// holding a comma, quote or line break quoted with inner quotes doubled, so reasons with
/// any text survive a round trip.
fn csv_text<R: Serialize + Default>(records: impl Iterator<Item = R>) -> Result<String> {
    let mut records = records.peekable();
    // The csv crate names the columns from the first record, so an export with no rows
    // writes a blank record for its header and keeps only the header line.
    let header_only = records.peek().is_none();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    if header_only {
        writer.serialize(R::default())?;
    }
    for record in records {
        writer.serialize(record)?;
    }
    let bytes = writer.into_inner().context("cannot finish the CSV text")?;
    let mut text = String::from_utf8(bytes).context("CSV text is not UTF-8")?;
    if header_only {
        let header_end = text.find("\r\n").map_or(text.len(), |at| at + 2);
        text.truncate(header_end);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loot_sync::testing::EntryBuilder;

    /// The history columns spreadsheets and scripts rely on, pinned so a renamed or
    /// reordered field in [`HistoryRecord`] fails here.
    const HISTORY_HEADER: &str = "id,at,time,actor,player,delta,new_total_as_authored,total,\
                                  reason,kind,signer,rejected,digest,signed_by,reverts\r\n";

    fn row(target: &str, delta: i64, total: i64, reason: &str) -> HistoryRow {
        HistoryRow {
            signed_by: None,
            entry: EntryBuilder::at_ms(1_700_000_000_000)
                .id(uuid::Uuid::from_u128(
                    0x0190_0000_0000_7000_8000_0000_0000_0001,
                ))
                .actor("officer")
                .target(target)
                .delta(delta)
                .new_total(total)
                .reason(reason)
                .build(),
            total,
            rejected: None,
            reverts: None,
            reverted_by: None,
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
            standings(&totals, ExportFormat::Csv).unwrap(),
            "player,points\r\nAlice,30\r\nBob,-5\r\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&standings(&totals, ExportFormat::Json).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"player":"Alice","points":30},{"player":"Bob","points":-5}])
        );
        assert_eq!(
            standings(&BTreeMap::new(), ExportFormat::Csv).unwrap(),
            "player,points\r\n"
        );
    }

    #[test]
    fn standings_read_back_what_export_writes_and_errors_name_the_line() {
        let totals = BTreeMap::from([
            ("Bob, Jr.".to_string(), -5),
            ("Alice".to_string(), 30),
            ("Zoë \"Z\"".to_string(), 7),
        ]);
        let text = standings(&totals, ExportFormat::Csv).unwrap();
        let read = read_standings(text.as_bytes()).unwrap();
        let back: BTreeMap<String, i64> = read.into_iter().map(|b| (b.player, b.points)).collect();
        assert_eq!(back, totals);

        let err = |text: &str| read_standings(text.as_bytes()).unwrap_err().to_string();
        assert!(err("name,total\n").contains("line 1: expected the header"));
        assert!(err("").contains("empty"));
        assert!(err("player,points\nAnn,5\nBo,x\n").starts_with("line 3: points"));
        assert!(err("player,points\nAnn,5\nBo\n").starts_with("line 3: expected 2 fields"));
        assert!(err("player,points\nAnn,5\nann,6\n").contains("already on line 2"));
        let escaped = err("player,points\n\"A\u{1b}[2J\",5\n");
        assert!(escaped.starts_with("line 2: player name"), "{escaped}");
        // A quoted line break is read as RFC 4180 says, and then refused in a name.
        let multi = err("player,points\n\"multi\nline\",5\nBo,x\n");
        assert!(
            multi.starts_with("line 2: player name") && multi.contains("control"),
            "{multi}"
        );
    }

    #[test]
    fn an_empty_history_is_its_header_line() {
        assert_eq!(history(&[], ExportFormat::Csv).unwrap(), HISTORY_HEADER);
        assert_eq!(history(&[], ExportFormat::Json).unwrap(), "[]\n");
    }

    #[test]
    fn awkward_reasons_round_trip_through_csv() {
        let reason = "said \"hi\", then\nleft, with a tab\tand é";
        let out = history(&[row("Bob, Jr.", -5, -5, reason)], ExportFormat::Csv).unwrap();
        let records = parse_csv(&out);
        assert_eq!(records.len(), 2, "{out}");
        assert!(out.starts_with(HISTORY_HEADER), "{out}");
        assert_eq!(records[1][4], "Bob, Jr.");
        assert_eq!(records[1][5], "-5");
        assert_eq!(records[1][8], reason);
        assert_eq!(records[1][9..12], ["points", "", ""], "unsigned, counted");
        assert_eq!(records[1][12].len(), 32, "the full digest");
        assert_eq!(records[1][1], (1_700_000_000_000u64 << 16).to_string());
    }

    #[test]
    fn history_json_uses_the_column_names() {
        let out = history(&[row("Bob", 7, 7, "r")], ExportFormat::Json).unwrap();
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let object = json[0].as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = HISTORY_HEADER.trim_end().split(',').collect();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json[0]["delta"], 7);
        assert_eq!(
            json[0]["signer"],
            serde_json::Value::Null,
            "absent, like the others"
        );
        assert_eq!(json[0]["player"], "Bob");
    }
}
