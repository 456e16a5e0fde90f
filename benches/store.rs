//! Storage benchmarks. Each figure is printed beside a baseline measured in the same run, on
//! the same disk (a temporary directory; set TMPDIR to measure another disk).
//!
//! `cargo bench --bench store` runs the quick mode (100,000-entry cold start and memory,
//! 300 durable adjusts, 100,000 merged entries); `LOOTSYNC_BENCH_FULL=1 cargo bench --bench
//! store` runs the published sizes (1,000,000 entries, 2,000 adjusts).
//!
//! - Cold start: open + check + replay into the daemon's index-only ledger, against one pass
//!   that reads the same file and computes its CRC32C. Goal ≤ 2×.
//! - Durable adjusts per second through the adjust path (`node::apply`: stamp, append,
//!   fdatasync, apply), against a raw write + fdatasync loop of records the same size.
//!   Goal ≥ 0.9×.
//! - Merging synced entries with `storage.fsync = "batch"` (per datagram: ledger insert,
//!   append, index points at the file; group commit every 50 ms), against one raw sequential write of the same bytes
//!   plus one fdatasync. Goal ≥ 0.5×.
//! - Resident memory per entry of a daemon's state at N entries above the same process with
//!   an empty log, measured from /proc/self/status in a fresh child process. Goal ≤ 100 B.
//! - Cold start with a valid checkpoint (load it, replay nothing past it), against the same
//!   read + CRC32C pass over the log. Goal ≤ 2×.
//! - Offline `points` and `adjust` (no daemon) with a checkpoint: in process
//!   (`node::open_offline` plus the request) and as the real `lootsync` binary (wall time),
//!   against reading the checkpoint file once; and the peak resident memory (VmHWM) of a
//!   fresh process running the offline `points`.
//!   Goals at 1,000,000 entries: `points` ≤ 50 ms and ≤ 100 MB, `adjust` ≤ 100 ms.
//! - Writing a checkpoint, against a raw write of the same bytes plus one fdatasync.
//!
//! `LOOTSYNC_BENCH_ONLY=merge` runs the merge figure alone, `LOOTSYNC_BENCH_ONLY=cold-start`
//! the cold-start figures alone (for a profiler); `LOOTSYNC_BENCH_ONLY=officer` measures
//! `officer add` on a log of officers' entries (50,000, or `LOOTSYNC_BENCH_ENTRIES`),
//! offline and through a daemon, against `lootsync points` on the same log and beside the
//! whole-history judgement it made before the roster query (and, with
//! `LOOTSYNC_BENCH_BEFORE_BIN=path`, that binary's `officer add`);
//! `LOOTSYNC_BENCH_ONLY=replay` measures a roster change merged late at 100,000 signed
//! entries (or `LOOTSYNC_BENCH_ENTRIES`): the core thread's time replaying inline against
//! handing the replay to the replay thread, and the replay there;
//! `LOOTSYNC_BENCH_ENTRIES=n` sets the log size of the cold-start, memory, checkpoint and
//! offline figures (the scaling table in docs/benchmarks.md).

mod common;

use common::Figure;
use loot_sync::config::Config;
use loot_sync::control::{self, Adjust, History, Points, RosterQuery};
use loot_sync::core::rng::SeededRng;
use loot_sync::core::sync::{Now, Peer, PeerConfig};
use loot_sync::node;
use loot_sync::proto::batch::EncodedBatch;
use loot_sync::proto::entry::{Entry, EntryKind};
use loot_sync::proto::limits::MAX_DATAGRAM;
use loot_sync::proto::signature::SecretKey;
use loot_sync::proto::wire;
use loot_sync::store::keyfile::KeyKind;
use loot_sync::store::keys::create_signing_key_file;
use loot_sync::store::{checkpoint_path, LogStore, StateLock};
use loot_sync::testing::{whole_history_view, EntryBuilder, PeerConfigBuilder};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const GROUP: &str = "raid";
/// Room for the envelope (version, sender, group, message header) in a datagram; the rest
/// carries entries.
const ENVELOPE_ALLOWANCE: usize = 100;
/// The daemon's default group-commit interval.
const BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// Set in the environment of the child that measures resident memory.
const RSS_CHILD_ENV: &str = "LOOTSYNC_BENCH_RSS_STATE";
/// Set in the environment of the child that runs one offline `points` and reports its
/// peak resident memory.
const OFFLINE_CHILD_ENV: &str = "LOOTSYNC_BENCH_OFFLINE_STATE";

fn peer_config() -> PeerConfig {
    PeerConfigBuilder::new("bench")
        .group(GROUP)
        .whisper_port(1)
        .sync_enabled(false)
        .heartbeat_ms(2000)
        .peer_timeout_ms(10_000)
        .max_clock_drift_ms(3_600_000)
        .build()
}

fn now() -> Now {
    Now {
        mono_ms: 0,
        unix_ms: node::system_unix_ms(),
    }
}

/// What the daemon does at start-up: lock, open (scan, check every record), build the
/// index-only ledger, start the peer.
fn cold_start(state: &Path) -> (LogStore, Peer) {
    let config = Config {
        node: "bench".into(),
        state_dir: state.to_path_buf(),
        ..Config::default()
    };
    let (store, ledger, _) = node::open_log_indexed(&config, Duration::ZERO).expect("open");
    let peer = Peer::with_ledger(peer_config(), ledger, SeededRng::new(1), now());
    (store, peer)
}

