//! The HTML pages: standings (`/`), a player's history (`/player/{name}`), the peer table
//! (`/peers`) and the roster (`/officers`).
//!
//! Built with maud, which escapes every value it inserts; text a peer chose also goes
//! through [`terminal_safe`] first, so control and invisible characters show as `\u{..}`
//! rather than reach the page raw. Each page is a handler that asks the core and a pure
//! render function (tested without a daemon).

use super::chart::{history_chart, sparkline};
use super::live::Mark;
use super::query::{ask, QueryError};
use super::router::AppState;
use super::trends::Trends;
use crate::control::export::ranked;
use crate::control::{terminal_safe, History, Points, PointsResult, Status, StatusResult};
use crate::core::ledger::HistoryRow;
use crate::proto::entry::EntryKind;
use crate::proto::hlc::Hlc;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// `/`: the standings.
pub(super) async fn standings(State(state): State<AppState>) -> Result<Markup, QueryError> {
    let (status, totals) = tokio::join!(ask(&state.core, Status {}), ask(&state.core, Points {}));
    let status = status?;
    let trends = state.trends.get(&state.core, &status).await?;
    Ok(render_standings(&status, &totals?, &trends))
}

/// `/player/{name}`: one player's history; `404` for a name with no entries.
pub(super) async fn player(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, QueryError> {
    let history = History {
        player: Some(name.clone()),
    };
    let (status, rows) = tokio::join!(ask(&state.core, Status {}), ask(&state.core, history));
    let (status, rows) = (status?, rows?);
    let code = if rows.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    Ok((code, render_player(&status, &name, &rows)).into_response())
}

/// `/peers`: the peer table and the listed addresses.
pub(super) async fn peers(State(state): State<AppState>) -> Result<Markup, QueryError> {
    Ok(render_peers(&ask(&state.core, Status {}).await?))
}

/// `/officers`: the roster.
pub(super) async fn officers(State(state): State<AppState>) -> Result<Markup, QueryError> {
    Ok(render_officers(&ask(&state.core, Status {}).await?))
}

/// Any other path.
pub(super) async fn not_found() -> Response {
    let page = layout(
        "Not found",
        None,
        html! { h1 { "Not found" } p { a href="/" { "Back to the standings" } } },
    );
    (StatusCode::NOT_FOUND, page).into_response()
}

/// The frame of every page: navigation, and with `status` the live summary (group, this
/// peer, sync, peers in sync, entries) that `/events` keeps current.
fn layout(title: &str, status: Option<&StatusResult>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Loot Sync" }
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                script src=(super::assets::JS_PATH) defer {}
            }
            body {
                header {
                    div.bar {
                        span.brand { span #live-dot .live-dot title="live updates" {} "Loot Sync" }
                        nav {
                            a href="/" { "Standings" }
                            a href="/peers" { "Peers" }
                            a href="/officers" { "Officers" }
                            a href="/metrics" { "Metrics" }
                        }
                    }
                }
                @match status {
                    Some(status) => {
                        main #live data-mark=(serde_json::to_string(&Mark::of(status)).unwrap_or_default()) {
                            (summary(status))
                            (content)
                        }
                    }
                    None => { main #live { (content) } }
                }
                footer { "Read-only view of this peer's ledger. JSON: "
                    a href="/api/points" { "points" } ", "
                    a href="/api/history" { "history" } ", "
                    a href="/api/status" { "status" } "." }
            }
        }
    }
}

fn summary(status: &StatusResult) -> Markup {
    let in_sync = status.peers.iter().filter(|p| p.in_sync).count();
    html! {
        div.summary {
            span { "group " b { (terminal_safe(&status.group)) } }
            span { "peer " b { (terminal_safe(&status.node)) } }
            span { "sync " b { (if status.sync_enabled { "on" } else { "off" }) } }
            span { "peers in sync " b { (in_sync) " / " (status.peers.len()) } }
            span { "entries " b { (status.entries) } }
        }
    }
}

/// A date and minute from an entry's clock (the full stamp is in the title).
fn short_time(at: Hlc) -> String {
    let full = at.wall_time();
    match full.split_once('T') {
        Some((date, time)) => format!("{date} {}", time.get(..5).unwrap_or(time)),
        None => full,
    }
}

/// A signed number with a class for its sign.
fn signed(value: i64) -> Markup {
    let class = match value {
        v if v < 0 => "num neg",
        v if v > 0 => "num pos",
        _ => "num",
    };
    html! { td class=(class) { (format!("{value:+}")) } }
}

fn total_cell(value: i64) -> Markup {
    html! { td.num.neg[value < 0] { (value) } }
}

