//! The checker: watches the daemons while the run goes on (resources sampled every few
//! seconds, unexpected exits), measures convergence after every heal, and at the end checks
//! that nothing acknowledged was lost and every node holds the same ledger.

use super::cluster::{Cluster, Life};
use super::workload::{reason, Kind, Op, Outcome};
use loot_sync::control::{self, History, HistoryResult, Points};
use loot_sync::core::ledger::revert::{reverted_digest, REVERT_LINK_BYTES};
use loot_sync::core::ledger::HistoryRow;
use loot_sync::proto::entry::EntryKind;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// RSS growth allowed within one process's life beyond its lowest sample after warm-up:
/// this much, plus [`RSS_PER_ENTRY`] per entry the log gained meanwhile. A full `history`
/// in flight at a sample holds its rows (a debug daemon's peak rose 12.8 MiB over its idle
/// size for one at 20,000 entries), plus 4 MiB of allocator noise (see [`TAIL_RSS_SLACK`]).
/// Until issue 16's fixes this was 24 MiB + 2 KiB an entry, which history replies kept for
/// good in glibc's thread arenas needed.
const RSS_SLACK: u64 = 20 << 20;
/// RSS an entry may explain: a debug daemon gained 110-120 bytes per entry taking in
/// 20,000 (by adjusts, or by a catch-up from a peer); this is four times that.
const RSS_PER_ENTRY: u64 = 512;
/// How long memory must stay to count as growth (see [`resources`]): a sample's RSS is judged
/// as the least of it and the samples up to this much later. The hour's run (seed 1818)
/// showed full-history spikes of up to 30 MiB gone by the next 5-s sample.
const KEPT_WINDOW: Duration = Duration::from_secs(30);
/// ... and at least this many samples later: the sampler itself stalls when the machine is
/// overloaded (44 s between two samples of one node in that run, while it served a history).
const KEPT_SAMPLES: usize = 6;
/// Open descriptors a process may gain over its lowest count (concurrent control
/// connections from the workload and readers come and go).
const FD_SLACK: u64 = 32;
/// A log's size may be at most this per entry, plus [`LOG_SLACK`].
const LOG_BYTES_PER_ENTRY: u64 = 1024;
const LOG_SLACK: u64 = 64 << 10;
/// Samples at the start of each process's life not judged (start-up, replay, first sync).
const WARM_UP: Duration = Duration::from_secs(10);
/// RSS an idle daemon may gain over the quiet tail (no workload, no faults), beyond
/// [`RSS_PER_ENTRY`] per entry its log still gained. Idle is not allocation-free: the
/// five-minute checkpoint copies the index on a thread of its own, sync sessions keep
/// confirming the fingerprints, the checker's `status` calls come and go, and glibc keeps
/// some pages such peaks touched (in two arenas: `daemon::allocator`). The short run's idle
/// seconds showed single steps of 0.7 MiB; a few such steps fit in 4 MiB, a leak does not
/// for long: over the long run's 300-s tail it fails growth faster than 48 MiB/h (the
/// 36 MiB/h seen while the log grew would need a 7-minute tail); slower growth shows in the
/// report's growth per hour over the tail.
const TAIL_RSS_SLACK: u64 = 4 << 20;

/// One node's resources at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds into the run.
    pub at: f64,
    /// Which node.
    pub node: usize,
    /// Which of its processes (1 for the first start, 2 after a restart, …).
    pub generation: u32,
    /// Seconds since that process started.
    pub age: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Peers (and silent listed addresses) in `status`.
    pub peers: usize,
    /// Entries in its log.
    pub entries: usize,
    /// The ledger log's size.
    pub log_bytes: u64,
    /// Bytes the daemon has written to stdout/stderr (all its processes).
    pub output_bytes: u64,
}

/// What the checker saw while the run went on.
#[derive(Default)]
pub struct Monitor {
    /// Every sample.
    pub samples: Mutex<Vec<Sample>>,
    /// Violations found so far.
    pub violations: Mutex<Vec<String>>,
    /// Ends the sampling thread.
    pub stop: AtomicBool,
}