fn write_log(state: &Path, entries: &[Entry]) -> u64 {
    let lock = StateLock::acquire(state).unwrap();
    let (mut store, _, _) = LogStore::open(lock, GROUP).unwrap();
    for chunk in entries.chunks(4096) {
        store.append(chunk).unwrap();
    }
    store.sync().unwrap();
    store.len_bytes()
}

fn fdatasync(file: &File) {
    file.sync_data().expect("fdatasync");
}

/// CPU time this thread has used so far (user + system), in seconds: on a machine shared
/// with other work, wall time includes waiting for a core, CPU time does not.
fn thread_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call above (and zeroed before it).
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The cold-start baseline: one pass reading the file and computing its CRC32C; seconds.
fn read_and_crc(path: &Path) -> f64 {
    let started = Instant::now();
    let mut file = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
    std::hint::black_box(crc);
    started.elapsed().as_secs_f64()
}

fn cold_start_figure(count: usize, root: &Path) -> Vec<Figure> {
    let state = root.join("cold");
    let entries = common::make_entries(count, 1);
    let bytes = write_log(&state, &entries);
    drop(entries);
    let path = LogStore::log_path(&state, GROUP);
    // Warm the page cache the same way for both sides: the comparison is CPU and syscalls,
    // not the disk's read speed (which would dominate both equally).
    let mut sink = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut sink).unwrap();
    drop(sink);

    let mut best_base = f64::MAX;
    let mut best_ours = f64::MAX;
    let mut best_cpu = f64::MAX;
    for _ in 0..3 {
        best_base = best_base.min(read_and_crc(&path));

        let (started, cpu) = (Instant::now(), thread_cpu());
        let (store, peer) = cold_start(&state);
        best_ours = best_ours.min(started.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(thread_cpu() - cpu);
        assert_eq!(peer.ledger().len(), count);
        drop((store, peer));
    }
    println!(
        "cold start of {count} entries ({:.1} MB, file in page cache): open+check+replay {:.0} ms (CPU {:.0} ms) vs read+CRC32C {:.0} ms -> {:.2}x (goal <= 2x: {})",
        bytes as f64 / 1e6,
        best_ours * 1e3,
        best_cpu * 1e3,
        best_base * 1e3,
        best_ours / best_base,
        if best_ours <= 2.0 * best_base { "met" } else { "MISSED" }
    );

    // The same with the file evicted from the page cache before each side (a real reboot),
    // so both read from the disk.
    let evict = || {
        let file = File::open(&path).unwrap();
        // SAFETY: plain syscall on a valid open descriptor.
        let rc = unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(rc, 0, "posix_fadvise");
    };
    evict();
    let base = read_and_crc(&path);
    evict();
    let started = Instant::now();
    let (store, peer) = cold_start(&state);
    let ours = started.elapsed().as_secs_f64();
    drop((store, peer));
    println!(
        "cold start of {count} entries, file evicted from the page cache: {:.0} ms vs read+CRC32C {:.0} ms -> {:.2}x (goal <= 2x: {})",
        ours * 1e3,
        base * 1e3,
        ours / base,
        if ours <= 2.0 * base { "met" } else { "MISSED" }
    );
    vec![
        Figure::ratio_goal(
            format!("cold start of {count} entries, file in page cache (baseline: read + CRC32C)"),
            best_ours * 1e3,
            best_base * 1e3,
            "ms",
            2.0,
        ),
        Figure::ratio_goal(
            format!("cold start of {count} entries, file evicted from the page cache (baseline: read + CRC32C)"),
            ours * 1e3,
            base * 1e3,
            "ms",
            2.0,
        ),
        Figure::reported(
            format!("cold start of {count} entries, file in page cache: CPU time (baseline: read + CRC32C, wall)"),
            best_cpu * 1e3,
            Some(best_base * 1e3),
            "ms",
        ),
    ]
}

