//! A writer killed with SIGKILL at random moments, again and again, never loses an adjust
//! that had reported success, and the log always reopens.
//!
//! This test binary plays both roles (it has no libtest harness, see Cargo.toml). Run
//! normally, it is the parent: it starts itself as a child writer, lets it run for a random
//! few milliseconds, kills it with SIGKILL, then reopens the log and checks that every
//! adjust the child acknowledged is there with the right content. The child runs the very
//! adjust path the offline CLI runs (`node::open_offline` + `node::apply`), which appends,
//! fdatasyncs and only then reports success, and prints one line per acknowledged entry.
//!
//! `LOOTSYNC_KILL_ROUNDS=n` changes the number of kills (default 200); `LOOTSYNC_KILL_SEED=n`
//! replays the random delays of a failed run.

use loot_sync::config::Config;
use loot_sync::control::Adjust;
use loot_sync::core::sync::Now;
use loot_sync::node;
use loot_sync::store::{LogStore, StateLock};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The one test this binary runs.
const TEST_NAME: &str = "sigkill_at_random_moments_never_loses_an_acknowledged_adjust";
/// Set in the child's environment to the state directory it writes to.
const CHILD_ENV: &str = "LOOTSYNC_KILL_WRITER_STATE";
/// Kills per state directory before starting a fresh one. Each child replays the whole log
/// when it starts, so a bounded log keeps the test fast in a debug build.
const ROUNDS_PER_LOG: usize = 25;
/// Longest a child is left running before the kill.
const MAX_LIFETIME_MS: u64 = 40;

fn main() -> ExitCode {
    if let Some(state) = std::env::var_os(CHILD_ENV) {
        child_writer(Path::new(&state));
    }
    // Honour a libtest-style name filter (`cargo test sigkill`), so a filtered run of the
    // suite does not also spend seconds here; flags such as --nocapture are ignored.
    if std::env::args().any(|arg| arg == "--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("running 0 tests (filtered out: {TEST_NAME})");
        return ExitCode::SUCCESS;
    }
    match run_parent() {
        Ok(summary) => {
            println!("test {TEST_NAME} ... ok ({summary})");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("test {TEST_NAME} ... FAILED\n{message}");
            ExitCode::FAILURE
        }
    }
}

fn config_for(state: &Path) -> Config {
    Config {
        node: "writer".into(),
        state_dir: state.to_path_buf(),
        ..Config::default()
    }
}

/// The child: adjusts forever, printing `id player delta` after each durable success.
fn child_writer(state: &Path) -> ! {
    let config = config_for(state);
    let unix_ms = node::system_unix_ms();
    let (mut peer, mut store) = match node::open_offline(&config, unix_ms) {
        Ok(opened) => opened,
        Err(err) => {
            eprintln!("child: cannot open log: {err}");
            std::process::exit(3);
        }
    };
    let mut stdout = std::io::stdout().lock();
    for i in 0u64.. {
        let player = format!("p{}", i % 7);
        let delta = (i % 97) as i64 + 1;
        let now = Now {
            mono_ms: i,
            unix_ms: node::system_unix_ms(),
        };
        let adjust = Adjust {
            player: player.clone(),
            delta,
            reason: format!("kill test {i}"),
            actor: None,
        };
        let result = match node::apply(&mut peer, &mut store, &config.node, now, adjust) {
            Ok(result) => result,
            Err(err) => {
                eprintln!("child: adjust failed: {err}");
                std::process::exit(4);
            }
        };
        // One write per line: a line cut by the kill has no newline and is not counted.
        let line = format!("{} {} {}\n", result.entry.id, player, delta);
        if stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            std::process::exit(5);
        }
    }
    unreachable!("the loop only ends by being killed")
}

/// A small xorshift so the delays are reproducible from a printed seed.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % (MAX_LIFETIME_MS + 1)
    }
}

/// Parses the child's output; a last line without newline was cut by the kill.
fn acknowledged(output: &str) -> Result<Vec<(String, String, i64)>, String> {
    let mut acks = Vec::new();
    for line in output.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            break;
        };
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(player), Some(delta), None) => {
                let delta = delta
                    .parse()
                    .map_err(|_| format!("bad child line {line:?}"))?;
                acks.push((id.to_string(), player.to_string(), delta));
            }
            _ => return Err(format!("bad child line {line:?}")),
        }
    }
    Ok(acks)
}

fn run_parent() -> Result<String, String> {
    let rounds: usize = std::env::var("LOOTSYNC_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("LOOTSYNC_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| node::system_unix_ms() | 1);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut delays = Delays(seed);
    let started = Instant::now();
    let mut total_acks = 0usize;
    let mut killed_mid_run = 0usize;
    // Every acknowledged entry of the current log: id -> (player, delta).
    let mut expected: HashMap<String, (String, i64)> = HashMap::new();
    let mut state = PathBuf::new();
    for round in 0..rounds {
        if round % ROUNDS_PER_LOG == 0 {
            state = root.path().join(format!("log{}", round / ROUNDS_PER_LOG));
            expected.clear();
        }
        let fail = |what: String| format!("round {round} (LOOTSYNC_KILL_SEED={seed}): {what}");
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("spawn: {e}")))?;
        let mut stdout = child.stdout.take().expect("piped");
        // Read concurrently so a full pipe never stalls the child at the same spot.
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        std::thread::sleep(Duration::from_millis(delays.next_ms()));
        let exited_early = child
            .try_wait()
            .map_err(|e| fail(format!("try_wait: {e}")))?;
        if let Some(status) = exited_early {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return Err(fail(format!("child exited by itself ({status}): {err}")));
        }
        child.kill().map_err(|e| fail(format!("kill: {e}")))?; // SIGKILL
        child.wait().map_err(|e| fail(format!("wait: {e}")))?;
        let output = reader.join().map_err(|_| fail("reader panicked".into()))?;
        let acks = acknowledged(&output).map_err(&fail)?;
        if !acks.is_empty() {
            killed_mid_run += 1;
        }
        total_acks += acks.len();
        for (id, player, delta) in acks {
            expected.insert(id, (player, delta));
        }

        // The child is dead: the log must open (a torn tail is cut) and hold every ack.
        let lock = StateLock::acquire(&state).map_err(|e| fail(e.to_string()))?;
        let (_store, entries, _report) =
            LogStore::open(lock, "raid").map_err(|e| fail(format!("reopen failed: {e}")))?;
        let on_disk: HashMap<String, (String, i64)> = entries
            .into_iter()
            .map(|e| (e.id.to_string(), (e.target, e.delta)))
            .collect();
        for (id, want) in &expected {
            match on_disk.get(id) {
                Some(got) if got == want => {}
                Some(got) => {
                    return Err(fail(format!(
                        "acknowledged entry {id} changed: {want:?} became {got:?}"
                    )))
                }
                None => return Err(fail(format!("acknowledged entry {id} {want:?} was lost"))),
            }
        }
    }
    if killed_mid_run < rounds / 4 {
        return Err(format!(
            "only {killed_mid_run} of {rounds} children had acknowledged anything before the \
             kill; the test is not exercising the writer (seed {seed})"
        ));
    }
    Ok(format!(
        "{rounds} kills, {killed_mid_run} mid-run, {total_acks} acknowledged adjusts, all kept, {:.1}s, seed {seed}",
        started.elapsed().as_secs_f64()
    ))
}
