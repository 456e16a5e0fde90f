//! Human-readable output of the commands: tables and summaries printed to stdout. JSON and
//! export formats live with their commands; this is only what a person reads.

use super::export;
use loot_sync::control::{AdjustResult, BatchResult, ListedStatus, PeerStatus, StatusResult};
use loot_sync::core::histogram::{Histogram, BOUNDS_US};
use loot_sync::core::ledger::HistoryRow;
use loot_sync::core::roster::listing::{OfficerListing, OfficerState};
pub use loot_sync::proto::text::terminal_safe;
use loot_sync::store::verify::VerifyReport;
use std::collections::BTreeMap;
use unicode_width::UnicodeWidthStr;

/// `text` made terminal-safe and padded with spaces to `width` terminal columns (by display
/// width, so wide characters such as CJK or emoji keep the columns aligned).
fn cell(text: &str, width: usize) -> String {
    let safe = terminal_safe(text);
    let pad = width.saturating_sub(safe.width());
    format!("{safe}{}", " ".repeat(pad))
}

/// The widest of `texts` in terminal columns once made safe, at least `min`.
fn column_width<'a>(texts: impl Iterator<Item = &'a str>, min: usize) -> usize {
    texts
        .map(|text| terminal_safe(text).width())
        .max()
        .unwrap_or(0)
        .max(min)
}

/// Prints the officer's notes (spellings matched, look-alikes) on stderr.
fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        eprintln!("lootsync: {}", terminal_safe(warning));
    }
}

/// One line confirming a recorded adjustment and the player's new total.
pub fn print_adjusted(result: &AdjustResult) {
    print_warnings(&result.warnings);
    let e = &result.entry;
    println!(
        "recorded {:+} for {} by {} ({}); {} now has {} point{} [{} digest {}]",
        e.delta,
        terminal_safe(&e.target),
        terminal_safe(&e.actor),
        terminal_safe(&e.reason),
        terminal_safe(&e.target),
        result.total,
        if result.total.abs() == 1 { "" } else { "s" },
        e.id,
        e.digest()
    );
}

/// The table of a batch (award, decay, import, revert): one line per entry with the
/// player's total before and after, then what happened.
pub fn print_batch(command: &str, result: &BatchResult, nothing: &str) {
    print_warnings(&result.warnings);
    if result.changes.is_empty() {
        println!("{command}: nothing to write ({nothing})");
        return;
    }
    let width = column_width(result.changes.iter().map(|c| c.player.as_str()), 6);
    println!(
        "{}  {:>10}  {:>10}  {:>10}{}",
        cell("player", width),
        "before",
        "change",
        "after",
        if result.written { "  entry" } else { "" }
    );
    for change in &result.changes {
        let entry = change
            .entry
            .as_ref()
            .map(|e| format!("  {}", e.digest()))
            .unwrap_or_default();
        println!(
            "{}  {:>10}  {:>+10}  {:>10}{entry}",
            cell(&change.player, width),
            change.before,
            change.delta,
            change.after
        );
    }
    let n = result.changes.len();
    let entries = if n == 1 { "entry" } else { "entries" };
    if result.written {
        println!("{command}: recorded {n} {entries} in one batch (on disk, sent to the group)");
    } else {
        println!("{command}: dry run, would write {n} {entries}; nothing written");
    }
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
        println!("no points yet: no adjustment that counts has been recorded");
        return;
    }
    let rows = export::ranked(totals);
    let width = column_width(rows.iter().map(|(name, _)| *name), 6);
    println!("{}  {:>8}", cell("player", width), "points");
    for (name, total) in rows {
        println!("{}  {total:>8}", cell(name, width));
    }
}

/// The audit trail, one line per entry: its digest (what `revert` takes), time, author,
/// player, change and running total, reason, the revert links, and why an entry counts for
/// nothing. Every text field is escaped: entries may come from any peer.
pub fn print_history(rows: &[HistoryRow], player: Option<&str>) {
    if rows.is_empty() {
        match player {
            Some(player) => println!("no adjustments recorded for {}", terminal_safe(player)),
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
        let short = |hex: &str| hex.get(..8).unwrap_or(hex).to_string();
        let mut links = String::new();
        if let Some(of) = &row.reverts {
            links.push_str(&format!("  [reverts {}]", short(of)));
        }
        if let Some(by) = &row.reverted_by {
            links.push_str(&format!("  [reverted by {}]", short(by)));
        }
        // Who really wrote it: the signer's roster name, when the free-text actor differs.
        let author = match row.signed_by.as_deref() {
            Some(officer) if officer != e.actor => format!("{} (key of {officer})", e.actor),
            _ => e.actor.clone(),
        };
        println!(
            "{}  {}  {} {} {what}  {}{links}{rejected}",
            e.digest(),
            e.at,
            cell(&author, 12),
            cell(&e.target, 12),
            terminal_safe(&e.reason)
        );
    }
}

/// The roster: one line per officer key ever added, then the root key it is judged under.
pub fn print_officers(root: &str, listing: &[OfficerListing]) {
    println!("root key:  {root}");
    if listing.is_empty() {
        println!("no officers yet: add one with `lootsync officer add NAME PUBKEY`");
        return;
    }
    let width = column_width(listing.iter().map(|o| o.name.as_str()), 7);
    println!(
        "{}  {:<8}  {:<24}  {:<10}  {:>7}  public key",
        cell("officer", width),
        "state",
        "added",
        "added by",
        "entries"
    );
    for officer in listing {
        let state = match officer.state {
            OfficerState::Active => "officer",
            OfficerState::Revoked => "revoked",
            OfficerState::Removed => "removed",
        };
        println!(
            "{}  {state:<8}  {:<24}  {}  {:>7}  {}",
            cell(&officer.name, width),
            officer.added_at,
            cell(&officer.added_by, 10),
            officer.entries_counted,
            officer.public_key
        );
    }
}

/// One line per peer: name, how it is reached, address, when last heard, in sync or not.
pub fn print_peers(peers: &[PeerStatus]) {
    for peer in peers {
        let name = cell(peer.name.as_deref().unwrap_or("?"), 16);
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
            "  {name} {:<9} {:<22} {heard:<21} {state}",
            peer.reached.as_str(),
            peer.address,
        );
    }
}