fn durable_adjust_figure(count: usize, root: &Path) -> Figure {
    let state = root.join("adjust");
    let config = Config {
        node: "bench".into(),
        state_dir: state.clone(),
        ..Config::default()
    };
    let (mut peer, mut store) = node::open_offline(&config, node::system_unix_ms()).unwrap();
    let raw_path = root.join("raw-adjust");
    let mut raw = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .unwrap();
    // fsync latency drifts with whatever else the disk is doing, so the two loops take
    // turns in rounds and the figure compares their summed times.
    const ROUNDS: usize = 4;
    let per_round = count / ROUNDS;
    let (mut ours_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    let mut record = 0;
    for round in 0..ROUNDS {
        let start_len = store.len_bytes();
        let started = Instant::now();
        for i in 0..per_round {
            let adjust = Adjust {
                player: format!("player{}", (round * per_round + i) % 40),
                delta: (i % 50) as i64 + 1,
                reason: "raid attendance".into(),
                actor: None,
            };
            node::apply(&mut peer, &mut store, "bench", now(), adjust).expect("adjust");
        }
        ours_time += started.elapsed();
        record = ((store.len_bytes() - start_len) / per_round as u64) as usize;

        let bytes = vec![0x5au8; record];
        let started = Instant::now();
        for _ in 0..per_round {
            raw.write_all(&bytes).unwrap();
            fdatasync(&raw);
        }
        raw_time += started.elapsed();
    }
    let done = (per_round * ROUNDS) as f64;
    let ours = done / ours_time.as_secs_f64();
    let base = done / raw_time.as_secs_f64();
    println!(
        "durable adjusts ({done} through node::apply, {record}-byte records): {ours:.1}/s vs raw write+fdatasync {base:.1}/s -> {:.2}x (goal >= 0.9x: {})",
        ours / base,
        if ours >= 0.9 * base { "met" } else { "MISSED" }
    );
    Figure::ratio_at_least(
        format!("durable adjusts per second, {record}-byte records (baseline: raw write + fdatasync loop)"),
        ours,
        base,
        "/s",
        0.9,
    )
}

/// One merge of `entries` into a fresh log the way the daemon does it under
/// fsync = "batch"; returns (seconds, bytes appended, fsyncs).
fn merge_once(entries: &[Entry], state: &Path) -> (f64, f64, u64, usize) {
    let lock = StateLock::acquire(state).unwrap();
    let (mut store, mut ledger, _) = LogStore::open_indexed(lock, GROUP, &mut |_, _| {}).unwrap();
    let start_len = store.len_bytes();
    // The entries as decoded datagrams hand them over: owned, moved into the ledger.
    let received = entries.to_vec();
    let (started, cpu) = (Instant::now(), thread_cpu());
    let mut unsynced_since: Option<Instant> = None;
    let mut syncs = 0;
    // Per LOG_ENTRY datagram: merge into the ledger, append, point the index at the file,
    // and fsync once the oldest unsynced append is 50 ms old.
    // As many entries per merged batch as one LOG_ENTRY datagram carries.
    let per_datagram = (MAX_DATAGRAM - ENVELOPE_ALLOWANCE) / wire::encoded_len(&entries[0]);
    let mut received = received.into_iter().peekable();
    while received.peek().is_some() {
        // As `Peer::merge` does: each entry encoded once, hashed from that encoding, moved
        // into the ledger; the log gets the encodings.
        let mut batch = EncodedBatch::with_capacity(per_datagram);
        for entry in received.by_ref().take(per_datagram.max(1)) {
            let key = batch.stage(&entry).unwrap();
            if ledger.insert_keyed(key, entry) {
                batch.keep();
            }
        }
        let offsets = store.append_encoded(&batch).unwrap();
        for (key, offset) in batch.keys().iter().zip(offsets) {
            ledger.mark_stored(key, offset);
        }
        let since = *unsynced_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= BATCH_INTERVAL {
            store.sync().unwrap();
            syncs += 1;
            unsynced_since = None;
        }
    }
    store.sync().unwrap();
    syncs += 1;
    let took = started.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu;
    assert_eq!(ledger.len(), entries.len());
    (took, cpu, store.len_bytes() - start_len, syncs)
}

fn merge_figure(count: usize, root: &Path) -> Vec<Figure> {
    let entries = common::make_entries(count, 2);
    // Best of three for both sides: a single fdatasync's latency varies a lot with whatever
    // else the disk is doing.
    let (mut ours, mut base, mut ours_cpu) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut bytes, mut syncs) = (0, 0);
    let per_datagram = (MAX_DATAGRAM - ENVELOPE_ALLOWANCE) / wire::encoded_len(&entries[0]);
    for round in 0..3 {
        let (took, cpu, appended, fsyncs) =
            merge_once(&entries, &root.join(format!("merge{round}")));
        ours = ours.min(took);
        ours_cpu = ours_cpu.min(cpu);
        (bytes, syncs) = (appended, fsyncs);

        let data = vec![0x5au8; bytes as usize];
        let started = Instant::now();
        let mut raw = File::create(root.join(format!("raw-merge{round}"))).unwrap();
        raw.write_all(&data).unwrap();
        fdatasync(&raw);
        base = base.min(started.elapsed().as_secs_f64());
    }
    println!(
        "merge {count} synced entries, batch fsync ({per_datagram} per datagram, {syncs} fsyncs, {:.1} MB): {:.0} ms (CPU {:.0} ms) vs raw write + 1 fdatasync {:.0} ms -> {:.2}x throughput (goal >= 0.5x: {})",
        bytes as f64 / 1e6,
        ours * 1e3,
        ours_cpu * 1e3,
        base * 1e3,
        base / ours,
        if base / ours >= 0.5 { "met" } else { "MISSED" }
    );
    // As throughput (entries per second), so the ratio reads like the goal.
    vec![
        Figure::ratio_at_least(
            format!("merge {count} synced entries, batch fsync, entries/s (baseline: raw write of the same bytes + 1 fdatasync)"),
            count as f64 / ours,
            count as f64 / base,
            "/s",
            0.5,
        ),
        Figure::reported(
            format!("merge {count} synced entries: CPU time of the merging thread (baseline: raw write + 1 fdatasync, wall)"),
            ours_cpu * 1e3,
            Some(base * 1e3),
            "ms",
        ),
    ]
}

/// Median of `samples` (seconds) in milliseconds.
fn median_ms(samples: &mut [f64]) -> f64 {
    common::percentile(samples, 50.0) * 1e3
}

/// The checkpoint baseline: reading the checkpoint file once, file in the page cache;
/// seconds.
fn read_checkpoint(path: &Path) -> f64 {
    let started = Instant::now();
    let bytes = std::fs::read(path).unwrap();
    std::hint::black_box(bytes.len());
    started.elapsed().as_secs_f64()
}