impl Monitor {
    /// Records a violation.
    pub fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.lock().unwrap().push(what);
    }

    /// Samples every running daemon every `interval` until stopped, and reports any daemon
    /// that exited without the nemesis killing it.
    pub fn run(&self, cluster: &Cluster, interval: Duration, started: Instant) {
        while !self.stop.load(Ordering::Relaxed) {
            for node in &cluster.nodes {
                if let Some(status) = node.exited() {
                    self.violation(format!(
                        "{} exited unexpectedly ({status}); its output ends:\n{}",
                        node.name,
                        node.output_tail(20)
                    ));
                    continue;
                }
                let (pid, generation, age) = {
                    let proc = node.proc();
                    if proc.life != Life::Up {
                        continue;
                    }
                    let Some(pid) = proc.pid() else {
                        continue;
                    };
                    (pid, proc.starts, proc.started.elapsed().as_secs_f64())
                };
                let Some((rss_kib, fds)) = proc_resources(pid) else {
                    continue;
                };
                let Ok(status) = node.status() else {
                    continue;
                };
                let log_bytes = node
                    .ledger_log()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
                let output_bytes = std::fs::metadata(&node.output).map_or(0, |m| m.len());
                let sample = Sample {
                    at: started.elapsed().as_secs_f64(),
                    node: node.index,
                    generation,
                    age,
                    rss_kib,
                    fds,
                    peers: status.peers.len(),
                    entries: status.entries,
                    log_bytes,
                    output_bytes,
                };
                if sample.log_bytes > LOG_SLACK + LOG_BYTES_PER_ENTRY * sample.entries as u64 {
                    self.violation(format!(
                        "{}: log of {} bytes for {} entries",
                        node.name, sample.log_bytes, sample.entries
                    ));
                }
                self.samples.lock().unwrap().push(sample);
            }
            let until = Instant::now() + interval;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// (RSS in KiB, open descriptors) of process `pid`, from /proc.
fn proc_resources(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// Waits until every daemon reports the same fingerprint and entry count and none has
/// totals waiting for a replay after a roster change (`replay_pending`); the time it took,
/// or what each daemon had when `limit` passed.
pub fn converge(cluster: &Cluster, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let seen: Vec<Result<(usize, String, bool), String>> = cluster
            .nodes
            .iter()
            .map(|n| {
                n.status()
                    .map(|s| {
                        let replaying = s.counters.get("replay_pending").is_some_and(|&n| n > 0);
                        (s.entries, s.fingerprint, replaying)
                    })
                    .map_err(|e| e.to_string())
            })
            .collect();
        let distinct: BTreeSet<_> = seen.iter().filter_map(|s| s.as_ref().ok()).collect();
        let settled = distinct.iter().all(|(_, _, replaying)| !replaying);
        if seen.iter().all(Result::is_ok) && distinct.len() == 1 && settled {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            let each: Vec<String> = cluster
                .nodes
                .iter()
                .zip(&seen)
                .map(|(n, s)| format!("{}: {s:?}", n.name))
                .collect();
            return Err(format!(
                "no convergence within {limit:?} of the heal: {}",
                each.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the final check found.
#[derive(Debug, Default, Serialize)]
pub struct Final {
    /// Entries on every node.
    pub entries: usize,
    /// Point entries whose op had no answer but which exist (they count).
    pub unknown_present: usize,
    /// Sum of all totals.
    pub total_points: i64,
    /// Adjusts made through a node whose clock had jumped forward, and how many of their
    /// entries carry the jumped time.
    pub jumped: (usize, usize),
    /// Violations.
    pub violations: Vec<String>,
}

/// After the last heal and convergence: every acknowledged adjust on every node; identical
/// entry sets, fingerprints and totals; totals equal to the sum of the acknowledged deltas
/// (plus those of unanswered adjusts that did get in); no refused adjust anywhere; nothing
/// rejected (the workload's officers stay officers).
///
/// `jumps` are the forward clock jumps (node, minutes, from, to; true Unix ms): an adjust
/// acknowledged through that node meanwhile must carry a timestamp that far ahead, which
/// shows the jump reached the daemon.
pub fn final_check(cluster: &Cluster, ops: &[Op], jumps: &[(usize, u64, u64, u64)]) -> Final {
    let mut out = Final::default();
    let mut histories: Vec<HistoryResult> = Vec::new();
    let mut points: Vec<BTreeMap<String, i64>> = Vec::new();
    let mut prints = BTreeSet::new();
    for node in &cluster.nodes {
        let socket = node.socket();
        match (
            control::call(&socket, History { player: None }),
            control::call(&socket, Points {}),
            node.status(),
        ) {
            (Ok(h), Ok(p), Ok(s)) => {
                histories.push(h);
                points.push(p);
                prints.insert(s.fingerprint);
            }
            (h, p, s) => {
                out.violations.push(format!(
                    "{}: cannot read its ledger at the end: {:?} {:?} {:?}",
                    node.name,
                    h.err(),
                    p.err(),
                    s.err()
                ));
                return out;
            }
        }
    }
    let mut judged = judge(&histories, &points, &prints, ops, jumps);
    judged.violations.splice(0..0, out.violations);
    judged
}

/// The final check's verdict on what the nodes hold (`histories`, `points` and their
/// fingerprints `prints`, one per node, n0 first) given what the workload did.
pub fn judge(
    histories: &[HistoryResult],
    points: &[BTreeMap<String, i64>],
    prints: &BTreeSet<String>,
    ops: &[Op],
    jumps: &[(usize, u64, u64, u64)],
) -> Final {
    let mut out = Final::default();
    if prints.len() != 1 {
        out.violations
            .push(format!("fingerprints differ at the end: {prints:?}"));
    }
    let ids: Vec<BTreeSet<String>> = histories
        .iter()
        .map(|h| h.iter().map(|r| r.entry.id.to_string()).collect())
        .collect();
    for (i, set) in ids.iter().enumerate().skip(1) {
        if set != &ids[0] {
            let missing = ids[0].difference(set).count();
            let extra = set.difference(&ids[0]).count();
            out.violations.push(format!(
                "n{i}'s entry set differs from n0's: {missing} missing, {extra} extra"
            ));
        }
    }
    for (i, p) in points.iter().enumerate().skip(1) {
        if p != &points[0] {
            out.violations.push(format!(
                "n{i}'s totals differ from n0's: {p:?} vs {:?}",
                points[0]
            ));
        }
    }
    out.entries = ids[0].len();
    // What the ops should have produced, from n0's history (the others are equal, above):
    // each op's entries, found by its reason (a revert's after its link; a batch has one
    // entry per player, all with the op's reason).
    let mut by_op: BTreeMap<&str, Vec<&HistoryRow>> = BTreeMap::new();
    for row in histories[0]
        .iter()
        .filter(|r| matches!(r.entry.kind, EntryKind::Points))
    {
        by_op
            .entry(op_key(&row.entry.reason))
            .or_default()
            .push(row);
    }
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut lost = Vec::new();
    for op in ops {
        let reason = reason(op.id);
        let rows = by_op.get(reason.as_str());
        let mut found: Vec<(String, i64)> = rows
            .into_iter()
            .flatten()
            .map(|r| (r.entry.target.clone(), r.entry.delta))
            .collect();
        found.sort();
        let mut effect = op.effect.clone();
        if let Some(effect) = &mut effect {
            effect.sort();
        }
        // What counts towards the totals: what the op made if it is known to have got in
        // (its effect when known, else what is there).
        let counted = match (&op.outcome, rows) {
            // An acknowledged decay of a peer with no non-zero total writes nothing.
            (Outcome::Acked, None) if effect.as_ref().is_some_and(|e| e.is_empty()) => None,
            (Outcome::Acked, None) => {
                lost.push(op.id);
                None
            }
            (Outcome::Acked, Some(_)) => Some(effect.clone().unwrap_or_else(|| found.clone())),
            (Outcome::Failed(why), Some(_)) => {
                out.violations.push(format!(
                    "op {} was refused ({why}) but its entry exists (a {})",
                    op.id,
                    op.kind.name()
                ));
                None
            }
            (Outcome::Unknown(_), Some(_)) => {
                out.unknown_present += 1;
                Some(effect.clone().unwrap_or_else(|| found.clone()))
            }
            (_, None) => None,
        };
        for (player, delta) in counted.into_iter().flatten() {
            *expected.entry(player).or_default() += delta;
        }
        if let (Some(effect), Some(_)) = (&effect, rows) {
            if &found != effect {
                out.violations.push(format!(
                    "op {} ({}): its entries say {found:?}, the op was {effect:?}",
                    op.id,
                    op.kind.name()
                ));
            }
        }
        if op.kind == Kind::Revert
            && rows.is_some_and(|rows| rows.iter().any(|r| r.reverts.is_none()))
        {
            out.violations.push(format!(
                "op {} is a revert whose entry links to no entry it undoes",
                op.id
            ));
        }
    }
    for op in ops.iter().filter(|op| op.outcome == Outcome::Acked) {
        let Some(&(_, minutes, _, _)) = jumps
            .iter()
            .find(|j| j.0 == op.node && j.2 < op.wall_ms && op.wall_ms < j.3)
        else {
            continue;
        };
        out.jumped.0 += 1;
        let ahead = minutes.saturating_sub(5) * 60_000;
        if by_op
            .get(reason(op.id).as_str())
            .and_then(|rows| rows.first())
            .is_some_and(|row| row.entry.at.unix_ms() >= op.wall_ms + ahead)
        {
            out.jumped.1 += 1;
        }
    }
    if out.jumped.0 > 0 && out.jumped.1 == 0 {
        out.violations.push(format!(
            "{} adjusts were made through a node whose clock had jumped forward, and none \
             carries the jumped time: the jump never reached the daemon (libfaketime)",
            out.jumped.0
        ));
    }
    if !lost.is_empty() {
        out.violations.push(format!(
            "{} acknowledged adjusts are missing after the final heal (ops {:?}…)",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    let known: BTreeSet<String> = ops.iter().map(|op| reason(op.id)).collect();
    let strangers = by_op.keys().filter(|r| !known.contains(**r)).count();
    if strangers > 0 {
        out.violations.push(format!(
            "{strangers} point entries match no adjust the workload made"
        ));
    }
    let rejected: Vec<String> = histories[0]
        .iter()
        .filter_map(|r| {
            r.rejected
                .as_ref()
                .map(|why| format!("{}: {why}", r.entry.reason))
        })
        .collect();
    if !rejected.is_empty() {
        out.violations.push(format!(
            "{} entries rejected, e.g. {}",
            rejected.len(),
            rejected[0]
        ));
    }
    expected.retain(|_, v| *v != 0);
    let mut shown = points[0].clone();
    shown.retain(|_, v| *v != 0);
    if shown != expected {
        out.violations.push(format!(
            "totals {shown:?} are not the sum of the acknowledged deltas {expected:?}"
        ));
    }
    out.total_points = points[0].values().sum();
    out
}

/// The part of a point entry's reason that names the op that made it: a revert's reason
/// after its link (`revert <digest>: soak op 7`), any other's whole.
fn op_key(reason: &str) -> &str {
    match reverted_digest(reason) {
        Some(_) => reason.get(REVERT_LINK_BYTES..).unwrap_or(""),
        None => reason,
    }
}

/// Per-node resource summary, and violations for growth the entry count does not explain.
#[derive(Debug, Serialize)]
pub struct NodeResources {
    /// Node name.
    pub node: String,
    /// Processes it ran (1 + restarts).
    pub processes: u32,
    /// RSS of the last process at its first judged sample and at the end, MiB.
    pub rss_start_mib: f64,
    /// See `rss_start_mib`.
    pub rss_end_mib: f64,
    /// Highest RSS seen, MiB.
    pub rss_max_mib: f64,
    /// Least-squares slope of the last process's RSS over its judged samples, MiB per hour.
    pub rss_growth_mib_per_hour: f64,
    /// Seconds the last process's judged samples span.
    pub judged_seconds: f64,
    /// RSS gained per 1,000 entries the log gained over the judged samples, KiB (None when
    /// the log did not grow): how much of the growth the entries explain.
    pub rss_kib_per_1000_entries: Option<f64>,
    /// Most open descriptors seen.
    pub fds_max: u64,
    /// Most peers seen, and at the end.
    pub peers_max: usize,
    /// Peers at the last sample.
    pub peers_end: usize,
    /// Entries and log size at the last sample.
    pub entries_end: usize,
    /// See `entries_end`.
    pub log_bytes_end: u64,
    /// Daemon output written over the run.
    pub output_bytes_end: u64,
}

/// Summarizes each node's samples and finds growth the entry count does not explain.
/// `names` are the nodes' names, by index.
pub fn resources(
    names: &[String],
    samples: &[Sample],
    violations: &mut Vec<String>,
) -> Vec<NodeResources> {
    let n = names.len();
    let mut out = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.node == index).collect();
        let Some(last) = mine.last() else {
            violations.push(format!("{}: never sampled", name));
            continue;
        };
        let judged: Vec<&Sample> = mine
            .iter()
            .copied()
            .filter(|s| s.generation == last.generation && s.age >= WARM_UP.as_secs_f64())
            .collect();
        let mib = |kib: u64| kib as f64 / 1024.0;
        let (rss_start, growth, span) = match (judged.first(), judged.last()) {
            (Some(first), Some(end)) => (first.rss_kib, slope(&judged), end.at - first.at),
            _ => (last.rss_kib, 0.0, 0.0),
        };
        let per_entry = match (judged.first(), judged.last()) {
            (Some(first), Some(end)) if end.entries > first.entries => Some(
                (end.rss_kib as f64 - first.rss_kib as f64) * 1000.0
                    / (end.entries - first.entries) as f64,
            ),
            _ => None,
        };
        // Growth beyond what the entries explain, in the RSS each sample *kept*: the least
        // of it and the samples in the next KEPT_WINDOW. A request being served is not
        // growth: a full `history` in flight holds its rows (about 0.6 KiB an entry in a
        // debug build: 12.8 MiB at 20,000 entries, up to 30 MiB at 55,000-63,000 in the
        // hour's run), and gives them back when written; memory that stays is judged.
        let kept: Vec<u64> = (0..judged.len())
            .map(|i| {
                let until = judged[i].at + KEPT_WINDOW.as_secs_f64();
                judged[i..]
                    .iter()
                    .enumerate()
                    .take_while(|&(n, t)| n <= KEPT_SAMPLES || t.at <= until)
                    .map(|(_, t)| t.rss_kib)
                    .min()
                    .unwrap_or(judged[i].rss_kib)
            })
            .collect();
        if let Some(low) = (0..judged.len()).min_by_key(|&i| kept[i]) {
            for i in (low + 1)..judged.len() {
                let (s, from) = (judged[i], judged[low]);
                let gained = s.entries.saturating_sub(from.entries) as u64;
                let allowed = RSS_SLACK + RSS_PER_ENTRY * gained;
                if kept[i].saturating_sub(kept[low]) * 1024 > allowed {
                    violations.push(format!(
                        "{}: RSS kept grew {:.1} MiB from {:.0}s to {:.0}s while the log gained \
                         only {gained} entries (allowed {:.1} MiB)",
                        name,
                        mib(kept[i] - kept[low]),
                        from.at,
                        s.at,
                        allowed as f64 / 1048576.0
                    ));
                    break;
                }
            }
        }
        if let Some(low) = judged.iter().map(|s| s.fds).min() {
            let high = judged.iter().map(|s| s.fds).max().unwrap_or(low);
            if high > low + FD_SLACK {
                violations.push(format!(
                    "{}: open descriptors grew from {low} to {high}",
                    name
                ));
            }
        }
        let peers_max = mine.iter().map(|s| s.peers).max().unwrap_or(0);
        // Listed and multicast views of one peer are one entry; a restarted peer may show
        // beside its old self until that expires; never more than twice the cluster.
        if peers_max > 2 * n {
            violations.push(format!(
                "{}: peer table reached {peers_max} entries with {n} nodes",
                name
            ));
        }
        out.push(NodeResources {
            node: name.clone(),
            processes: last.generation,
            rss_start_mib: mib(rss_start),
            rss_end_mib: mib(last.rss_kib),
            rss_max_mib: mib(mine.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            rss_growth_mib_per_hour: growth,
            judged_seconds: span,
            rss_kib_per_1000_entries: per_entry,
            fds_max: mine.iter().map(|s| s.fds).max().unwrap_or(0),
            peers_max,
            peers_end: last.peers,
            entries_end: last.entries,
            log_bytes_end: last.log_bytes,
            output_bytes_end: last.output_bytes,
        });
    }
    out
}

/// One node's resources over the quiet tail: the daemons idle after the last heal, with
/// the workload and the nemesis stopped (issue 16's "RSS flat once the log stops growing").
#[derive(Debug, Serialize)]
pub struct TailResources {
    /// Node name.
    pub node: String,
    /// Seconds between its first and last sample in the tail.
    pub seconds: f64,
    /// RSS at its first and last sample in the tail, MiB.
    pub rss_start_mib: f64,
    /// See `rss_start_mib`.
    pub rss_end_mib: f64,
    /// Highest RSS in the tail, MiB.
    pub rss_max_mib: f64,
    /// Least-squares slope of RSS over the tail, MiB per hour.
    pub rss_growth_mib_per_hour: f64,
    /// Entries the log gained in the tail (0 when nothing writes: nothing should).
    pub entries_gained: usize,
    /// Bytes the ledger log gained in the tail.
    pub log_bytes_gained: u64,
    /// Open descriptors at the first and last sample.
    pub fds: (u64, u64),
    /// Peers at the last sample.
    pub peers_end: usize,
}

/// Summarizes each node's samples taken from `from` (seconds into the run: the start of the
/// quiet tail) and finds RSS that grew over the tail by more than [`TAIL_RSS_SLACK`] plus
/// what entries gained meanwhile explain (from the first sample to the last; a peak that
/// fell back is noise, not growth). Only the last process's samples count: a daemon that
/// restarted in the tail is reported as an unexpected exit already.
pub fn tail(
    names: &[String],
    samples: &[Sample],
    from: f64,
    violations: &mut Vec<String>,
) -> Vec<TailResources> {
    let mut out = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let Some(generation) = samples
            .iter()
            .rev()
            .find(|s| s.node == index)
            .map(|s| s.generation)
        else {
            continue;
        };
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.node == index && s.generation == generation && s.at >= from)
            .collect();
        let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
            violations.push(format!("{name}: never sampled in the quiet tail"));
            continue;
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        let entries_gained = last.entries.saturating_sub(first.entries);
        let allowed = TAIL_RSS_SLACK + RSS_PER_ENTRY * entries_gained as u64;
        let grown = last.rss_kib.saturating_sub(first.rss_kib) * 1024;
        if grown > allowed {
            violations.push(format!(
                "{name}: RSS grew {:.1} MiB ({:.1} → {:.1}) over the quiet tail's {:.0} s while \
                 the log gained {entries_gained} entries (allowed {:.1} MiB)",
                grown as f64 / 1048576.0,
                mib(first.rss_kib),
                mib(last.rss_kib),
                last.at - first.at,
                allowed as f64 / 1048576.0
            ));
        }
        out.push(TailResources {
            node: name.clone(),
            seconds: last.at - first.at,
            rss_start_mib: mib(first.rss_kib),
            rss_end_mib: mib(last.rss_kib),
            rss_max_mib: mib(mine.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            rss_growth_mib_per_hour: slope(&mine),
            entries_gained,
            log_bytes_gained: last.log_bytes.saturating_sub(first.log_bytes),
            fds: (first.fds, last.fds),
            peers_end: last.peers,
        });
    }
    out
}

/// Least-squares slope of RSS over time, MiB per hour (0 with fewer than 3 samples).
fn slope(samples: &[&Sample]) -> f64 {
    if samples.len() < 3 {
        return 0.0;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.at).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        num += (s.at - mx) * (s.rss_kib as f64 - my);
        den += (s.at - mx) * (s.at - mx);
    }
    if den == 0.0 {
        return 0.0;
    }
    // KiB per second to MiB per hour.
    num / den * 3600.0 / 1024.0
}

#[cfg(test)]
mod tests {
    //! The checker must catch what it is there to catch: each test feeds it a made-up end
    //! state with one fault in it (these need no root and no daemon).

    use super::*;
    use loot_sync::testing::EntryBuilder;

    const NOW: u64 = 1_800_000_000_000;

    /// Fails unless some violation mentions `text`.
    fn assert_caught(violations: &[String], text: &str) {
        assert!(
            violations.iter().any(|v| v.contains(text)),
            "no violation mentions {text:?}: {violations:?}"
        );
    }

    fn op(id: u64, player: &str, delta: i64, outcome: Outcome) -> Op {
        Op {
            id,
            node: 0,
            kind: Kind::Adjust,
            effect: Some(vec![(player.into(), delta)]),
            cli: false,
            outcome,
            wall_ms: NOW + id * 1000,
        }
    }

    /// The history row of `op`'s (first) entry, stamped `ahead_ms` after the op's time.
    fn row(op: &Op, ahead_ms: u64) -> HistoryRow {
        let (player, delta) = op.effect.as_ref().unwrap()[0].clone();
        entry_row(
            op.id,
            0,
            &player,
            delta,
            &reason(op.id),
            op.wall_ms + ahead_ms,
        )
    }

    /// A history row: entry `n` of op `id`, for `player` by `delta`, with `reason`.
    fn entry_row(id: u64, n: u8, player: &str, delta: i64, reason: &str, at_ms: u64) -> HistoryRow {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&id.to_le_bytes());
        random[8] = n;
        HistoryRow {
            entry: EntryBuilder::at_ms(at_ms)
                .id_random(random)
                .target(player.to_owned())
                .delta(delta)
                .reason(reason.to_owned())
                .build(),
            total: 0,
            rejected: None,
            signed_by: None,
            reverts: None,
            reverted_by: None,
        }
    }

    fn totals(rows: &[HistoryRow]) -> BTreeMap<String, i64> {
        let mut totals = BTreeMap::new();
        for r in rows {
            *totals.entry(r.entry.target.clone()).or_default() += r.entry.delta;
        }
        totals
    }

    /// Two nodes holding `rows`, in agreement.
    fn agreeing(ops: &[Op], rows: Vec<HistoryRow>) -> Final {
        let points = totals(&rows);
        judge(
            &[rows.clone(), rows],
            &[points.clone(), points],
            &BTreeSet::from(["3:abc".to_owned()]),
            ops,
            &[],
        )
    }

    fn ops() -> Vec<Op> {
        vec![
            op(0, "Aria", 5, Outcome::Acked),
            op(1, "Bo", -3, Outcome::Acked),
            op(2, "Aria", 7, Outcome::Unknown("timed out".into())),
            op(3, "Bo", 9, Outcome::Failed("refused".into())),
        ]
    }

    #[test]
    fn a_clean_end_passes_and_counts_unanswered_adjusts_that_got_in() {
        let ops = ops();
        let end = agreeing(
            &ops,
            vec![row(&ops[0], 0), row(&ops[1], 0), row(&ops[2], 0)],
        );
        assert!(end.violations.is_empty(), "{:?}", end.violations);
        assert_eq!(
            (end.entries, end.unknown_present, end.total_points),
            (3, 1, 9)
        );
    }

    #[test]
    fn a_lost_acknowledged_adjust_is_a_violation() {
        let ops = ops();
        let end = agreeing(&ops, vec![row(&ops[0], 0)]);
        assert_caught(&end.violations, "1 acknowledged adjusts are missing");
    }

    #[test]
    fn a_refused_adjust_that_got_in_is_a_violation() {
        let ops = ops();
        let end = agreeing(
            &ops,
            vec![row(&ops[0], 0), row(&ops[1], 0), row(&ops[3], 0)],
        );
        assert_caught(&end.violations, "op 3 was refused");
    }

    #[test]
    fn nodes_that_differ_are_violations() {
        let ops = ops();
        let full = vec![row(&ops[0], 0), row(&ops[1], 0)];
        let short = vec![row(&ops[0], 0)];
        let end = judge(
            &[full.clone(), short.clone()],
            &[totals(&full), totals(&short)],
            &BTreeSet::from(["2:aaa".to_owned(), "1:bbb".to_owned()]),
            &ops,
            &[],
        );
        let all = end.violations.join("\n");
        assert!(all.contains("fingerprints differ"), "{all}");
        assert!(
            all.contains("n1's entry set differs from n0's: 1 missing, 0 extra"),
            "{all}"
        );
        assert!(all.contains("n1's totals differ"), "{all}");
    }

    #[test]
    fn totals_that_are_not_the_sum_of_the_deltas_are_a_violation() {
        let ops = ops();
        let rows = vec![row(&ops[0], 0), row(&ops[1], 0)];
        let mut points = totals(&rows);
        *points.get_mut("Aria").unwrap() += 1;
        let end = judge(
            &[rows],
            &[points],
            &BTreeSet::from(["2:abc".to_owned()]),
            &ops,
            &[],
        );
        assert_caught(&end.violations, "not the sum of the acknowledged deltas");
    }

    #[test]
    fn an_entry_no_adjust_made_is_a_violation() {
        let ops = ops();
        let stranger = op(99, "Cy", 1, Outcome::Acked);
        let end = agreeing(
            &ops,
            vec![row(&ops[0], 0), row(&ops[1], 0), row(&stranger, 0)],
        );
        assert_caught(&end.violations, "1 point entries match no adjust");
    }

    #[test]
    fn an_award_counts_one_delta_per_player_and_a_missing_one_is_a_violation() {
        let mut award = op(0, "Aria", 4, Outcome::Acked);
        award.kind = Kind::Award;
        award.effect = Some(vec![("Aria".into(), 4), ("Bo".into(), 4), ("Cy".into(), 4)]);
        let rows: Vec<HistoryRow> = ["Aria", "Bo", "Cy"]
            .iter()
            .enumerate()
            .map(|(n, p)| entry_row(0, n as u8, p, 4, &reason(0), NOW))
            .collect();
        let whole = agreeing(std::slice::from_ref(&award), rows.clone());
        assert!(whole.violations.is_empty(), "{:?}", whole.violations);
        let end = agreeing(&[award], rows[..2].to_vec());
        assert_caught(&end.violations, "op 0 (award): its entries say");
    }

    #[test]
    fn a_revert_counts_as_the_negation_and_must_link_to_its_original() {
        let original = op(0, "Aria", 9, Outcome::Acked);
        let mut revert = op(1, "Aria", -9, Outcome::Acked);
        revert.kind = Kind::Revert;
        let first = row(&original, 0);
        let link = format!("revert {}: {}", first.entry.digest().to_hex(), reason(1));
        let mut undo = entry_row(1, 0, "Aria", -9, &link, NOW + 2000);
        let ops = vec![original, revert];
        let unlinked = agreeing(&ops, vec![first.clone(), undo.clone()]);
        assert_caught(
            &unlinked.violations,
            "op 1 is a revert whose entry links to no",
        );
        undo.reverts = Some(first.entry.digest().to_hex());
        let linked = agreeing(&ops, vec![first, undo]);
        assert!(linked.violations.is_empty(), "{:?}", linked.violations);
    }

    #[test]
    fn an_unanswered_decay_counts_what_it_wrote_and_an_answered_one_must_match() {
        let mut decay = op(0, "Aria", -1, Outcome::Unknown("cut".into()));
        decay.kind = Kind::Decay;
        decay.effect = None;
        let rows = vec![
            entry_row(0, 0, "Aria", -2, &reason(0), NOW),
            entry_row(0, 1, "Bo", -1, &reason(0), NOW),
        ];
        let unanswered = agreeing(std::slice::from_ref(&decay), rows.clone());
        assert!(
            unanswered.violations.is_empty(),
            "{:?}",
            unanswered.violations
        );
        assert_eq!(unanswered.unknown_present, 1);
        decay.outcome = Outcome::Acked;
        decay.effect = Some(vec![("Aria".into(), -2), ("Bo".into(), -2)]);
        let end = agreeing(&[decay], rows);
        assert_caught(&end.violations, "op 0 (decay): its entries say");
    }

    #[test]
    fn a_forward_clock_jump_must_show_in_the_entries_made_meanwhile() {
        let ops = vec![op(0, "Aria", 5, Outcome::Acked)];
        let jump = [(0, 90, NOW - 1, NOW + 1)];
        let judge_with = |ahead_ms: u64| {
            let rows = vec![row(&ops[0], ahead_ms)];
            let points = totals(&rows);
            judge(
                &[rows],
                &[points],
                &BTreeSet::from(["1:a".to_owned()]),
                &ops,
                &jump,
            )
        };
        let seen = judge_with(90 * 60_000);
        assert_eq!(seen.jumped, (1, 1));
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        let unseen = judge_with(0);
        assert_eq!(unseen.jumped, (1, 0));
        assert_caught(&unseen.violations, "never reached the daemon");
    }

    fn sample(at: f64, rss_mib: u64, fds: u64, entries: usize) -> Sample {
        Sample {
            at,
            node: 0,
            generation: 1,
            age: at,
            rss_kib: rss_mib * 1024,
            fds,
            peers: 2,
            entries,
            log_bytes: 200 * entries as u64,
            output_bytes: 0,
        }
    }

    #[test]
    fn rss_growth_the_entries_do_not_explain_is_a_violation_and_explained_growth_is_not() {
        let names = ["n0".to_owned()];
        // 20 → 80 MiB over an hour while the log gained 100 entries: a leak.
        let leak: Vec<Sample> = (0..=60)
            .map(|m| sample(60.0 * m as f64, 20 + m, 30, 1000 + m as usize))
            .collect();
        let mut violations = Vec::new();
        let summary = resources(&names, &leak, &mut violations);
        assert_caught(&violations, "RSS kept grew");
        assert!((summary[0].rss_growth_mib_per_hour - 60.0).abs() < 1.0);
        // A 40 MiB spike for one sample (a request being served), with no entries gained:
        // not growth; the same step kept for good: growth.
        let spike: Vec<Sample> = (0..=60)
            .map(|m| sample(5.0 * m as f64, if m == 30 { 60 } else { 20 }, 30, 1000))
            .collect();
        let mut violations = Vec::new();
        resources(&names, &spike, &mut violations);
        assert!(violations.is_empty(), "{violations:?}");
        let step: Vec<Sample> = (0..=60)
            .map(|m| sample(5.0 * m as f64, if m >= 30 { 60 } else { 20 }, 30, 1000))
            .collect();
        let mut violations = Vec::new();
        resources(&names, &step, &mut violations);
        assert_caught(&violations, "RSS kept grew 40.0 MiB");
        // The same growth with 120,000 entries gained (0.5 KiB each): explained.
        let growth: Vec<Sample> = (0..=60)
            .map(|m| sample(60.0 * m as f64, 20 + m, 30, 1000 + 2000 * m as usize))
            .collect();
        let mut violations = Vec::new();
        resources(&names, &growth, &mut violations);
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn rss_growing_over_the_quiet_tail_is_a_violation_and_a_flat_tail_is_not() {
        let names = ["n0".to_owned()];
        // Busy until 600 s (RSS climbing with the log), then a 300-s tail sampled every 5 s.
        let busy =
            (0..60).map(|i| sample(10.0 * i as f64, 20 + i / 4, 20, 1000 + 100 * i as usize));
        let run_with = |tail_rss_kib: &dyn Fn(u64) -> u64| -> (Vec<TailResources>, Vec<String>) {
            let mut samples: Vec<Sample> = busy.clone().collect();
            samples.extend((0..=60).map(|i| Sample {
                rss_kib: tail_rss_kib(i),
                ..sample(600.0 + 5.0 * i as f64, 0, 20, 7000)
            }));
            let mut violations = Vec::new();
            let summary = tail(&names, &samples, 600.0, &mut violations);
            (summary, violations)
        };
        // 72 MiB/h from 35 MiB, sampled every 5 s: 6 MiB over the 300-s tail.
        let (summary, violations) = run_with(&|i| 35 * 1024 + 72 * 1024 * 5 * i / 3600);
        assert_caught(
            &violations,
            "RSS grew 6.0 MiB (35.0 → 41.0) over the quiet tail",
        );
        assert!((summary[0].rss_growth_mib_per_hour - 72.0).abs() < 1.0);
        assert_eq!((summary[0].entries_gained, summary[0].seconds), (0, 300.0));
        // Flat with allocator noise: a 0.7 MiB step after the checkpoint, ±0.5 MiB wobble,
        // a 3 MiB peak that fell back.
        let (summary, violations) = run_with(&|i| {
            35 * 1024
                + if i >= 20 { 700 } else { 0 }
                + (i % 3) * 512
                + if i == 40 { 3072 } else { 0 }
        });
        assert!(violations.is_empty(), "{violations:?}");
        // The slope still leans on one step in a short tail: the report shows it, the
        // verdict goes by the first and last samples.
        let slope = summary[0].rss_growth_mib_per_hour;
        assert!(slope.abs() < 24.0, "{slope}");
        assert_eq!(summary[0].rss_start_mib, 35.0);
        // A node with no sample in the tail is reported, not passed.
        let mut violations = Vec::new();
        tail(&names, &busy.collect::<Vec<_>>(), 600.0, &mut violations);
        assert_caught(&violations, "n0: never sampled in the quiet tail");
    }

    #[test]
    fn descriptors_that_keep_growing_are_a_violation() {
        let names = ["n0".to_owned()];
        let samples: Vec<Sample> = (0..=60)
            .map(|m| sample(20.0 + m as f64, 20, 20 + m, 1000))
            .collect();
        let mut violations = Vec::new();
        resources(&names, &samples, &mut violations);
        assert_caught(&violations, "open descriptors grew from 20 to 80");
    }
}
