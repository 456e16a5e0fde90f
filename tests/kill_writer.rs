//! A writer killed with SIGKILL at random moments, again and again, never loses an adjust
//! that had reported success, and the log always reopens.
//!
//! This test binary plays both roles (it has no libtest harness, see Cargo.toml). Run
//! normally, it is the parent: it starts itself as a child writer, kills it with SIGKILL at
//! a random moment, then reopens the log and checks that every adjust the child
//! acknowledged is there with the right content. The child runs the very adjust path the
//! offline CLI runs (`node::open_offline` + `node::apply`), which appends, fdatasyncs and only
//! then reports success, and prints one line per acknowledged entry.
//!
//! The moment is chosen by what the child has done, not by the clock alone: most rounds
//! wait for a random number of acknowledged adjusts and kill the child inside the next one;
//! the others kill it a random few milliseconds after it starts, while it opens the log
//! (which may be cutting a torn tail the previous kill left). So however slow the machine,
//! most kills land mid-run.
//!
//! `LOOTSYNC_KILL_ROUNDS=n` changes the number of kills (default 200); `LOOTSYNC_KILL_SEED=n`
//! replays the random choices of a failed run.

use loot_sync::config::Config;
use loot_sync::control::Adjust;
use loot_sync::core::sync::Now;
use loot_sync::node;
use loot_sync::store::{LogStore, StateLock};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The one test this binary runs.
const TEST_NAME: &str = "sigkill_at_random_moments_never_loses_an_acknowledged_adjust";
/// Set in the child's environment to the state directory it writes to.
const CHILD_ENV: &str = "LOOTSYNC_KILL_WRITER_STATE";
/// Kills per state directory before starting a fresh one. Each child replays the whole log
/// when it starts, so a bounded log keeps the test fast in a debug build.
const ROUNDS_PER_LOG: usize = 25;
/// Longest a child is left starting up before a kill that targets its start-up.
const MAX_STARTUP_KILL_MS: u64 = 40;
/// Most acknowledged adjusts a round waits for before its kill.
const MAX_ACKS_BEFORE_KILL: u64 = 8;
/// How long a child may take to acknowledge what the round waits for.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

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

/// A small xorshift so the kill moments are reproducible from a printed seed.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// When a round kills its child.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This many milliseconds after the spawn: during start-up (opening the log).
    StartupMs(u64),
    /// Right after this many acknowledged adjusts: inside the next one.
    Acks(usize),
}

impl KillAt {
    fn choose(choices: &mut Choices) -> KillAt {
        // A quarter of the rounds aim at start-up; the rest at the adjust path.
        if choices.next().is_multiple_of(4) {
            KillAt::StartupMs(choices.next() % (MAX_STARTUP_KILL_MS + 1))
        } else {
            KillAt::Acks((1 + choices.next() % MAX_ACKS_BEFORE_KILL) as usize)
        }
    }
}

/// Parses one line of the child's output: `id player delta`.
fn parse_ack(line: &str) -> Result<(String, String, i64), String> {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(player), Some(delta), None) => {
            let delta = delta
                .parse()
                .map_err(|_| format!("bad child line {line:?}"))?;
            Ok((id.to_string(), player.to_string(), delta))
        }
        _ => Err(format!("bad child line {line:?}")),
    }
}

/// Forwards each whole line the child prints; a last line without newline was cut by the
/// kill and is not an acknowledgement.
fn forward_lines(stdout: impl Read, lines: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.last() != Some(&b'\n') => return,
            Ok(_) => {
                line.pop();
                let text = String::from_utf8_lossy(&line).into_owned();
                if lines.send(text).is_err() {
                    return;
                }
            }
        }
    }
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
    let mut choices = Choices(seed);
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
        let kill_at = KillAt::choose(&mut choices);
        let fail = |what: String| {
            format!("round {round} (LOOTSYNC_KILL_SEED={seed}, {kill_at:?}): {what}")
        };
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("spawn: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines) = mpsc::channel();
        // Read concurrently so a full pipe never stalls the child at the same spot.
        let reader = std::thread::spawn(move || forward_lines(stdout, lines_tx));
        let mut output = Vec::new();
        match kill_at {
            KillAt::StartupMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
            KillAt::Acks(count) => {
                while output.len() < count {
                    // Ends early when the child's output ends: its exit status below says
                    // why.
                    match lines.recv_timeout(ACK_TIMEOUT) {
                        Ok(line) => output.push(line),
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(fail(format!(
                                "only {} adjusts acknowledged in {ACK_TIMEOUT:?}",
                                output.len()
                            )));
                        }
                    }
                }
            }
        }
        // SIGKILL (an error here only means the child is already gone, which the exit
        // status shows).
        let _ = child.kill();
        let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
        if status.signal() != Some(libc::SIGKILL) {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return Err(fail(format!("child exited by itself ({status}): {err}")));
        }
        reader.join().map_err(|_| fail("reader panicked".into()))?;
        output.extend(lines.try_iter());
        let acks = output
            .iter()
            .map(|line| parse_ack(line))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&fail)?;
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
