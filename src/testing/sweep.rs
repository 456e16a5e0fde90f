//! The seed sweep the simulators share (`tests/sim.rs`, `tests/sim_hub.rs`): which seeds to
//! run, taken from the environment, spread over threads, and a seed that panics turned into
//! a failure that says how to replay it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The seeds to run and how: `SIM_SEED=n` runs exactly that seed (with `SIM_VERBOSE`, its
/// tracing too), otherwise `SIM_SEEDS` seeds (300 by default) from `SIM_SEED_START` (0),
/// spread over `SIM_THREADS` (2) threads.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The seeds, in the order they are handed out.
    pub seeds: Vec<u64>,
    /// One seed replayed with its tracing shown.
    pub verbose: bool,
    threads: usize,
}

impl Sweep {
    /// The sweep the environment asks for; installs a test tracing subscriber when verbose.
    ///
    /// # Panics
    /// When a `SIM_*` variable is not a number (a typo should not silently run the default).
    pub fn from_env() -> Sweep {
        let single = env_u64("SIM_SEED");
        let seeds = match single {
            Some(seed) => vec![seed],
            None => {
                let start = env_u64("SIM_SEED_START").unwrap_or(0);
                (start..start + env_u64("SIM_SEEDS").unwrap_or(300)).collect()
            }
        };
        let verbose = single.is_some() && std::env::var_os("SIM_VERBOSE").is_some();
        if verbose {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .without_time()
                .with_ansi(false)
                .try_init();
        }
        let threads = env_u64("SIM_THREADS").unwrap_or(2).max(1) as usize;
        Sweep {
            seeds,
            verbose,
            threads,
        }
    }

    /// Runs `run` on every seed and returns the outcomes (in finishing order). A seed that
    /// panics becomes an `Err` naming the replay command for `test` (the test binary's
    /// name); `each` sees every outcome as it arrives, to print failures at once.
    pub fn run<R: Send>(
        &self,
        test: &str,
        run: impl Fn(u64) -> Result<R, String> + Sync,
        each: impl Fn(&Result<R, String>) + Sync,
    ) -> Vec<Result<R, String>> {
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(self.seeds.len()));
        std::thread::scope(|s| {
            for _ in 0..self.threads.min(self.seeds.len()) {
                s.spawn(|| {
                    while let Some(&seed) = self.seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                        // The run owns all its state; a panic leaves nothing shared behind.
                        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(seed)))
                            .unwrap_or_else(|panic| {
                                Err(format!(
                                    "seed {seed} PANICKED: {}\n  replay: SIM_SEED={seed} cargo test --test {test} -- --nocapture",
                                    panic_message(panic)
                                ))
                            });
                        each(&outcome);
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(outcome);
                    }
                });
            }
        });
        results.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// The number in environment variable `name`, if set.
///
/// # Panics
/// When it is set but not a number.
pub fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}
