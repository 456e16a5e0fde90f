//! `/metrics`: the daemon's counters in Prometheus text format (OpenMetrics), from the same
//! `status` reply the CLI prints, encoded by the official `prometheus-client` crate.
//!
//! A registry is filled per scrape from that reply: the counters live in the core and the
//! store (as `status` shows them), not in a second set kept here.

use super::query::{ask, QueryError};
use super::router::AppState;
use crate::control::{PeerStatus, Status, StatusResult};
use crate::core::histogram::Histogram;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;

/// The content type of the OpenMetrics text `prometheus-client` writes (Prometheus
/// scrapes it natively).
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Status counters exported as Prometheus counters (`lootsync_<name>_total`), with help.
const COUNTERS: &[(&str, &str)] = &[
    ("datagrams_sent", "Datagrams sent (group and unicast)"),
    ("bytes_sent", "Bytes in the datagrams sent"),
    (
        "datagrams_received",
        "Datagrams received, dropped ones included",
    ),
    ("bytes_received", "Bytes in the datagrams received"),
    ("entries_merged", "Entries learned from peers"),
    (
        "entries_pushed",
        "Entries multicast because a sync found a peer lacking them",
    ),
    (
        "sessions_started",
        "Reconciliation (catch-up) sessions started",
    ),
    (
        "sessions_completed",
        "Reconciliation sessions that ran to completion",
    ),
    (
        "sessions_aborted",
        "Reconciliation sessions abandoned (partner silent or gone)",
    ),
    ("send_errors", "Datagrams the socket could not send"),
    (
        "log_fsyncs",
        "fdatasync calls that made appended records durable",
    ),
    (
        "log_remote_appends",
        "Batches of merged entries appended to the log",
    ),
    (
        "log_append_failures",
        "Appends of merged entries that failed",
    ),
    (
        "replays",
        "Replays of the whole log run after a roster change or a new root key",
    ),
    (
        "replays_stale",
        "Replay results not used: overtaken by another roster change or a new root key",
    ),
    (
        "replay_failures",
        "Replays that failed on the replay thread (a bug if not 0; replays then run on the core thread)",
    ),
    (
        "encode_failures",
        "Messages that could not be encoded (a bug if not 0)",
    ),
    (
        "peers_evicted",
        "Peers forgotten early because the peer table was full",
    ),
    (
        "answers_limited",
        "Answers cut short by the anti-amplification limit",
    ),
];

/// Status values that go up and down, exported as gauges (`lootsync_<name>`).
const GAUGES: &[(&str, &str)] = &[
    ("players", "Players with a total"),
    ("log_bytes", "Size of the log file in bytes"),
    (
        "log_unstored",
        "Entries merged but not yet appended to the log",
    ),
    ("checkpoint_entries", "Entries the log's checkpoint covers"),
    (
        "entries_rejected",
        "Entries that count for nothing (unsigned, not an officer...)",
    ),
    (
        "replay_pending",
        "1 while totals wait for a replay after a roster change (they lag meanwhile)",
    ),
];

/// The page: status asked of the core, then encoded.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, QueryError> {
    let status = ask(&state.core, Status {}).await?;
    let mut registry = registry(&status);
    registry.register(
        "http_standings_builds",
        "Times the standings' trends were rebuilt from the whole history (once per ledger \
         state, however many pages view it)",
        ConstCounter::new(state.trends.builds()),
    );
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in the metric code.
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return Err(QueryError::Refused(format!("cannot encode metrics: {err}")));
    }
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// A registry holding `status` as metrics.
fn registry(status: &StatusResult) -> Registry {
    let mut registry = Registry::with_prefix("lootsync");
    let counters = &status.counters;
    registry.register(
        "entries",
        "Entries in the log",
        ConstGauge::new(status.entries as i64),
    );
    registry.register(
        "sync_enabled",
        "Whether sync is on (1) or off (0)",
        ConstGauge::new(i64::from(status.sync_enabled)),
    );
    registry.register(
        "officers",
        "Officers in the roster at the end of the log",
        ConstGauge::new(status.officers.len() as i64),
    );
    registry.register(
        "peers",
        "Peers known, by how they reach us and whether their set equals ours",
        peers(&status.peers),
    );
    for (name, help) in COUNTERS {
        if let Some(value) = counters.get(*name) {
            registry.register(*name, *help, ConstCounter::new(*value));
        }
    }
    for (name, help) in GAUGES {
        if let Some(value) = counters.get(*name) {
            registry.register(*name, *help, ConstGauge::new(*value as i64));
        }
    }
    let dropped = Family::<Vec<(String, String)>, ConstCounterCell>::default();
    for (key, value) in counters {
        if let Some(reason) = key.strip_prefix("dropped_") {
            dropped
                .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
                .set(*value);
        }
    }
    registry.register(
        "datagrams_dropped",
        "Datagrams (or entries in them) dropped, by reason",
        dropped,
    );
    if let Some(age_ms) = counters.get("checkpoint_age_ms") {
        registry.register_with_unit(
            "checkpoint_age",
            "Time since the log's checkpoint was written",
            Unit::Seconds,
            ConstGauge::new(*age_ms as f64 / 1e3),
        );
    }
    let histograms: [(&str, &str, &str); 2] = [
        (
            "catch_up",
            "catch_up_duration",
            "How long completed reconciliation (catch-up) sessions took",
        ),
        (
            "fsync",
            "fsync_duration",
            "How long the fdatasync of appended records took",
        ),
    ];
    for (key, name, help) in histograms {
        let histogram = status.histograms.get(key).cloned().unwrap_or_default();
        registry.register_with_unit(name, help, Unit::Seconds, Buckets(histogram));
    }
    registry
}