/// Writes a checkpoint of the log in `state` (what a daemon does at shutdown); returns the
/// seconds it took and the checkpoint's size.
fn write_checkpoint(state: &Path) -> (f64, u64) {
    let config = Config {
        node: "bench".into(),
        state_dir: state.to_path_buf(),
        ..Config::default()
    };
    let (mut store, ledger, _) = node::open_log_indexed(&config, Duration::ZERO).expect("open");
    let started = Instant::now();
    let written = store
        .write_checkpoint(&ledger)
        .expect("write")
        .expect("a checkpoint");
    (started.elapsed().as_secs_f64(), written.bytes)
}

/// Cold start with a valid checkpoint, and writing one; the log in `root/cold` is left
/// with its checkpoint.
fn checkpoint_figures(count: usize, root: &Path) -> Vec<Figure> {
    let state = root.join("cold");
    let log = LogStore::log_path(&state, GROUP);
    let checkpoint = checkpoint_path(&log);
    let mut write_times = Vec::new();
    let mut raw_times = Vec::new();
    let mut size = 0;
    for round in 0..3 {
        let _ = std::fs::remove_file(&checkpoint);
        let (took, bytes) = write_checkpoint(&state);
        write_times.push(took);
        size = bytes;
        let data = vec![0x5au8; bytes as usize];
        let started = Instant::now();
        let mut raw = File::create(root.join(format!("raw-checkpoint{round}"))).unwrap();
        raw.write_all(&data).unwrap();
        fdatasync(&raw);
        raw_times.push(started.elapsed().as_secs_f64());
    }
    let (write_ms, raw_ms) = (median_ms(&mut write_times), median_ms(&mut raw_times));
    println!(
        "write a checkpoint of {count} entries ({:.1} MB): {write_ms:.1} ms vs raw write + fdatasync {raw_ms:.1} ms -> {:.2}x",
        size as f64 / 1e6,
        write_ms / raw_ms
    );

    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..5 {
        base.push(read_and_crc(&log));
        let started = Instant::now();
        let (store, peer) = cold_start(&state);
        ours.push(started.elapsed().as_secs_f64());
        assert_eq!(peer.ledger().len(), count);
        assert_eq!(
            store.checkpoint_entries(),
            Some(count as u64),
            "the checkpoint was used"
        );
        drop((store, peer));
    }
    let (ours, base) = (median_ms(&mut ours), median_ms(&mut base));
    println!(
        "cold start of {count} entries with a checkpoint (file in page cache): {ours:.1} ms vs read+CRC32C {base:.1} ms -> {:.2}x (goal <= 2x: {})",
        ours / base,
        if ours <= 2.0 * base { "met" } else { "MISSED" }
    );
    vec![
        Figure::ratio_goal(
            format!("cold start of {count} entries with a valid checkpoint, files in page cache (baseline: read + CRC32C of the log)"),
            ours,
            base,
            "ms",
            2.0,
        ),
        Figure::reported(
            format!("write a checkpoint of {count} entries, {:.1} MB (baseline: raw write of the same bytes + 1 fdatasync)", size as f64 / 1e6),
            write_ms,
            Some(raw_ms),
            "ms",
        ),
    ]
}

/// Runs the real `lootsync` binary with `args` and waits for it; returns its wall time in
/// seconds.
fn run_binary(config: &Path, args: &[&str]) -> f64 {
    run_binary_at(Path::new(env!("CARGO_BIN_EXE_lootsync")), config, args)
}

