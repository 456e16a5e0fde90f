//! The run's one-page report: text for people, JSON for tools, and an SVG chart of each
//! node's RSS and of the convergence time after every heal, drawn by the small code below.

use super::checker::{NodeResources, Sample, TailResources};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Convergence after one heal.
#[derive(Clone, Debug, Serialize)]
pub struct Heal {
    /// Seconds into the run when the faults were healed.
    pub at: f64,
    /// The episode's faults.
    pub faults: Vec<&'static str>,
    /// Seconds until every node had one fingerprint and none waited for a replay after a
    /// roster change (None: it never did).
    pub converged_s: Option<f64>,
    /// The machine's 1-minute load average then (convergence slows when the daemons wait
    /// for a CPU: a shared machine says so here).
    pub load: f64,
}

/// Officer commands' outcomes.
#[derive(Debug, Default, Serialize)]
pub struct Ops {
    /// Acknowledged commands by kind (`adjust`, `award`, `decay`, `revert`), and the
    /// entries (acknowledged deltas) they made.
    pub acknowledged_by_kind: Vec<(&'static str, usize, usize)>,
    /// Acknowledged.
    pub acknowledged: usize,
    /// Refused or never sent.
    pub failed: usize,
    /// No answer.
    pub unknown: usize,
    /// Of those without an answer, how many did get in.
    pub unknown_present: usize,
    /// Through the CLI rather than the control socket.
    pub via_cli: usize,
    /// Reads answered and failed.
    pub reads_ok: u64,
    /// See `reads_ok`.
    pub reads_failed: u64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run's seed (`LOOTSYNC_SOAK_SEED` replays its choices).
    pub seed: u64,
    /// Daemons, and how many of them officers adjust through.
    pub nodes: usize,
    /// See `nodes`.
    pub officers: usize,
    /// Officer commands per second during bursts.
    pub rate: f64,
    /// Seconds the run took.
    pub duration_s: f64,
    /// Whether tc netem was available (otherwise delay is emulated).
    pub netem: bool,
    /// Adjust and read outcomes.
    pub ops: Ops,
    /// Faults injected by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Datagrams the switch blocked, lost and duplicated over the run.
    pub datagrams_blocked_lost_duplicated: (u64, u64, u64),
    /// Convergence after each heal.
    pub heals: Vec<Heal>,
    /// Median and worst convergence, seconds.
    pub convergence_median_s: f64,
    /// See `convergence_median_s`.
    pub convergence_max_s: f64,
    /// Adjusts acknowledged through a node whose clock had jumped forward, and how many of
    /// them carry the jumped time (libfaketime reached the daemon).
    pub clock_jumped_entries: (usize, usize),
    /// Lines in the nemesis log.
    pub nemesis_events: usize,
    /// The slowest `officer add|remove` through the CLI, seconds.
    pub slowest_roster_change_s: f64,
    /// Whole-log replays after a roster change the daemons ran on their replay threads,
    /// and the slowest, ms.
    pub replays: (usize, u64),
    /// Entries on every node at the end, and the sum of all totals.
    pub entries: usize,
    /// See `entries`.
    pub total_points: i64,
    /// Resources per node.
    pub resources: Vec<NodeResources>,
    /// Seconds into the run when the quiet tail began (no workload, no faults).
    pub tail_from_s: f64,
    /// Resources per node over the quiet tail.
    pub tail: Vec<TailResources>,
    /// Everything that went wrong (the goal is none).
    pub violations: Vec<String>,
}

impl Report {
    /// Fills in the convergence summary from `heals`.
    pub fn summarize(&mut self) {
        let mut times: Vec<f64> = self.heals.iter().filter_map(|h| h.converged_s).collect();
        times.sort_by(f64::total_cmp);
        self.convergence_median_s = times.get(times.len() / 2).copied().unwrap_or(0.0);
        self.convergence_max_s = times.last().copied().unwrap_or(0.0);
    }

