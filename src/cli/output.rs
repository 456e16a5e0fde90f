//! Human-readable output of the commands: tables and summaries printed to stdout. JSON and
//! export formats live with their commands; this is only what a person reads.

use super::export;
use loot_sync::control::terminal_safe;
use loot_sync::control::{AdjustResult, ListedStatus, PeerStatus, StatusResult};
use loot_sync::core::ledger::HistoryRow;
use loot_sync::store::verify::VerifyReport;
use std::collections::BTreeMap;

/// One line confirming a recorded adjustment and the player's new total.
pub fn print_adjusted(result: &AdjustResult) {
    let e = &result.entry;
    println!(
        "recorded {:+} for {} by {} ({}); {} now has {} point{} [{}]",
        e.delta,
        e.target,
        e.actor,
        e.reason,
        e.target,
        result.total,
        if result.total.abs() == 1 { "" } else { "s" },
        e.id
    );
}

/// The summary of a log check: size, span, notes and every damaged region.
pub fn print_verify(report: &VerifyReport) {
    let time =
        |at: Option<loot_sync::proto::hlc::Hlc>| at.map_or("-".to_string(), |at| at.to_string());
    println!("log:      {}", report.path.display());
    println!("bytes:    {}", report.file_bytes);
    println!("entries:  {}", report.entries);
    println!("players:  {}", report.players);
    println!("first:    {}", time(report.first_at));
    println!("last:     {}", time(report.last_at));
    if report.identical_duplicates > 0 {
        println!(
            "note:     {} records repeat an earlier entry exactly (harmless; skipped on replay)",
            report.identical_duplicates
        );
    }
    if let Some(tail) = &report.torn_tail {
        println!(
            "note:     torn tail of {} bytes at offset {} ({}): an interrupted append, cut \
             automatically when the log is next opened",
            tail.bytes, tail.offset, tail.reason
        );
    }
    for region in &report.damaged {
        println!(
            "DAMAGE:   {} bytes at offset {}: {}",
            region.bytes, region.offset, region.reason
        );
    }
    println!(
        "status:   {}",
        if report.is_clean() { "ok" } else { "DAMAGED" }
    );
}

/// Standings as a table, highest total first.
pub fn print_points(totals: &BTreeMap<String, i64>) {
    if totals.is_empty() {
        println!(
            "no adjustments count yet (entries that count for nothing are marked in `lootsync history`)"
        );
        return;
    }
    let rows = export::ranked(totals);
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!("{:<width$}  {:>8}", "player", "points");
    for (name, total) in rows {
        println!("{name:<width$}  {total:>8}");
    }
}

/// The audit trail, one line per entry, with why an entry counts for nothing.
pub fn print_history(rows: &[HistoryRow], player: Option<&str>) {
    if rows.is_empty() {
        match player {
            Some(player) => println!("no adjustments recorded for {player}"),
            None => println!("no adjustments recorded yet"),
        }
        return;
    }
    for row in rows {
        let e = &row.entry;
        let what = match &e.kind {
            loot_sync::proto::entry::EntryKind::Points => {
                format!("{:>+6} -> {:>6}", e.delta, row.total)
            }
            // The reason says what the roster change did.
            _ => format!("{:<16}", "roster change"),
        };
        let rejected = row
            .rejected
            .as_deref()
            .map(|why| format!("  [{why}]"))
            .unwrap_or_default();
        // Who really wrote it: the signer's roster name, when the free-text actor differs.
        let author = match row.signed_by.as_deref() {
            Some(officer) if officer != e.actor => format!("{} (key of {officer})", e.actor),
            _ => e.actor.clone(),
        };
        println!(
            "{}  {:<12} {:<12} {what}  {}{rejected}",
            e.at, author, e.target, e.reason
        );
    }
}

/// One line per peer: name, how it is reached, address, when last heard, in sync or not.
pub fn print_peers(peers: &[PeerStatus]) {
    for peer in peers {
        let name = peer.name.as_deref().map_or("?".to_owned(), terminal_safe);
        let heard = match peer.last_heard_ms_ago {
            Some(ms) => format!("heard {ms:>6} ms ago"),
            None => "never heard".to_owned(),
        };
        // A listed address nobody answered from says so, rather than "differs".
        let state = match (&peer.node, peer.in_sync) {
            (None, _) => "no answer yet",
            (Some(_), true) => "in sync",
            (Some(_), false) => "differs",
        };
        println!(
            "  {name:<16} {:<9} {:<22} {heard:<21} {state}",
            peer.reached.as_str(),
            peer.address,
        );
    }
}

/// One line per `[peers] addresses` entry: what it resolved to, or why it did not.
pub fn print_listed(listed: &[ListedStatus]) {
    for entry in listed {
        let resolved = match entry.resolved.is_empty() {
            true => "-".to_owned(),
            false => entry.resolved.join(", "),
        };
        match &entry.error {
            None if entry.resolved.is_empty() => {
                println!("  {:<30} resolving", entry.address);
            }
            None => println!("  {:<30} {resolved}", entry.address),
            Some(error) => println!(
                "  {:<30} {resolved}  (does not resolve: {error}; {} failed lookup{} in a row)",
                entry.address,
                entry.failures,
                if entry.failures == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The running daemon's node, sync state, how it reaches peers, peers and counters.
pub fn print_status(status: &StatusResult) {
    println!("node:        {}", status.node);
    println!("group:       {}", status.group);
    println!(
        "sync:        {}",
        if status.sync_enabled { "on" } else { "off" }
    );
    println!(
        "multicast:   {}",
        status.multicast.as_deref().unwrap_or("off")
    );
    if let Some(whisper) = &status.whisper {
        println!("whisper:     {whisper}");
    }
    if let Some(http) = &status.http {
        match (&http.url, &http.error) {
            (Some(url), _) => println!("web page:    {url}"),
            (None, Some(error)) => println!("web page:    none ({error})"),
            (None, None) => println!("web page:    none"),
        }
    }
    println!("entries:     {}", status.entries);
    println!("fingerprint: {}", status.fingerprint);
    if !status.listed.is_empty() {
        println!("listed:      {}", status.listed.len());
        print_listed(&status.listed);
    }
    println!("peers:       {}", status.peers.len());
    print_peers(&status.peers);
    println!("counters:");
    for (name, value) in &status.counters {
        println!("  {name:<24} {value}");
    }
}
