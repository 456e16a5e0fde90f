//! Quiet under load (issue 18): what a burst of adjusts costs the whole group, summed over
//! every peer, beside the floor computed in the same run (one LOG_ENTRY datagram per entry
//! plus each peer's HELLOs over the same window: from the burst's start until two
//! heartbeats after its end).
//!
//! * sans-IO (`loot_sync::testing::Burst`, the peers in virtual time): 300 adjusts in 4.5 s
//!   from one officer among 10, 40, 100 and 200 peers; the same with 5 % loss; a batch of 40
//!   entries written at once; two officers bursting at once.
//! * real daemons on one loopback multicast group (no group key, as the issue measured):
//!   the same burst among 10 and 40 daemons (and 100 with `LOOTSYNC_BENCH_FULL=1`), from
//!   their `status` counters; with 5 % of received datagrams dropped by the daemons' loss
//!   hook; the batch (40 adjusts sent at once); two officers at once.

use super::common::Figure;
use super::fleet::{self, Fleet, Traffic};
use loot_sync::control::Adjust;
use loot_sync::daemon::{DaemonOptions, LedgerObserver};
use loot_sync::proto::entry::{Entry, EntryId};
use loot_sync::proto::wire;
use loot_sync::testing::{Burst, BurstCost};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The real daemons' group port.
const QUIET_PORT: u16 = 47857;
/// The goal on datagrams and bytes: at most this times the floor.
const MAX_RATIO: f64 = 1.2;

/// The three figures of one burst: datagrams and bytes beside their floors, sessions.
fn burst_figures(
    what: &str,
    datagrams: (u64, u64),
    bytes: (u64, u64),
    sessions: u64,
    lossless: bool,
) -> Vec<Figure> {
    let mut figures = vec![
        Figure::ratio_goal(
            format!("{what}: datagrams, all peers (baseline: the floor)"),
            datagrams.0 as f64,
            datagrams.1 as f64,
            "",
            MAX_RATIO,
        ),
        Figure::ratio_goal(
            format!("{what}: bytes, all peers (baseline: the floor)"),
            bytes.0 as f64,
            bytes.1 as f64,
            "B",
            MAX_RATIO,
        ),
    ];
    let name = format!("{what}: sessions started");
    figures.push(if lossless {
        Figure::at_most(name, sessions as f64, None, "", 0.0)
    } else {
        Figure::reported(name, sessions as f64, None, "")
    });
    if !lossless {
        // With loss the floor holds no repairs: reported only.
        for f in &mut figures[..2] {
            f.goal = String::new();
            f.met = None;
        }
    }
    figures
}

/// One sans-IO burst, printed and as figures.
fn sans_io(what: &str, burst: Burst) -> Vec<Figure> {
    let started = Instant::now();
    let cost: BurstCost = burst.run();
    println!(
        "quiet, sans-IO, {what}: {} datagrams (floor {}), {} B (floor {}), {} sessions \
         ({} by peers that missed nothing; {} peers missed something), all peers held \
         everything {} after the burst (cpu {:?})",
        cost.datagrams,
        cost.floor_datagrams,
        cost.bytes,
        cost.floor_bytes,
        cost.sessions,
        cost.sessions_without_loss,
        cost.missed,
        cost.converged_after_ms
            .map_or("NOT within a minute".into(), |ms| format!("{ms} ms")),
        started.elapsed()
    );
    let mut figures = burst_figures(
        &format!("quiet, sans-IO, {what}"),
        (cost.datagrams, cost.floor_datagrams),
        (cost.bytes, cost.floor_bytes),
        cost.sessions,
        burst.loss == 0.0,
    );
    if burst.loss > 0.0 {
        figures.push(Figure::at_most(
            format!("quiet, sans-IO, {what}: sessions started by peers that missed nothing"),
            cost.sessions_without_loss as f64,
            None,
            "",
            0.0,
        ));
    }
    figures
}

/// The sans-IO figures (see the module docs).
pub fn sans_io_figures() -> Vec<Figure> {
    let mut figures = Vec::new();
    for peers in [10, 40, 100, 200] {
        figures.extend(sans_io(
            &format!("300 adjusts in 4.5 s among {peers} peers"),
            Burst::new(peers, 300, 4_500),
        ));
    }
    for peers in [40, 200] {
        figures.extend(sans_io(
            &format!("300 adjusts in 4.5 s among {peers} peers, 5 % loss"),
            Burst {
                loss: 0.05,
                ..Burst::new(peers, 300, 4_500)
            },
        ));
    }
    figures.extend(sans_io(
        "a batch of 40 entries at once among 40 peers",
        Burst::new(40, 40, 0),
    ));
    figures.extend(sans_io(
        "two officers, 150 adjusts each in 4.5 s, among 40 peers",
        Burst {
            officers: 2,
            ..Burst::new(40, 150, 4_500)
        },
    ));
    figures
}

