//! Shared by every bench target (`mod common;`): one row type for a measured figure and the
//! summary table printed at the end of a run, so `cargo bench --bench sync` and
//! `cargo bench --bench store` print the same columns and docs/benchmarks.md can take rows from
//! either.
#![allow(dead_code)]

use loot_sync::core::rng::SeededRng;
use loot_sync::proto::entry::Entry;
use loot_sync::testing::EntryBuilder;
use std::path::PathBuf;

/// One measured figure beside the baseline measured in the same run.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What is measured, e.g. "late joiner missing 100,000 entries".
    pub name: String,
    /// Our measurement, in `unit`.
    pub ours: f64,
    /// The baseline measured in the same run, in `unit`; `None` when the goal is absolute
    /// (round trips, a latency bound) and no baseline applies.
    pub baseline: Option<f64>,
    /// Unit of `ours` and `baseline`: "ms", "B", "datagrams/s", "" for a plain count.
    pub unit: &'static str,
    /// The goal in words, e.g. "ratio <= 3", "<= 6", "p99 <= 5 ms"; empty when the figure
    /// is reported only.
    pub goal: String,
    /// Whether the goal is met; `None` when the figure is reported only.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure that is reported without a goal.
    pub fn reported(
        name: impl Into<String>,
        ours: f64,
        baseline: Option<f64>,
        unit: &'static str,
    ) -> Figure {
        Figure {
            name: name.into(),
            ours,
            baseline,
            unit,
            goal: String::new(),
            met: None,
        }
    }

    /// A figure with a goal on the ratio ours / baseline.
    pub fn ratio_goal(
        name: impl Into<String>,
        ours: f64,
        baseline: f64,
        unit: &'static str,
        max_ratio: f64,
    ) -> Figure {
        Figure {
            name: name.into(),
            ours,
            baseline: Some(baseline),
            unit,
            goal: format!("ratio <= {max_ratio}"),
            met: Some(ours <= max_ratio * baseline),
        }
    }

    /// A figure with an absolute upper bound on `ours` (the baseline, if any, is context).
    pub fn at_most(
        name: impl Into<String>,
        ours: f64,
        baseline: Option<f64>,
        unit: &'static str,
        limit: f64,
    ) -> Figure {
        Figure {
            name: name.into(),
            ours,
            baseline,
            unit,
            goal: format!("<= {} {unit}", format_value(limit))
                .trim_end()
                .to_string(),
            met: Some(ours <= limit),
        }
    }

    /// A figure with a goal on the ratio ours / baseline from below (throughput: higher is
    /// better).
    pub fn ratio_at_least(
        name: impl Into<String>,
        ours: f64,
        baseline: f64,
        unit: &'static str,
        min_ratio: f64,
    ) -> Figure {
        Figure {
            name: name.into(),
            ours,
            baseline: Some(baseline),
            unit,
            goal: format!("ratio >= {min_ratio}"),
            met: Some(ours >= min_ratio * baseline),
        }
    }

    /// ours / baseline, when there is a non-zero baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b > 0.0).map(|b| self.ours / b)
    }
}

/// A number with as many decimals as its size deserves (3 significant digits below 100).
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 || magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn with_unit(value: f64, unit: &str) -> String {
    if unit.is_empty() {
        format_value(value)
    } else {
        format!("{} {unit}", format_value(value))
    }
}

/// The summary table as Markdown (it pastes into docs/benchmarks.md as is).
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| figure | ours | baseline | ratio | goal | met |\n|---|---:|---:|---:|---|---|\n",
    );
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            f.name,
            with_unit(f.ours, f.unit),
            f.baseline
                .map(|b| with_unit(b, f.unit))
                .unwrap_or_else(|| "—".into()),
            f.ratio()
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "—".into()),
            if f.goal.is_empty() {
                "reported"
            } else {
                &f.goal
            },
            match f.met {
                Some(true) => "met",
                Some(false) => "**MISSED**",
                None => "—",
            }
        ));
    }
    out
}

/// Prints the summary table under a heading.
pub fn print_table(title: &str, figures: &[Figure]) {
    println!("\n## {title}\n");
    print!("{}", table(figures));
}

/// `target/bench/` (or `$CARGO_TARGET_DIR/bench/`), created, for CSV and chart output.
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).expect("create the bench output directory");
    dir
}

/// Whether the published sizes were asked for (`LOOTSYNC_BENCH_FULL=1`).
pub fn full_mode() -> bool {
    std::env::var_os("LOOTSYNC_BENCH_FULL").is_some()
}

/// `cargo bench -- --list` (and test listers such as nextest) pass `--list`, and `--test`
/// asks a bench binary for a test run: a bench target then does nothing. (`cargo test` builds
/// no bench target at all; `cargo test --benches` runs the quick mode, in a debug build.)
pub fn invoked_as_test_or_list() -> bool {
    std::env::args().any(|a| a == "--list" || a == "--test")
}

/// The p-th percentile (0..=100) of `samples` by nearest rank; sorts them.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Where generated entries' timestamps start (Unix ms, June 2025).
pub const BASE_MS: u64 = 1_750_000_000_000;

/// `count` valid point entries, 3 ms apart from [`BASE_MS`], 4 officers and 40 players,
/// ids from a generator seeded with `seed` (the same seed gives the same log).
pub fn make_entries(count: usize, seed: u64) -> Vec<Entry> {
    let mut rng = SeededRng::new(seed);
    (0..count)
        .map(|i| {
            EntryBuilder::at_ms(BASE_MS + i as u64 * 3)
                .id_random(rng.bytes())
                .actor(format!("officer{}", i % 4))
                .target(format!("player{}", i % 40))
                .delta((i % 50) as i64 + 1)
                .reason("raid attendance")
                .build()
        })
        .collect()
}
