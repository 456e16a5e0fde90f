//! The hub figures with real daemons (issue 12): a hub `lootsync` daemon and 40 spoke
//! daemons on loopback, unicast only (no `[group] address`; each spoke lists the hub, so
//! spokes never hear each other), every datagram sealed with a group key.
//!
//! * idle: datagrams and bytes per second the hub sends and receives per spoke, from its
//!   status counters over a window, beside the sans-IO figure of the same topology
//!   computed in the same run.
//! * propagation: an adjust on one spoke until the other 39 have merged it (two hops
//!   through the hub), beside the same among 40 daemons on one multicast LAN (one hop),
//!   measured in the same run.

use super::super::common::{percentile, Figure};
use super::super::fleet::{self, Fleet, HUB};
use std::time::{Duration, Instant};

const SPOKES: usize = 40;
/// The LAN baseline's group port.
const LAN_PORT: u16 = 47856;

/// Both figures; `idle_seconds` of idle window, `adjusts` propagated adjusts per topology.
pub fn figures(idle_seconds: u64, adjusts: usize) -> Vec<Figure> {
    let sans_io = super::idle_figures();
    let entries = super::super::common::make_entries(1_000, 5);
    let warmup = 10;
    let (idle, mut hub, hub_slow) = super::super::runtime().block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let fleet = Fleet::hub(SPOKES, "bench-hub", &entries, |i| fleet::reporting(&tx, i)).await;
        // A heartbeat more, so greetings and address proofs are behind us.
        tokio::time::sleep(fleet.heartbeat).await;
        let before = fleet.traffic().await[HUB];
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
        let idle = fleet.traffic().await[HUB].since(before);
        let elapsed = started.elapsed().as_secs_f64();
        let spokes: Vec<usize> = (1..=SPOKES).collect();
        let (samples, slow) =
            fleet::propagation(&fleet, &mut rx, &spokes, &spokes, adjusts, warmup).await;
        fleet.stop().await;
        ((idle, elapsed), samples, slow)
    });
    let (mut lan, lan_slow) = super::super::runtime().block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let fleet = Fleet::lan(SPOKES, "bench-hub-lan", LAN_PORT, &entries, true, |i| {
            fleet::reporting(&tx, i)
        })
        .await;
        let all: Vec<usize> = (0..SPOKES).collect();
        let measured = fleet::propagation(&fleet, &mut rx, &all, &all, adjusts, warmup).await;
        fleet.stop().await;
        measured
    });
    let (traffic, elapsed) = idle;
    let per = |v: u64| v as f64 / SPOKES as f64 / elapsed;
    let datagrams = per(traffic.datagrams_sent + traffic.datagrams_received);
    let bytes = per(traffic.bytes_sent + traffic.bytes_received);
    let (sans_io_datagrams, sans_io_bytes) = (sans_io[0].ours, sans_io[1].ours);
    let p99 = percentile(&mut hub, 99.0);
    let median = percentile(&mut hub, 50.0);
    let lan_p99 = percentile(&mut lan, 99.0);
    let lan_median = percentile(&mut lan, 50.0);
    println!(
        "hub idle, real daemons: a hub and {SPOKES} spokes on loopback, unicast only, sealed, \
         {elapsed:.1} s: per spoke per second the hub sends and receives {datagrams:.2} \
         datagrams ({:.2} sent), {bytes:.0} B (goal <= 1 and <= 200 B: {}) vs baseline the \
         same topology sans-IO {sans_io_datagrams:.2} datagrams, {sans_io_bytes:.0} B",
        per(traffic.datagrams_sent),
        if datagrams <= 1.0 && bytes <= 200.0 {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "hub propagation, real daemons: {adjusts} adjusts, each from one of {SPOKES} spokes until \
         the other {} have it, through the hub: median {median:.3} ms, p99 {p99:.3} ms \
         ({hub_slow} needed reconciliation) (goal p99 <= 10 ms: {}) vs baseline {SPOKES} \
         daemons on one multicast LAN: median {lan_median:.3} ms, p99 {lan_p99:.3} ms \
         ({lan_slow} needed reconciliation)",
        SPOKES - 1,
        if p99 <= 10.0 { "met" } else { "MISSED" },
    );
    vec![
        Figure::at_most(
            "hub idle, 40 spokes, real daemons: datagrams per spoke per second at the hub, sent + received (baseline: the same sans-IO)",
            datagrams,
            Some(sans_io_datagrams),
            "",
            1.0,
        ),
        Figure::at_most(
            "hub idle, 40 spokes, real daemons: bytes per spoke per second at the hub, sent + received (baseline: the same sans-IO)",
            bytes,
            Some(sans_io_bytes),
            "B",
            200.0,
        ),
        Figure::reported(
            "propagation from one spoke to the 39 others through the hub, real daemons, median (baseline: 40 daemons on one multicast LAN)",
            median,
            Some(lan_median),
            "ms",
        ),
        Figure::at_most(
            "propagation from one spoke to the 39 others through the hub, real daemons, p99 (baseline: 40 daemons on one multicast LAN)",
            p99,
            Some(lan_p99),
            "ms",
            10.0,
        ),
    ]
}