/// [`run_binary`] for the `lootsync` binary at `binary`.
fn run_binary_at(binary: &Path, config: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run lootsync");
    let took = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "lootsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Offline `points` and `adjust` with a checkpoint, in process and as the real binary.
fn offline_figures(count: usize, root: &Path) -> Vec<Figure> {
    let state = root.join("offline");
    std::fs::create_dir_all(&state).unwrap();
    let log = LogStore::log_path(&state, GROUP);
    std::fs::copy(LogStore::log_path(&root.join("cold"), GROUP), &log).unwrap();
    let checkpoint = checkpoint_path(&log);
    let config = Config {
        node: "bench".into(),
        state_dir: state.clone(),
        ..Config::default()
    };
    let config_file = root.join("offline.toml");
    std::fs::write(
        &config_file,
        format!(
            "node = \"bench\"\nstate_dir = \"{}\"\n[group]\nname = \"{GROUP}\"\n",
            state.display()
        ),
    )
    .unwrap();
    // Without a checkpoint (the first offline command after a log grew by more than
    // OFFLINE_CHECKPOINT_RECORDS, or a first run): a whole replay, which writes one.
    let (_, first_peak) = offline_peak(&state);
    std::fs::remove_file(&checkpoint).expect("the first offline command wrote a checkpoint");
    let first = run_binary(&config_file, &["points"]);
    assert!(
        checkpoint.exists(),
        "the first offline command wrote a checkpoint"
    );
    let full = count == 1_000_000;
    let goal = |name: String, ours: f64, base: Option<f64>, unit, limit| match full {
        true => Figure::at_most(name, ours, base, unit, limit),
        false => Figure::reported(name, ours, base, unit),
    };

    let (mut base, mut points_in, mut adjust_in) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..7 {
        base.push(read_checkpoint(&checkpoint));
        let started = Instant::now();
        let (mut peer, mut store) = node::open_offline(&config, node::system_unix_ms()).unwrap();
        let totals = node::apply(&mut peer, &mut store, "bench", now(), Points {}).unwrap();
        points_in.push(started.elapsed().as_secs_f64());
        assert_eq!(totals.len(), 40);
        drop((peer, store));
        let started = Instant::now();
        let (mut peer, mut store) = node::open_offline(&config, node::system_unix_ms()).unwrap();
        let adjust = Adjust {
            player: format!("player{i}"),
            delta: 1,
            reason: "offline bench".into(),
            actor: None,
        };
        node::apply(&mut peer, &mut store, "bench", now(), adjust).unwrap();
        adjust_in.push(started.elapsed().as_secs_f64());
    }
    let (mut points_bin, mut adjust_bin, mut peak) = (Vec::new(), Vec::new(), 0);
    for i in 0..7 {
        points_bin.push(run_binary(&config_file, &["points"]));
        peak = peak.max(offline_peak(&state).1);
        let player = format!("player{i}");
        let took = run_binary(
            &config_file,
            &[
                "adjust",
                "--player",
                &player,
                "--delta",
                "2",
                "--reason",
                "offline bench",
            ],
        );
        adjust_bin.push(took);
    }
    let base = median_ms(&mut base);
    let (points_in, adjust_in) = (median_ms(&mut points_in), median_ms(&mut adjust_in));
    let (points_bin, adjust_bin) = (median_ms(&mut points_bin), median_ms(&mut adjust_bin));
    let (peak_mb, first_peak_mb) = (peak as f64 / 1e6, first_peak as f64 / 1e6);
    println!(
        "offline points of {count} entries: binary {points_bin:.1} ms, peak {peak_mb:.1} MB; in process {points_in:.1} ms; reading the checkpoint once {base:.2} ms (without a checkpoint: {:.0} ms, peak {first_peak_mb:.0} MB)",
        first * 1e3
    );
    println!(
        "offline adjust of {count} entries: binary {adjust_bin:.1} ms; in process {adjust_in:.1} ms"
    );
    vec![
        goal(
            format!("offline `lootsync points`, {count} entries, checkpoint: wall time of the binary (baseline: reading the checkpoint once)"),
            points_bin,
            Some(base),
            "ms",
            50.0,
        ),
        goal(
            format!("offline points, {count} entries, checkpoint: peak resident memory of a fresh process running it"),
            peak_mb,
            None,
            "MB",
            100.0,
        ),
        Figure::reported(
            format!("offline points, {count} entries, checkpoint: node::open_offline + Points in process (baseline: reading the checkpoint once)"),
            points_in,
            Some(base),
            "ms",
        ),
        goal(
            format!("offline `lootsync adjust`, {count} entries, checkpoint: wall time of the binary (baseline: reading the checkpoint once)"),
            adjust_bin,
            Some(base),
            "ms",
            100.0,
        ),
        Figure::reported(
            format!("offline adjust, {count} entries, checkpoint: node::open_offline + Adjust in process (baseline: reading the checkpoint once)"),
            adjust_in,
            Some(base),
            "ms",
        ),
        Figure::reported(
            format!("offline `lootsync points`, {count} entries, no checkpoint yet (replays the log, writes one): wall time"),
            first * 1e3,
            None,
            "ms",
        ),
        Figure::reported(
            format!("offline points, {count} entries, no checkpoint yet: peak resident memory of a fresh process running it"),
            first_peak_mb,
            None,
            "MB",
        ),
    ]
}

fn rss_bytes() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("status line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("status value");
    kb
}

/// In the child: one offline `points` as the CLI runs it; prints its seconds and the
/// process's peak resident memory (VmHWM: this process image only, unlike the rusage of a
/// spawned binary, which counts the parent it was forked from).
fn offline_child(state: &Path) {
    let config = Config {
        node: "bench".into(),
        state_dir: state.to_path_buf(),
        ..Config::default()
    };
    let started = Instant::now();
    let (mut peer, mut store) = node::open_offline(&config, node::system_unix_ms()).unwrap();
    let totals = node::apply(&mut peer, &mut store, "bench", now(), Points {}).unwrap();
    drop((peer, store));
    let took = started.elapsed().as_secs_f64();
    std::hint::black_box(totals);
    println!("{took} {}", status_kb("VmHWM:") * 1024);
}

/// Runs one offline `points` in a fresh process; returns its seconds and peak memory.
fn offline_peak(state: &Path) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(OFFLINE_CHILD_ENV, state)
        .output()
        .expect("run offline child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let took: f64 = words.next().and_then(|v| v.parse().ok()).expect("seconds");
    let peak: u64 = words.next().and_then(|v| v.parse().ok()).expect("peak");
    (took, peak)
}

/// In the child: RSS with an empty log open, then with the big log open (both kept).
fn rss_child(root: &Path) {
    let (empty_store, empty_peer) = cold_start(&root.join("empty"));
    let empty = rss_bytes();
    let (store, peer) = cold_start(&root.join("cold"));
    let loaded = rss_bytes();
    println!("{empty} {loaded} {}", peer.ledger().len());
    drop((store, peer, empty_store, empty_peer));
}

fn memory_figure(root: &Path) -> Figure {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(RSS_CHILD_ENV, root)
        .output()
        .expect("run memory child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let [empty, loaded, count] = numbers[..] else {
        panic!("unexpected child output {text:?}");
    };
    let per_entry = (loaded.saturating_sub(empty)) as f64 / count as f64;
    println!(
        "resident memory at {count} entries: {:.1} MB above an empty daemon ({:.1} MB) -> {per_entry:.0} B/entry (goal <= 100 B: {})",
        (loaded - empty) as f64 / 1e6,
        empty as f64 / 1e6,
        if per_entry <= 100.0 { "met" } else { "MISSED" }
    );
    Figure::at_most(
        format!("resident memory per entry at {count} entries, above an empty daemon"),
        per_entry,
        None,
        "B",
        100.0,
    )
}

/// Repetitions of each `officer` figure's measurement (the median is reported).
const OFFICER_RUNS: usize = 5;

/// A daemon (`lootsync run`) started by a figure, killed when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Median of `runs` runs of `measure`, in milliseconds (`measure` returns seconds).
fn median_of(runs: usize, mut measure: impl FnMut() -> f64) -> f64 {
    let mut samples: Vec<f64> = (0..runs).map(|_| measure()).collect();
    median_ms(&mut samples)
}

/// The officers' log the officer and replay figures share: three officers (alice, bob,
/// carol) added by `root`, then from 2 ms later `count - 3` point entries signed by them
/// (alice and bob two in five each, carol one), 3 ms apart.
fn officers_log(count: usize, root: &SecretKey) -> (Vec<Entry>, Vec<SecretKey>) {
    let officers: Vec<SecretKey> = (1..=3u8).map(|n| SecretKey::from_seed([n; 32])).collect();
    let mut rng = SeededRng::new(11);
    let mut entries: Vec<Entry> = ["alice", "bob", "carol"]
        .iter()
        .zip(&officers)
        .map(|(name, key)| {
            EntryBuilder::at_ms(common::BASE_MS)
                .id_random(rng.bytes())
                .actor("root")
                .target(*name)
                .delta(0)
                .kind(EntryKind::OfficerAdd {
                    public_key: key.public(),
                })
                .signed(root)
        })
        .collect();
    entries.extend((0..count.saturating_sub(3)).map(|i| {
        EntryBuilder::at_ms(common::BASE_MS + 2 + i as u64 * 3)
            .id_random(rng.bytes())
            .actor("raidbox")
            .target(format!("player{}", i % 40))
            .delta((i % 50) as i64 + 1)
            .reason("raid attendance")
            .signed(&officers[[0, 0, 1, 1, 2][i % 5]])
    }));
    (entries, officers)
}

/// `officer add` on a log of `count` entries signed by three officers (alice signs 40 %),
/// offline and through a daemon: the roster query it asks now, in process and as the real
/// binary, beside the whole-history judgement it made before (in process: the history
/// fetched the same way, rebuilt and judged as the command line did) and `lootsync points`
/// on the same log (the baseline: a command that reads no entry back).
fn officer_figures(count: usize, root_dir: &Path) -> Vec<Figure> {
    let state = root_dir.join("officers");
    std::fs::create_dir_all(&state).unwrap();
    let root_file = root_dir.join("root.key");
    let root = create_signing_key_file(&root_file, KeyKind::Root).expect("root key");
    let (entries, officers) = officers_log(count, &root);
    write_log(&state, &entries);
    drop(entries);
    let config_file = root_dir.join("officers.toml");
    std::fs::write(
        &config_file,
        format!(
            "node = \"bench\"\nstate_dir = \"{}\"\n[group]\nname = \"{GROUP}\"\n\
             [whisper]\nbind = \"127.0.0.1:0\"\n[http]\nenabled = false\n\
             [security]\nroot_public_key = \"{}\"\nroot_key_file = \"{}\"\n",
            state.display(),
            root.public(),
            root_file.display()
        ),
    )
    .unwrap();
    let config = Config::load(&config_file).expect("bench config");
    let alice = officers[0].public().to_string();
    let query = || RosterQuery {
        name: "alice".into(),
        root_public_key: root.public(),
    };
    let mut added = 0;
    let mut add_new = || {
        added += 1;
        let key = SecretKey::from_seed([100 + added as u8; 32])
            .public()
            .to_string();
        run_binary(
            &config_file,
            &["officer", "add", &format!("new{added}"), &key],
        )
    };
    // A binary from before the roster query, whose `officer add` fetches the whole history.
    let before = std::env::var_os("LOOTSYNC_BENCH_BEFORE_BIN").map(std::path::PathBuf::from);
    let before_bin = || {
        before.as_ref().map(|binary| {
            median_of(3, || {
                run_binary_at(binary, &config_file, &["officer", "add", "alice", &alice])
            })
        })
    };
    let mut figures = Vec::new();
    let mut measure = |mode: &str,
                       points_bin: f64,
                       same_bin: f64,
                       new_bin: f64,
                       before_bin: Option<f64>,
                       query_in: f64,
                       whole_in: f64,
                       points_in: f64| {
        println!(
            "officer add, {count} entries, {mode}: binary {same_bin:.1} ms (nothing to write), \
             {new_bin:.1} ms (a new officer), `points` {points_bin:.1} ms; the binary from \
             before: {before_bin:.1?} ms; in process: roster query {query_in:.1} ms, \
             whole-history judgement {whole_in:.1} ms, points {points_in:.1} ms"
        );
        if let Some(before_bin) = before_bin {
            figures.push(Figure::reported(
                format!("`lootsync officer add` ({mode}), {count} entries, alice's key again, the binary from before the roster query (LOOTSYNC_BENCH_BEFORE_BIN): wall time (baseline: `lootsync points`)"),
                before_bin,
                Some(points_bin),
                "ms",
            ));
        }
        figures.extend([
            Figure::reported(
                format!("`lootsync officer add` ({mode}), {count} entries, alice's key again (the query, nothing written): wall time of the binary (baseline: `lootsync points`)"),
                same_bin,
                Some(points_bin),
                "ms",
            ),
            Figure::reported(
                format!("`lootsync officer add` ({mode}), {count} entries, a new officer (one entry written): wall time of the binary (baseline: `lootsync points`)"),
                new_bin,
                Some(points_bin),
                "ms",
            ),
            Figure::reported(
                format!("officer add ({mode}), {count} entries: the roster query about alice, in process (baseline: points)"),
                query_in,
                Some(points_in),
                "ms",
            ),
            Figure::reported(
                format!("officer add ({mode}), {count} entries: the whole-history judgement made before, in process (baseline: points)"),
                whole_in,
                Some(points_in),
                "ms",
            ),
        ]);
    };

    // Offline: the log opened under the lock, as every offline command does.
    let offline_query = || {
        let (mut peer, mut store) = node::open_offline(&config, node::system_unix_ms()).unwrap();
        node::apply(&mut peer, &mut store, "bench", now(), query()).unwrap()
    };
    let offline_whole = || {
        let (mut peer, mut store) = node::open_offline(&config, node::system_unix_ms()).unwrap();
        let rows = node::apply(
            &mut peer,
            &mut store,
            "bench",
            now(),
            History { player: None },
        );
        drop((peer, store));
        whole_history_view(rows.unwrap(), root.public(), "alice")
    };
    let view = offline_query();
    assert_eq!(view.keys.len(), 1);
    let signed = count.saturating_sub(3);
    assert_eq!(
        view.keys[0].counted.len(),
        signed / 5 * 2 + (signed % 5).min(2)
    );
    assert!(
        offline_whole() == view,
        "the query gives the whole history's view"
    );
    let points_bin = median_of(OFFICER_RUNS, || run_binary(&config_file, &["points"]));
    let same_bin = median_of(OFFICER_RUNS, || {
        run_binary(&config_file, &["officer", "add", "alice", &alice])
    });
    let new_bin = median_of(OFFICER_RUNS, &mut add_new);
    let timed = |f: &dyn Fn()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64()
    };
    let query_in = median_of(OFFICER_RUNS, || timed(&|| drop(offline_query())));
    let whole_in = median_of(3, || timed(&|| drop(offline_whole())));
    let points_in = median_of(OFFICER_RUNS, || {
        timed(&|| {
            let (mut peer, mut store) =
                node::open_offline(&config, node::system_unix_ms()).unwrap();
            node::apply(&mut peer, &mut store, "bench", now(), Points {}).unwrap();
        })
    });
    let before_offline = before_bin();
    measure(
        "offline",
        points_bin,
        same_bin,
        new_bin,
        before_offline,
        query_in,
        whole_in,
        points_in,
    );

    // Through a daemon.
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_lootsync"))
            .arg("--config")
            .arg(&config_file)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start lootsync run"),
    );
    let socket = control::socket_path(&state);
    let started = Instant::now();
    while control::call(&socket, control::Status {}).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon_query = || control::call(&socket, query()).unwrap();
    let daemon_whole = || {
        let rows = control::call(&socket, History { player: None }).unwrap();
        whole_history_view(rows, root.public(), "alice")
    };
    // (The offline runs added officers since `view`.)
    let asked = daemon_query();
    assert!(
        asked.keys == view.keys,
        "the daemon counts alice's entries as offline"
    );
    assert!(
        daemon_whole() == asked,
        "the query gives the whole history's view"
    );
    let points_bin = median_of(OFFICER_RUNS, || run_binary(&config_file, &["points"]));
    let same_bin = median_of(OFFICER_RUNS, || {
        run_binary(&config_file, &["officer", "add", "alice", &alice])
    });
    let new_bin = median_of(OFFICER_RUNS, &mut add_new);
    let query_in = median_of(OFFICER_RUNS, || timed(&|| drop(daemon_query())));
    let whole_in = median_of(3, || timed(&|| drop(daemon_whole())));
    let points_in = median_of(OFFICER_RUNS, || {
        timed(&|| drop(control::call(&socket, Points {}).unwrap()))
    });
    let before_daemon = before_bin();
    measure(
        "daemon",
        points_bin,
        same_bin,
        new_bin,
        before_daemon,
        query_in,
        whole_in,
        points_in,
    );
    drop(daemon);
    figures
}