/// The player page's link; the name is percent-encoded so any name is one path segment.
fn player_href(name: &str) -> String {
    format!(
        "/player/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn render_standings(status: &StatusResult, totals: &PointsResult, trends: &Trends) -> Markup {
    let ranked = ranked(totals);
    let content = html! {
        h1 { "Standings" }
        div.card {
            @if ranked.is_empty() {
                p.empty { "No adjustments count yet." }
            } @else {
                table {
                    thead { tr {
                        th.num { "#" }
                        th { "Player" }
                        th.num { "Points" }
                        th.hide-narrow { "Last change" }
                        th { "Trend" }
                    } }
                    tbody {
                        @for (rank, (name, total)) in ranked.iter().enumerate() {
                            @let trend = trends.get(*name).cloned().unwrap_or_default();
                            tr {
                                td.num { (rank + 1) }
                                td.name { a href=(player_href(name)) { (terminal_safe(name)) } }
                                (total_cell(*total))
                                td.time.hide-narrow { (trend.last.map(short_time).unwrap_or_default()) }
                                td { (sparkline(&trend.totals)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Standings", Some(status), content)
}

fn author(row: &HistoryRow) -> Markup {
    let e = &row.entry;
    html! {
        (terminal_safe(&e.actor))
        @if let Some(officer) = row.signed_by.as_deref().filter(|o| *o != e.actor) {
            " " span.tag { "key of " (terminal_safe(officer)) }
        }
        @if let Some(seal) = &e.seal {
            @let key = seal.signer.to_string();
            " " span.key title=(key) { (key.get(..8).unwrap_or(&key)) }
        }
    }
}

fn render_player(status: &StatusResult, name: &str, rows: &[HistoryRow]) -> Markup {
    let points: Vec<(u64, i64)> = rows
        .iter()
        .filter(|r| r.entry.kind == EntryKind::Points)
        .map(|r| (r.entry.at.unix_ms(), r.total))
        .collect();
    let first = rows
        .first()
        .map(|r| short_time(r.entry.at))
        .unwrap_or_default();
    let last = rows
        .last()
        .map(|r| short_time(r.entry.at))
        .unwrap_or_default();
    let shown = terminal_safe(name);
    let content = html! {
        h1 { (shown) }
        @if rows.is_empty() {
            div.card { p.empty { "No entries for this player." } }
        } @else {
            @let total = rows.last().map_or(0, |r| r.total);
            p { "Total " b.neg[total < 0] { (total) } " after " (rows.len()) " entries." }
            (history_chart(&points, &first, &last))
            div.card {
                table {
                    thead { tr {
                        th { "Time" }
                        th { "Actor" }
                        th.num { "Delta" }
                        th.num { "Total" }
                        th { "Reason" }
                    } }
                    tbody {
                        @for row in rows.iter().rev() {
                            tr.void[row.rejected.is_some()] {
                                td.time title=(row.entry.at.wall_time()) { (short_time(row.entry.at)) }
                                td.name { (author(row)) }
                                (signed(row.entry.delta))
                                (total_cell(row.total))
                                td.reason {
                                    (terminal_safe(&row.entry.reason))
                                    // Digests are hex we computed, but they pass through the
                                    // escaping like everything else.
                                    @if let Some(original) = &row.reverts {
                                        " " span.tag title=(original) { "reverts " (original.get(..8).unwrap_or(original)) }
                                    }
                                    @if let Some(by) = &row.reverted_by {
                                        " " span.tag title=(by) { "reverted by " (by.get(..8).unwrap_or(by)) }
                                    }
                                    @if let Some(why) = &row.rejected {
                                        " " span.tag title=(terminal_safe(why)) { "counts for nothing: " (terminal_safe(why)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&shown, Some(status), content)
}

fn render_peers(status: &StatusResult) -> Markup {
    let content = html! {
        h1 { "Peers" }
        div.card {
            @if status.peers.is_empty() {
                p.empty { "No peers heard." }
            } @else {
                table {
                    thead { tr {
                        th { "Name" } th { "Reached" } th.hide-narrow { "Address" }
                        th.num { "Last heard" } th { "In sync" }
                    } }
                    tbody {
                        @for peer in &status.peers {
                            tr {
                                td.name {
                                    (peer.name.as_deref().map_or("?".to_owned(), terminal_safe))
                                    @if let Some(node) = &peer.node { " " span.key { (node) } }
                                }
                                td { (peer.reached.as_str()) }
                                td.hide-narrow.key { (peer.address) }
                                td.num { (peer.last_heard_ms_ago.map_or("never".to_owned(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0))) }
                                td {
                                    @match (&peer.node, peer.in_sync) {
                                        (None, _) => span.tag { "no answer yet" },
                                        (Some(_), true) => span.pos { "in sync" },
                                        (Some(_), false) => span.neg { "differs" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !status.listed.is_empty() {
            h1 { "Listed addresses" }
            div.card { table {
                thead { tr { th { "Address" } th { "Resolved" } th { "Error" } } }
                tbody { @for listed in &status.listed { tr {
                    td.key { (terminal_safe(&listed.address)) }
                    td.key { (listed.resolved.join(", ")) }
                    td { (listed.error.as_deref().map(terminal_safe).unwrap_or_default()) }
                } } }
            } }
        }
    };
    layout("Peers", Some(status), content)
}

fn render_officers(status: &StatusResult) -> Markup {
    let content = html! {
        h1 { "Officers" }
        div.card {
            @if status.officers.is_empty() {
                p.empty { "No officers: an open roster (no root key configured), or none added yet." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Public key" } } }
                    tbody { @for officer in &status.officers { tr {
                        td.name { (terminal_safe(&officer.name)) }
                        td.key { (officer.key) }
                    } } }
                }
            }
        }
    };
    layout("Officers", Some(status), content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{OfficerStatus, PeerReach, PeerStatus};
    use crate::testing::EntryBuilder;
    use std::collections::BTreeMap;

    const HOSTILE: [&str; 3] = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "esc\u{1b}[2Jape\u{0}nul\u{202e}rtl",
    ];

    fn status() -> StatusResult {
        StatusResult {
            node: HOSTILE[0].into(),
            group: HOSTILE[1].into(),
            sync_enabled: true,
            multicast: None,
            whisper: None,
            entries: 2,
            fingerprint: "2:ab".into(),
            peers: HOSTILE
                .iter()
                .map(|name| PeerStatus {
                    name: Some((*name).into()),
                    node: Some("00000000000000aa".into()),
                    address: "127.0.0.1:1".into(),
                    reached: PeerReach::Multicast,
                    last_heard_ms_ago: Some(1200),
                    in_sync: false,
                })
                .collect(),
            listed: Vec::new(),
            group_key_id: None,
            roster_size: None,
            counters: BTreeMap::new(),
            histograms: BTreeMap::new(),
            officers: HOSTILE
                .iter()
                .map(|name| OfficerStatus {
                    name: (*name).into(),
                    key: "ab".into(),
                })
                .collect(),
            http: None,
        }
    }

    fn row(target: &str, reason: &str, delta: i64, total: i64) -> HistoryRow {
        HistoryRow {
            entry: EntryBuilder::at_ms(1_700_000_000_000)
                .actor(HOSTILE[1])
                .target(target)
                .delta(delta)
                .reason(reason)
                .build(),
            total,
            rejected: Some(HOSTILE[0].into()),
            signed_by: Some(HOSTILE[2].into()),
            reverts: None,
            reverted_by: None,
        }
    }

    /// No hostile text appears raw: no tag or attribute it tried to open, no control or
    /// bidi character.
    fn assert_inert(page: &str) {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(!page.chars().any(|c| c.is_control() && c != '\n'), "{page}");
        assert!(!page.contains('\u{202e}'), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(
            page.contains("\\u{1b}[2Jape\\u{0}nul\\u{202e}rtl"),
            "{page}"
        );
    }

    #[test]
    fn hostile_names_and_reasons_render_as_text() {
        let rows: Vec<HistoryRow> = HOSTILE
            .iter()
            .map(|name| row(name, HOSTILE[0], -3, -3))
            .collect();
        let totals: PointsResult = HOSTILE.iter().map(|n| (n.to_string(), -3)).collect();
        let trends = crate::http::trends::trends_of(&rows);
        let standings = render_standings(&status(), &totals, &trends).into_string();
        assert_inert(&standings);
        // Links are percent-encoded into one path segment.
        assert!(standings.contains("/player/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"));
        for name in HOSTILE {
            assert_inert(&render_player(&status(), name, &rows).into_string());
        }
        assert_inert(&render_peers(&status()).into_string());
        assert_inert(&render_officers(&status()).into_string());
    }

    #[test]
    fn a_player_page_marks_entries_that_count_for_nothing_and_negative_totals() {
        let page = render_player(&status(), "Bob", &[row("Bob", "late", -5, -5)]).into_string();
        assert!(page.contains("<tr class=\"void\">"), "{page}");
        assert!(page.contains("counts for nothing"), "{page}");
        assert!(page.contains("class=\"num neg\">-5<"), "{page}");
        assert!(page.contains("<svg class=\"chart\""), "{page}");
    }

    #[test]
    fn a_player_page_links_a_revert_and_the_entry_it_reverts() {
        let mut original = row("Bob", "boots", 10, 10);
        original.rejected = None;
        original.reverted_by = Some("f00dfeed".repeat(4));
        let mut reverting = row("Bob", "revert", -10, 0);
        reverting.rejected = None;
        reverting.reverts = Some("abcdef01".repeat(4));
        let page = render_player(&status(), "Bob", &[original, reverting]).into_string();
        assert!(page.contains("reverts abcdef01<"), "{page}");
        assert!(page.contains("reverted by f00dfeed<"), "{page}");
    }
}