/// What one daemon saw: the entries it acknowledged (an officer's burst, for the floor,
/// with the instant) and when each entry from a peer was merged.
#[derive(Default)]
struct Arrivals {
    acknowledged: Mutex<Vec<(Entry, Instant)>>,
    merged: Mutex<Vec<(EntryId, Instant)>>,
}

impl LedgerObserver for Arrivals {
    fn acknowledged(&self, entry: &Entry) {
        self.acknowledged
            .lock()
            .unwrap()
            .push((entry.clone(), Instant::now()));
    }
    fn merged(&self, entries: &[Entry]) {
        let at = Instant::now();
        self.merged
            .lock()
            .unwrap()
            .extend(entries.iter().map(|e| (e.id, at)));
    }
}

/// An entry merged this long after it was acknowledged was repaired, not received (the
/// settling rule's half heartbeat: later than that, a session may rightly chase it).
const MISSED_AFTER: Duration = Duration::from_secs(1);

/// How a real-daemon burst is made.
#[derive(Clone, Copy)]
struct RealBurst {
    daemons: usize,
    officers: usize,
    /// Adjusts per officer.
    adjusts: usize,
    /// Spread over this long; zero: all sent at once.
    over: Duration,
    loss: f64,
}

/// One real-daemon burst: the fleet comes together, then the officers adjust; counters are
/// summed over every daemon from the burst's start until two heartbeats after its end.
fn real(what: &str, burst: RealBurst) -> Vec<Figure> {
    let history = super::common::make_entries(100, 11);
    let arrivals: Vec<Arc<Arrivals>> = (0..burst.daemons)
        .map(|_| Arc::new(Arrivals::default()))
        .collect();
    let options = |i: usize| DaemonOptions {
        observer: Some(arrivals[i].clone() as Arc<dyn LedgerObserver>),
        seed: Some(i as u64),
        receive_drop_rate: burst.loss,
        ..DaemonOptions::default()
    };
    let outcome = super::runtime().block_on(async {
        let fleet = Fleet::lan(
            burst.daemons,
            "bench-quiet",
            QUIET_PORT,
            &history,
            false,
            options,
        )
        .await;
        let heartbeat = fleet.heartbeat;
        let before = fleet.traffic().await;
        let started = Instant::now();
        let mut officers = Vec::new();
        for officer in 0..burst.officers {
            let daemon = fleet.daemons[officer].clone();
            officers.push(tokio::spawn(async move {
                let mut requests = Vec::new();
                for k in 0..burst.adjusts {
                    let due = burst.over.mul_f64(k as f64 / burst.adjusts as f64);
                    tokio::time::sleep_until((started + due).into()).await;
                    let daemon = daemon.clone();
                    let adjust = Adjust {
                        player: format!("player{}", k % 40),
                        delta: 1,
                        reason: format!("burst {k}"),
                        actor: None,
                    };
                    requests.push(tokio::spawn(async move {
                        daemon.request(adjust).await.unwrap();
                    }));
                }
                for request in requests {
                    request.await.unwrap();
                }
            }));
        }
        for officer in officers {
            officer.await.unwrap();
        }
        let ended = Instant::now();
        // How long until every daemon holds everything (repairs may run past the window).
        let total = history.len() + burst.officers * burst.adjusts;
        while fleet.entries().await.iter().any(|n| *n < total) {
            assert!(
                ended.elapsed() < Duration::from_secs(120),
                "{what}: not converged"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let converged = ended.elapsed();
        tokio::time::sleep_until((ended + 2 * heartbeat).into()).await;
        let window = started.elapsed();
        let after = fleet.traffic().await;
        let per_daemon: Vec<Traffic> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.since(*b))
            .collect();
        let whisper_port = fleet.daemons[0].whisper_addr.port();
        fleet.stop().await;
        (per_daemon, window, heartbeat, converged, whisper_port)
    });
    let (per_daemon, window, heartbeat, converged, whisper_port) = outcome;
    let sum = Traffic::sum(&per_daemon);
    // The floor: each burst entry in a LOG_ENTRY datagram of its own (the largest node id,
    // so an upper bound by a byte), and each daemon's HELLO every heartbeat.
    let acknowledged: HashMap<EntryId, Instant> = arrivals
        .iter()
        .flat_map(|a| a.acknowledged.lock().unwrap().clone())
        .map(|(e, at)| (e.id, at))
        .collect();
    let made: Vec<Entry> = arrivals
        .iter()
        .flat_map(|a| a.acknowledged.lock().unwrap().clone())
        .map(|(e, _)| e)
        .collect();
    // Daemons that got some entry only later than MISSED_AFTER: they missed something.
    let missed: Vec<bool> = arrivals
        .iter()
        .map(|a| {
            a.merged.lock().unwrap().iter().any(|(id, at)| {
                acknowledged
                    .get(id)
                    .is_some_and(|acked| at.saturating_duration_since(*acked) > MISSED_AFTER)
            })
        })
        .collect();
    let entry_bytes: u64 = made
        .iter()
        .map(|e| {
            wire::pack_log_entries(
                "bench-quiet",
                u64::MAX,
                whisper_port,
                std::slice::from_ref(e),
            )
            .iter()
            .map(|(_, d)| d.len() as u64)
            .sum::<u64>()
        })
        .sum();
    let mut final_set = history.clone();
    final_set.extend(made.iter().cloned());
    let hello = super::hello_len(
        &fleet::node_name("bench-quiet", burst.daemons - 1),
        "bench-quiet",
        final_set,
    ) as u64;
    let heartbeats = window.as_secs_f64() / heartbeat.as_secs_f64();
    let hellos = (burst.daemons as f64 * heartbeats).round() as u64;
    let floor_datagrams = made.len() as u64 + hellos;
    let floor_bytes = entry_bytes + hellos * hello;
    let sessions_without_loss: u64 = per_daemon
        .iter()
        .zip(&missed)
        .filter(|(_, missed)| !**missed)
        .map(|(t, _)| t.sessions_started)
        .sum();
    println!(
        "quiet, real daemons, {what}: {} datagrams (floor {floor_datagrams}), {} B (floor \
         {floor_bytes}), {} sessions ({} daemons missed an entry, {} dropped a datagram; \
         {sessions_without_loss} sessions by daemons that missed nothing) over {:.1} s; every \
         daemon held every entry {:?} after the burst's end",
        sum.datagrams_sent,
        sum.bytes_sent,
        sum.sessions_started,
        missed.iter().filter(|m| **m).count(),
        per_daemon.iter().filter(|t| t.hook_drops > 0).count(),
        window.as_secs_f64(),
        converged
    );
    let mut figures = burst_figures(
        &format!("quiet, real daemons, {what}"),
        (sum.datagrams_sent, floor_datagrams),
        (sum.bytes_sent, floor_bytes),
        sum.sessions_started,
        burst.loss == 0.0,
    );
    if burst.loss > 0.0 {
        figures.push(Figure::at_most(
            format!("quiet, real daemons, {what}: sessions started by daemons that missed nothing"),
            sessions_without_loss as f64,
            None,
            "",
            0.0,
        ));
        figures.push(Figure::at_most(
            format!("quiet, real daemons, {what}: every daemon held every entry, after the burst (baseline: two heartbeats)"),
            converged.as_secs_f64() * 1000.0,
            Some(2.0 * heartbeat.as_secs_f64() * 1000.0),
            "ms",
            2.0 * heartbeat.as_secs_f64() * 1000.0,
        ));
    }
    figures
}

/// The real-daemon figures (see the module docs); 100 daemons too when `full`.
pub fn real_figures(full: bool) -> Vec<Figure> {
    let sizes: &[usize] = if full { &[10, 40, 100] } else { &[10, 40] };
    let burst = |daemons| RealBurst {
        daemons,
        officers: 1,
        adjusts: 300,
        over: Duration::from_millis(4_500),
        loss: 0.0,
    };
    let mut figures = Vec::new();
    for &n in sizes {
        figures.extend(real(
            &format!("300 adjusts in 4.5 s among {n} daemons"),
            burst(n),
        ));
    }
    figures.extend(real(
        "300 adjusts in 4.5 s among 40 daemons, 5 % loss",
        RealBurst {
            loss: 0.05,
            ..burst(40)
        },
    ));
    figures.extend(real(
        "a batch of 40 adjusts sent at once among 40 daemons",
        RealBurst {
            adjusts: 40,
            over: Duration::ZERO,
            ..burst(40)
        },
    ));
    figures.extend(real(
        "two officers, 150 adjusts each in 4.5 s, among 40 daemons",
        RealBurst {
            officers: 2,
            adjusts: 150,
            ..burst(40)
        },
    ));
    figures
}
