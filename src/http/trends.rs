//! The standings' trend column (each player's latest running totals and last change),
//! built from the whole history once per ledger state and shared by every view.
//!
//! Building it reads every entry back from the log, so at a hundred thousand entries one
//! build costs tens of milliseconds of the daemon's CPU. An open page refetches itself on
//! every change, so without sharing, each viewer would pay that on each change. The cache is
//! keyed by what identifies a ledger state (entry count and set fingerprint); concurrent
//! views of a new state wait for the one build in progress instead of starting their own.

use super::query::{ask, QueryError};
use crate::control::server::Dispatch;
use crate::control::{History, StatusResult};
use crate::core::ledger::HistoryRow;
use crate::proto::entry::EntryKind;
use crate::proto::hlc::Hlc;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;

/// How many of a player's latest totals the standings' sparkline shows.
pub(super) const SPARK_ENTRIES: usize = 30;

/// One player's trend: their latest running totals (oldest first, at most
/// [`SPARK_ENTRIES`]) and when the last of them was made.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Trend {
    /// Running totals after each of the player's latest point entries.
    pub totals: Vec<i64>,
    /// The time of the player's last point entry.
    pub last: Option<Hlc>,
}

/// Every player's [`Trend`], by name.
pub(super) type Trends = BTreeMap<String, Trend>;

/// What identifies a ledger state: an entry added anywhere changes both.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StateKey {
    entries: usize,
    fingerprint: String,
}

/// The trends of the last ledger state a page asked about, shared by all views.
#[derive(Default)]
pub(super) struct TrendCache {
    latest: Mutex<Option<(StateKey, Arc<Trends>)>>,
    builds: AtomicU64,
}

impl TrendCache {
    /// The trends for the ledger state `status` describes: the cached ones when nothing
    /// changed since they were built, otherwise built from the core's history.
    ///
    /// The history may already hold an entry newer than `status`; the next view then sees a
    /// different key and builds again, so a page is never left behind for longer than one
    /// change.
    pub(super) async fn get(
        &self,
        core: &Arc<dyn Dispatch>,
        status: &StatusResult,
    ) -> Result<Arc<Trends>, QueryError> {
        let key = StateKey {
            entries: status.entries,
            fingerprint: status.fingerprint.clone(),
        };
        // Held across the build: a second view of the same new state waits for this one.
        let mut latest = self.latest.lock().await;
        if let Some((cached, trends)) = latest.as_ref() {
            if *cached == key {
                return Ok(trends.clone());
            }
        }
        let rows = ask(core, History { player: None }).await?;
        let trends = Arc::new(trends_of(&rows));
        self.builds.fetch_add(1, Ordering::Relaxed);
        *latest = Some((key, trends.clone()));
        Ok(trends)
    }

    /// How many times the trends were built from the history (for `/metrics`).
    pub(super) fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }
}

/// Each player's latest running totals and last change, from the whole history.
pub(super) fn trends_of(rows: &[HistoryRow]) -> Trends {
    let mut trends = Trends::new();
    for row in rows.iter().filter(|r| r.entry.kind == EntryKind::Points) {
        let trend = match trends.get_mut(row.entry.target.as_str()) {
            Some(trend) => trend,
            None => trends.entry(row.entry.target.clone()).or_default(),
        };
        trend.totals.push(row.total);
        trend.last = Some(row.entry.at);
    }
    for trend in trends.values_mut() {
        let surplus = trend.totals.len().saturating_sub(SPARK_ENTRIES);
        trend.totals.drain(..surplus);
    }
    trends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::EntryBuilder;

    fn row(target: &str, delta: i64, total: i64) -> HistoryRow {
        HistoryRow {
            entry: EntryBuilder::at_ms(1_000 + total.unsigned_abs())
                .target(target)
                .delta(delta)
                .build(),
            total,
            rejected: None,
            signed_by: None,
            reverts: None,
            reverted_by: None,
        }
    }

    #[test]
    fn trends_keep_each_players_latest_totals_in_order() {
        let mut rows = Vec::new();
        let mut total = 0;
        for i in 0..(SPARK_ENTRIES as i64 + 5) {
            total += i;
            rows.push(row("Ann", i, total));
        }
        rows.push(row("Bo", -3, -3));
        let trends = trends_of(&rows);
        let ann = &trends["Ann"];
        assert_eq!(ann.totals.len(), SPARK_ENTRIES);
        assert_eq!(ann.totals.last(), Some(&total));
        assert!(ann.totals.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ann.last, Some(rows[SPARK_ENTRIES + 4].entry.at));
        assert_eq!(trends["Bo"].totals, vec![-3]);
    }

    #[test]
    fn roster_entries_make_no_trend() {
        let mut officer = row("Cid", 0, 0);
        officer.entry.kind = EntryKind::OfficerRemove;
        assert!(trends_of(&[officer]).is_empty());
    }
}