    /// The one-page text version.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Loot Sync soak: seed {}, {} nodes ({} officers), {:.0} s, bursts of {} officer commands/s",
            self.seed, self.nodes, self.officers, self.duration_s, self.rate
        );
        let o = &self.ops;
        let _ = writeln!(
            t,
            "officer commands: {} acknowledged, {} failed, {} unanswered ({} of which got in); {} via the CLI",
            o.acknowledged, o.failed, o.unknown, o.unknown_present, o.via_cli
        );
        let kinds: Vec<String> = o
            .acknowledged_by_kind
            .iter()
            .map(|(kind, ops, deltas)| format!("{kind} {ops} ({deltas} deltas)"))
            .collect();
        let _ = writeln!(t, "acknowledged: {}", kinds.join(", "));
        let _ = writeln!(
            t,
            "reads: {} answered, {} failed",
            o.reads_ok, o.reads_failed
        );
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(t, "faults: {}", faults.join(", "));
        if !self.netem {
            let _ = writeln!(
                t,
                "  (no tc netem on this kernel: delay emulated by stopping receivers 30-150 ms at a time)"
            );
        }
        let _ = writeln!(
            t,
            "clock jumps: {} of {} adjusts through a jumped-ahead node carry the jumped time",
            self.clock_jumped_entries.1, self.clock_jumped_entries.0
        );
        let _ = writeln!(
            t,
            "slowest officer add/remove (CLI): {:.1} s",
            self.slowest_roster_change_s
        );
        let _ = writeln!(
            t,
            "replays after a roster change (on the daemons' replay threads): {}, slowest {} ms",
            self.replays.0, self.replays.1
        );
        let (b, l, d) = self.datagrams_blocked_lost_duplicated;
        let _ = writeln!(
            t,
            "datagrams at the switch: {b} blocked, {l} lost, {d} duplicated"
        );
        let _ = writeln!(
            t,
            "convergence after {} heals: median {:.2} s, worst {:.2} s",
            self.heals.len(),
            self.convergence_median_s,
            self.convergence_max_s
        );
        let mut loads: Vec<f64> = self.heals.iter().map(|h| h.load).collect();
        loads.sort_by(f64::total_cmp);
        let _ = writeln!(
            t,
            "machine load average at the heals: median {:.1}, max {:.1} (on {} CPUs)",
            loads.get(loads.len() / 2).copied().unwrap_or(0.0),
            loads.last().copied().unwrap_or(0.0),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = writeln!(
            t,
            "end: {} entries on every node, totals summing to {}",
            self.entries, self.total_points
        );
        let _ = writeln!(
            t,
            "node  procs  RSS start→end (max) MiB   growth MiB/h (over s)  KiB/1k entries  fds  peers max/end  entries  log KiB  output KiB"
        );
        for r in &self.resources {
            let _ = writeln!(
                t,
                "{:<5} {:>5}  {:>6.1} → {:>6.1} ({:>6.1})   {:>+8.2} ({:>6.0})  {:>14}  {:>4}  {:>4}/{:<4}       {:>7}  {:>7}  {:>9}",
                r.node,
                r.processes,
                r.rss_start_mib,
                r.rss_end_mib,
                r.rss_max_mib,
                r.rss_growth_mib_per_hour,
                r.judged_seconds,
                r.rss_kib_per_1000_entries
                    .map_or("-".to_owned(), |k| format!("{k:+.0}")),
                r.fds_max,
                r.peers_max,
                r.peers_end,
                r.entries_end,
                r.log_bytes_end / 1024,
                r.output_bytes_end / 1024
            );
        }
        let _ = writeln!(
            t,
            "quiet tail from {:.0} s to the end (no workload, no faults):",
            self.tail_from_s
        );
        let _ = writeln!(
            t,
            "node  RSS start → end (max) MiB   growth MiB/h (over s)  entries gained  log bytes gained  fds start/end  peers end"
        );
        for r in &self.tail {
            let _ = writeln!(
                t,
                "{:<5} {:>6.1} → {:>6.1} ({:>6.1})   {:>+8.2} ({:>6.0})  {:>14}  {:>16}  {:>6}/{:<6}  {:>9}",
                r.node,
                r.rss_start_mib,
                r.rss_end_mib,
                r.rss_max_mib,
                r.rss_growth_mib_per_hour,
                r.seconds,
                r.entries_gained,
                r.log_bytes_gained,
                r.fds.0,
                r.fds.1,
                r.peers_end
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(t, "violations: none");
        } else {
            let _ = writeln!(t, "violations: {}", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(t, "  - {v}");
            }
        }
        t
    }

    /// Writes `report.txt`, `report.json`, `chart.svg` and `samples.csv` into `dir`.
    pub fn write(&self, dir: &Path, samples: &[Sample]) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.txt"), self.text())?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(self).expect("report serializes"),
        )?;
        std::fs::write(dir.join("chart.svg"), self.svg(samples))?;
        let mut csv =
            String::from("at_s,node,generation,rss_kib,fds,peers,entries,log_bytes,output_bytes\n");
        for s in samples {
            let _ = writeln!(
                csv,
                "{:.1},{},{},{},{},{},{},{},{}",
                s.at,
                s.node,
                s.generation,
                s.rss_kib,
                s.fds,
                s.peers,
                s.entries,
                s.log_bytes,
                s.output_bytes
            );
        }
        std::fs::write(dir.join("samples.csv"), csv)
    }

    /// Two panels over the run's time: each node's RSS (one line per node, broken at a
    /// restart; the quiet tail shaded) and the convergence time after each heal (one bar per heal).
    pub fn svg(&self, samples: &[Sample]) -> String {
        const W: f64 = 900.0;
        const PANEL: f64 = 220.0;
        const LEFT: f64 = 60.0;
        const TOP: f64 = 30.0;
        const GAP: f64 = 60.0;
        let colours = [
            "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#637939",
        ];
        let span = self.duration_s.max(1.0);
        let x = |at: f64| LEFT + (at / span) * (W - LEFT - 20.0);
        let max_rss = samples
            .iter()
            .map(|s| s.rss_kib as f64 / 1024.0)
            .fold(1.0, f64::max)
            * 1.1;
        let max_conv = self
            .heals
            .iter()
            .filter_map(|h| h.converged_s)
            .fold(0.5, f64::max)
            * 1.1;
        let height = TOP + 2.0 * PANEL + GAP + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="18" font-size="13">Loot Sync soak, seed {}: RSS per node (MiB) and convergence after each heal (s)</text>"#,
            self.seed
        );
        for (panel, (label, max)) in [("RSS MiB", max_rss), ("converged s", max_conv)]
            .iter()
            .enumerate()
        {
            let top = TOP + panel as f64 * (PANEL + GAP);
            let bottom = top + PANEL;
            let _ = writeln!(
                s,
                r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
                W - LEFT - 20.0
            );
            for tick in 0..=4 {
                let value = max * tick as f64 / 4.0;
                let y = bottom - PANEL * tick as f64 / 4.0;
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" text-anchor="end">{value:.1}</text><line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/>"##,
                    LEFT - 4.0,
                    y + 4.0,
                    W - 20.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="12" y="{}" transform="rotate(-90 12 {})">{label}</text>"#,
                top + PANEL / 2.0,
                top + PANEL / 2.0
            );
            for tick in 0..=5 {
                let at = span * tick as f64 / 5.0;
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle">{:.0} s</text>"#,
                    x(at),
                    bottom + 14.0,
                    at
                );
            }
        }
        // The quiet tail, shaded behind the RSS lines.
        if self.tail_from_s > 0.0 {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{PANEL}" fill="#f2f2f2"><title>quiet tail</title></rect>"##,
                x(self.tail_from_s),
                x(span) - x(self.tail_from_s)
            );
        }
        // RSS lines: one polyline per (node, process).
        let mut lines: BTreeMap<(usize, u32), Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples {
            let y = TOP + PANEL - PANEL * (sample.rss_kib as f64 / 1024.0) / max_rss;
            lines
                .entry((sample.node, sample.generation))
                .or_default()
                .push((x(sample.at), y));
        }
        for ((node, _), points) in &lines {
            let path: Vec<String> = points
                .iter()
                .map(|(px, py)| format!("{px:.1},{py:.1}"))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.2" points="{}"/>"#,
                colours[node % colours.len()],
                path.join(" ")
            );
        }
        for node in 0..self.nodes {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" fill="{}">n{node}</text>"#,
                LEFT + 8.0 + 34.0 * node as f64,
                TOP + 14.0,
                colours[node % colours.len()]
            );
        }
        // Convergence bars.
        let top = TOP + PANEL + GAP;
        for heal in &self.heals {
            let (h, colour) = match heal.converged_s {
                Some(c) => (PANEL * c / max_conv, "#1f77b4"),
                None => (PANEL, "#d62728"),
            };
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="3" height="{h:.1}" fill="{colour}"><title>{:.0} s: {}</title></rect>"#,
                x(heal.at) - 1.5,
                top + PANEL - h,
                heal.at,
                heal.faults.join(" + ")
            );
        }
        s.push_str("</svg>\n");
        s
    }
}