/// Peers by `reached` and `state` (`in_sync`, `differs`, or `silent` for a listed address
/// never heard).
fn peers(peers: &[PeerStatus]) -> Family<Vec<(String, String)>, Gauge> {
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for peer in peers {
        let state = match (peer.in_sync, peer.last_heard_ms_ago) {
            (true, _) => "in_sync",
            (false, None) => "silent",
            (false, Some(_)) => "differs",
        };
        *counts.entry((peer.reached.as_str(), state)).or_default() += 1;
    }
    let family = Family::<Vec<(String, String)>, Gauge>::default();
    for ((reached, state), count) in counts {
        let labels = vec![
            ("reached".to_owned(), reached.to_owned()),
            ("state".to_owned(), state.to_owned()),
        ];
        family.get_or_create(&labels).set(count);
    }
    family
}

/// A counter whose value is set once from a snapshot (a [`Family`] needs a metric it can
/// create empty, which [`ConstCounter`] is not).
#[derive(Debug, Default)]
struct ConstCounterCell(std::sync::atomic::AtomicU64);

impl ConstCounterCell {
    fn set(&self, value: u64) {
        self.0.store(value, std::sync::atomic::Ordering::Relaxed);
    }
}

impl prometheus_client::metrics::TypedMetric for ConstCounterCell {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ConstCounterCell {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let value = self.0.load(std::sync::atomic::Ordering::Relaxed);
        encoder.encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// One of our [`Histogram`]s as a Prometheus histogram in seconds.
#[derive(Debug)]
struct Buckets(Histogram);

impl prometheus_client::metrics::TypedMetric for Buckets {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets()
            .map(|(bound, count)| (bound.map_or(f64::INFINITY, |us| us as f64 / 1e6), count))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_us as f64 / 1e6,
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::PeerReach;

    fn status() -> StatusResult {
        let mut catch_up = Histogram::default();
        catch_up.observe_us(1_500);
        catch_up.observe_us(2_000_000);
        StatusResult {
            node: "n".into(),
            group: "g".into(),
            sync_enabled: true,
            multicast: None,
            whisper: None,
            entries: 7,
            fingerprint: "7:ab".into(),
            peers: vec![PeerStatus {
                name: Some("p".into()),
                node: None,
                address: "127.0.0.1:1".into(),
                reached: PeerReach::Multicast,
                last_heard_ms_ago: Some(5),
                in_sync: true,
            }],
            listed: Vec::new(),
            group_key_id: None,
            roster_size: None,
            counters: BTreeMap::from([
                ("datagrams_received".to_owned(), 12),
                ("dropped_bad_seal".to_owned(), 3),
                ("players".to_owned(), 2),
                ("checkpoint_age_ms".to_owned(), 2500),
            ]),
            histograms: BTreeMap::from([("catch_up".to_owned(), catch_up)]),
            officers: Vec::new(),
            http: None,
        }
    }

    #[test]
    fn status_becomes_metrics_with_units_and_labels() {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry(&status())).unwrap();
        for line in [
            "lootsync_entries 7",
            "lootsync_datagrams_received_total 12",
            "lootsync_datagrams_dropped_total{reason=\"bad_seal\"} 3",
            "lootsync_players 2",
            "lootsync_checkpoint_age_seconds 2.5",
            "lootsync_peers{reached=\"multicast\",state=\"in_sync\"} 1",
            "lootsync_catch_up_duration_seconds_count 2",
            "lootsync_catch_up_duration_seconds_sum 2.0015",
            "lootsync_catch_up_duration_seconds_bucket{le=\"0.0025\"} 1",
            "lootsync_catch_up_duration_seconds_bucket{le=\"+Inf\"} 2",
            "lootsync_fsync_duration_seconds_count 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.contains("# TYPE lootsync_catch_up_duration_seconds histogram"));
    }
}