/// A roster change merged late, sorting before every entry held (carol removed right after
/// her add, on a peer not heard from): how long the daemon's core thread is busy with it,
/// replaying the whole log inline as it did before against handing the replay out as it
/// does now, and how long the replay then takes on the replay thread; beside one read +
/// CRC32C pass over the same log.
fn replay_figures(count: usize, root_dir: &Path) -> Vec<Figure> {
    let state = root_dir.join("replay");
    let root = SecretKey::from_seed([200; 32]);
    let (entries, _) = officers_log(count, &root);
    // Between the adds and the first point entry.
    let removal = EntryBuilder::at_ms(common::BASE_MS + 1)
        .id_random([0xee; 10])
        .actor("root")
        .target("carol")
        .delta(0)
        .kind(EntryKind::OfficerRemove)
        .signed(&root);
    write_log(&state, &entries);
    drop(entries);
    let path = LogStore::log_path(&state, GROUP);
    let mut sink = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut sink).unwrap();
    drop(sink);
    // The daemon's ledger: opened index-only, judged under the root key.
    let open = |deferred: bool| {
        let lock = StateLock::acquire(&state).unwrap();
        let (store, mut ledger, _) = LogStore::open_indexed(lock, GROUP, &mut |_, _| {}).unwrap();
        ledger.set_root(Some(root.public()));
        ledger.defer_replays(deferred);
        (store, ledger)
    };
    let (mut inline, mut handed, mut replay, mut base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut totals = None;
    for _ in 0..3 {
        base.push(read_and_crc(&path));

        let (store, mut ledger) = open(false);
        let started = Instant::now();
        assert!(ledger.insert(removal.clone()));
        inline.push(started.elapsed().as_secs_f64());
        let expected = ledger.totals().clone();
        drop((store, ledger));

        let (store, mut ledger) = open(true);
        let started = Instant::now();
        assert!(ledger.insert(removal.clone()));
        let job = ledger.take_replay().expect("a replay handed out");
        handed.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let result = std::thread::spawn(move || job.run()).join().unwrap();
        replay.push(started.elapsed().as_secs_f64());
        assert!(ledger.finish_replay(result));
        assert_eq!(ledger.totals(), &expected, "the same totals either way");
        totals = Some(expected.len());
        drop((store, ledger));
    }
    let (inline, handed, replay, base) = (
        median_ms(&mut inline),
        median_ms(&mut handed),
        median_ms(&mut replay),
        median_ms(&mut base),
    );
    println!(
        "an early roster change merged at {count} entries ({} players): core thread busy {inline:.1} ms replaying inline (before) vs {handed:.3} ms handing the replay out (now); the replay on its own thread {replay:.1} ms; read+CRC32C of the log {base:.1} ms",
        totals.unwrap_or(0)
    );
    vec![
        Figure::reported(
            format!("early roster change merged at {count} entries: core thread busy, replay inline as before (baseline: read + CRC32C of the log)"),
            inline,
            Some(base),
            "ms",
        ),
        Figure::reported(
            format!("early roster change merged at {count} entries: core thread busy, replay handed out (baseline: read + CRC32C of the log)"),
            handed,
            Some(base),
            "ms",
        ),
        Figure::reported(
            format!("early roster change merged at {count} entries: the replay on the replay thread (baseline: read + CRC32C of the log)"),
            replay,
            Some(base),
            "ms",
        ),
    ]
}