/// Notes on node names used by more than one daemon: two daemons left on the default node
/// name (the hostname) look like one in every log line and in `peers`.
pub fn print_name_clashes(own: &str, peers: &[PeerStatus]) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for name in peers.iter().filter_map(|p| p.name.as_deref()) {
        *count.entry(name).or_default() += 1;
    }
    if let Some(n) = count.get(own) {
        println!(
            "note: {n} peer{} also named {:?}, this daemon's own node name: give every daemon \
             its own `node` in its config",
            if *n == 1 { " is" } else { "s are" },
            terminal_safe(own)
        );
    }
    for (name, n) in count.into_iter().filter(|(name, n)| *n > 1 && *name != own) {
        println!(
            "note: {n} peers are named {:?}: either daemons share a node name (give each its \
             own `node`) or one restarted less than sync.peer_timeout ago",
            terminal_safe(name)
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
    println!("node:        {}", terminal_safe(&status.node));
    println!("group:       {}", status.group);
    println!(
        "group key:   {}",
        status
            .group_key_id
            .as_deref()
            .unwrap_or("none (datagrams in the clear)")
    );
    println!(
        "officers:    {}",
        status
            .roster_size
            .map_or("open roster (no root key)".to_string(), |n| n.to_string())
    );
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
    print_name_clashes(&status.node, &status.peers);
    if !status.histograms.is_empty() {
        println!("latency:");
        for (name, histogram) in &status.histograms {
            println!("  {name:<24} {}", latency_summary(histogram));
        }
    }
    println!("counters:");
    for (name, value) in &status.counters {
        println!("  {name:<24} {value}");
    }
}

/// One histogram in words: how many, the mean, and the buckets holding the median and the
/// 99th percentile (a histogram knows only that the quantile is at most its bucket's bound).
fn latency_summary(histogram: &Histogram) -> String {
    let count = histogram.count();
    let bound = |q: f64| match histogram.quantile_bound_us(q) {
        Some(Some(us)) => format!("≤ {}", micros(us)),
        _ => format!("> {}", micros(*BOUNDS_US.last().unwrap_or(&0))),
    };
    if count == 0 {
        return "none yet".to_string();
    }
    format!(
        "{count} timed, mean {}, median {}, 99th percentile {}",
        micros(histogram.sum_us / count),
        bound(0.5),
        bound(0.99)
    )
}

/// Microseconds as a short human duration (`250 µs`, `2.5 ms`, `1.2 s`).
fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{} ms", trim_float(us as f64 / 1e3)),
        _ => format!("{} s", trim_float(us as f64 / 1e6)),
    }
}

/// One decimal, dropped when it is zero (`2.5`, `10`).
fn trim_float(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::{cell, column_width, latency_summary, micros};
    use loot_sync::core::histogram::Histogram;

    #[test]
    fn latency_reads_as_counts_mean_and_bucket_bounds() {
        let mut h = Histogram::default();
        assert_eq!(latency_summary(&h), "none yet");
        for us in [800, 900, 2_000, 40_000] {
            h.observe_us(us);
        }
        assert_eq!(
            latency_summary(&h),
            "4 timed, mean 10.9 ms, median ≤ 1 ms, 99th percentile ≤ 50 ms"
        );
        assert_eq!(micros(250), "250 µs");
        assert_eq!(micros(2_500_000), "2.5 s");
    }

    #[test]
    fn cells_pad_by_display_width_and_escape() {
        assert_eq!(cell("ab", 4), "ab  ");
        // Two CJK characters take four columns.
        assert_eq!(cell("\u{5f20}\u{4e09}", 6), "\u{5f20}\u{4e09}  ");
        assert_eq!(cell("a\u{1b}b", 0), "a\\u{1b}b");
        assert_eq!(column_width(["\u{5f20}\u{4e09}", "x"].into_iter(), 1), 4);
    }
}