/// The log size of the cold-start, memory, checkpoint and offline figures:
/// `LOOTSYNC_BENCH_ENTRIES=n` measures another one (the scaling table).
fn entries_to_measure(full: bool) -> usize {
    std::env::var("LOOTSYNC_BENCH_ENTRIES")
        .ok()
        .map(|n| {
            n.parse()
                .expect("LOOTSYNC_BENCH_ENTRIES: a number of entries")
        })
        .unwrap_or(if full { 1_000_000 } else { 100_000 })
}

fn main() {
    if let Some(state) = std::env::var_os(OFFLINE_CHILD_ENV) {
        offline_child(Path::new(&state));
        return;
    }
    if let Some(root) = std::env::var_os(RSS_CHILD_ENV) {
        rss_child(Path::new(&root));
        return;
    }
    // `cargo test --benches` / `cargo bench -- --list` pass flags; run only under `cargo bench`.
    if common::invoked_as_test_or_list() {
        return;
    }
    let full = common::full_mode();
    // `LOOTSYNC_BENCH_ONLY=merge` runs the merge figure alone, `cold-start` the cold-start
    // figures alone (for a profiler).
    match std::env::var("LOOTSYNC_BENCH_ONLY").as_deref() {
        Ok("merge") => {
            let root = tempfile::tempdir().expect("temp dir");
            common::print_table("Storage figures", &merge_figure(100_000, root.path()));
            return;
        }
        Ok("officer") => {
            let root = tempfile::tempdir().expect("temp dir");
            let count = std::env::var("LOOTSYNC_BENCH_ENTRIES")
                .map(|n| {
                    n.parse()
                        .expect("LOOTSYNC_BENCH_ENTRIES: a number of entries")
                })
                .unwrap_or(50_000);
            common::print_table("Officer figures", &officer_figures(count, root.path()));
            return;
        }
        Ok("replay") => {
            let root = tempfile::tempdir().expect("temp dir");
            let count = std::env::var("LOOTSYNC_BENCH_ENTRIES")
                .map(|n| {
                    n.parse()
                        .expect("LOOTSYNC_BENCH_ENTRIES: a number of entries")
                })
                .unwrap_or(100_000);
            common::print_table("Replay figures", &replay_figures(count, root.path()));
            return;
        }
        Ok("cold-start") => {
            let root = tempfile::tempdir().expect("temp dir");
            let figures = cold_start_figure(entries_to_measure(full), root.path());
            common::print_table("Storage figures", &figures);
            return;
        }
        _ => {}
    }
    println!(
        "lootsync store benchmarks ({} mode; LOOTSYNC_BENCH_FULL=1 for published sizes)",
        if full { "full" } else { "quick" }
    );
    let root = tempfile::tempdir().expect("temp dir");
    let count = entries_to_measure(full);
    let mut figures = cold_start_figure(count, root.path());
    figures.push(memory_figure(root.path()));
    figures.extend(checkpoint_figures(count, root.path()));
    figures.extend(offline_figures(count, root.path()));
    figures.push(durable_adjust_figure(
        if full { 2_000 } else { 300 },
        root.path(),
    ));
    figures.extend(merge_figure(100_000, root.path()));
    common::print_table("Storage figures", &figures);
}
