//! Sync benchmarks. Each figure is printed beside a baseline measured in the same run, and
//! a summary table (figure, ours, baseline, ratio, goal, met) closes the run.
//!
//! `cargo bench --bench sync` runs the quick mode (seconds: 100k-entry reconciliation,
//! catch-up up to 20k entries, short propagation and idle runs); `LOOTSYNC_BENCH_FULL=1
//! cargo bench --bench sync` runs the published sizes (1,000,000-entry reconciliation,
//! catch-up sweep 1k..1M, 1,000 propagated adjusts, 30 s idle). Multicast stays on
//! 127.0.0.1 with TTL 1, on the bench's own ports (47790, 47851-47853, 47856, 47857) and
//! group names.
//! The catch-up sweep is written to `target/bench/catchup.csv` and `catchup.svg`.
//!
//! `LOOTSYNC_BENCH_ONLY=<figure>` runs one figure (see `main`); `LOOTSYNC_BENCH_ONLY=sans-io`
//! runs every figure that needs no sockets (peers in `loot_sync::testing::World`): a quick,
//! deterministic check that the protocol's byte and round-trip counts did not move.
//! `LOOTSYNC_BENCH_ONLY=hub` runs the hub figures (`hub/`: an idle hub with 40 spokes behind
//! NAT, a spoke's 10,000-entry catch-up through the hub vs straight from one peer, and an
//! adjust's propagation from one spoke to 39 through the hub vs on one LAN).
//! `LOOTSYNC_BENCH_ONLY=hub-daemons` runs the same idle and propagation figures with real
//! daemons (`hub/daemons.rs`: a hub and 40 spokes on loopback, unicast only).
//! `LOOTSYNC_BENCH_ONLY=quiet` runs the bursts of issue 18 (`quiet/`: what 300 adjusts cost
//! the whole group beside the floor, sans-IO up to 200 peers and real daemons up to 40, or
//! 100 in full mode); `quiet-sans-io` only the simulated ones.
//! `LOOTSYNC_BENCH_ONLY=catchup-sweep LOOTSYNC_BENCH_ENTRIES=n` runs the real-daemon
//! catch-up at that one size (the scaling table's 10,000,000 row).

mod common;
mod fleet;
mod hub;
mod quiet;

use common::{full_mode, percentile, Figure};
use loot_sync::config::Config;
use loot_sync::control::Status;
use loot_sync::core::rng::SeededRng;
use loot_sync::core::sync::{Now, Peer, PeerConfig};
use loot_sync::daemon::{self, DaemonOptions, LedgerObserver};
use loot_sync::proto::entry::Entry;
use loot_sync::proto::wire;
use loot_sync::store::{LogStore, StateLock};
use loot_sync::testing::{EntryBuilder, PeerConfigBuilder, World};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The group address the bench daemons use (each figure has its own port and group name).
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 76, 83);
/// Late-joiner catch-up (one pair of daemons at a time).
const CATCHUP_PORT: u16 = 47790;
/// Real-time propagation among 10 daemons.
const PROPAGATION_PORT: u16 = 47851;
/// The raw multicast latency baseline.
const RAW_MULTICAST_PORT: u16 = 47852;
/// 20 idle daemons.
const IDLE_PORT: u16 = 47853;

/// Wall-clock time of the sans-IO figures' virtual time 0: well after the generated entries.
const SANS_IO_UNIX_MS: u64 = common::BASE_MS + 10_000_000;

/// The whisper port of sans-IO peer `node`: single-byte ports, as the published figures
/// were measured with (every datagram carries its sender's port).
fn sans_io_port(node: usize) -> u16 {
    1 + node as u16
}

/// Sans-IO peer `node`'s config: its own HELLO interval, forgotten after five missed.
fn peer_config(node: usize, name: &str, heartbeat_ms: u64) -> PeerConfig {
    PeerConfigBuilder::new(name)
        .whisper_port(sans_io_port(node))
        .heartbeat_ms(heartbeat_ms)
        .peer_timeout_ms(heartbeat_ms * 5)
        .build()
}

fn now(ms: u64) -> Now {
    Now {
        mono_ms: ms,
        unix_ms: SANS_IO_UNIX_MS + ms,
    }
}

/// A world of sans-IO `peers` on a lossless link with 1 ms one-way latency, none started.
fn sans_io_world(peers: Vec<Peer>) -> World {
    let mut world = World::new(SeededRng::new(0));
    world.set_unix_base_ms(SANS_IO_UNIX_MS);
    for (node, peer) in peers.into_iter().enumerate() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, sans_io_port(node)));
        world.insert_at(addr, peer);
    }
    world
}

/// What a reconciliation of two sans-IO peers cost.
struct Reconciled {
    round_trips: u64,
    /// Bytes sent by both.
    bytes: u64,
    datagrams: u64,
}

/// Runs two sans-IO peers over a lossless link with 1 ms one-way latency until both hold the
/// same set (B has not announced itself: A's HELLO starts B's session). Returns the cost and
/// the world holding both.
fn reconcile(a: Peer, b: Peer) -> (Reconciled, World) {
    let mut world = sans_io_world(vec![a, b]);
    world.start(0);
    world.settle();
    assert!(world.converged(), "converged");
    let counters = &world.counters;
    let cost = Reconciled {
        // A's HELLO, sent at 0 and heard at 1, is the trigger, not part of the exchange.
        round_trips: counters.last_delivery_ms.saturating_sub(1) / 2,
        bytes: counters.bytes_delivered,
        datagrams: counters.delivered,
    };
    (cost, world)
}

fn reconciliation_figures(total: usize) -> Vec<Figure> {
    let entries = common::make_entries(total, 1);
    let mut rng = SeededRng::new(7);
    let mut figures = Vec::new();
    for scattered in [false, true] {
        let missing: Vec<usize> = if scattered {
            let mut picked = std::collections::BTreeSet::new();
            while picked.len() < 100 {
                picked.insert(rng.below(total as u64) as usize);
            }
            picked.into_iter().collect()
        } else {
            (total - 100..total).collect()
        };
        let missing_bytes: u64 = missing
            .iter()
            .map(|&i| wire::encoded_len(&entries[i]) as u64)
            .sum();
        let missing_set: std::collections::HashSet<usize> = missing.iter().copied().collect();
        let b_entries: Vec<Entry> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !missing_set.contains(i))
            .map(|(_, e)| e.clone())
            .collect();
        let a = Peer::new(
            peer_config(0, "a", 2_000),
            entries.clone(),
            SeededRng::new(1),
            now(0),
        );
        let b = Peer::new(
            peer_config(1, "b", 2_000),
            b_entries,
            SeededRng::new(2),
            now(0),
        );
        let started = Instant::now();
        // Bound, not `_`: dropping the peers is not part of the reconciliation.
        let (cost, _world) = reconcile(a, b);
        let Reconciled {
            round_trips,
            bytes,
            datagrams,
        } = cost;
        let goal_bytes = 3 * missing_bytes + 4096;
        let which = if scattered { "scattered" } else { "newest" };
        println!(
            "reconcile {total} entries, 100 {which} missing: {round_trips} round trips (goal <= 6{}), \
             {bytes} bytes in {datagrams} datagrams vs baseline {missing_bytes} bytes of the missing \
             entries = {:.2}x (goal <= 3x + 4 KB = {goal_bytes}: {}), cpu {:?}",
            if scattered { ", reported only" } else { "" },
            bytes as f64 / missing_bytes as f64,
            if bytes <= goal_bytes { "met" } else { "MISSED" },
            started.elapsed()
        );
        let name = format!("reconcile {}, 100 {which} missing", count_words(total));
        if scattered {
            figures.push(Figure::reported(
                format!("{name}: round trips"),
                round_trips as f64,
                None,
                "",
            ));
            figures.push(Figure::reported(
                format!("{name}: bytes (baseline: the missing entries)"),
                bytes as f64,
                Some(missing_bytes as f64),
                "B",
            ));
        } else {
            figures.push(Figure::at_most(
                format!("{name}: round trips"),
                round_trips as f64,
                None,
                "",
                6.0,
            ));
            figures.push(Figure {
                goal: "<= 3x + 4 KB".into(),
                met: Some(bytes <= goal_bytes),
                ..Figure::reported(
                    format!("{name}: bytes (baseline: the missing entries)"),
                    bytes as f64,
                    Some(missing_bytes as f64),
                    "B",
                )
            });
        }
    }
    figures
}

/// "1,000,000 entries".
fn count_words(count: usize) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} entries")
}

/// The protocol's own CPU cost of a late joiner's catch-up: both sans-IO peers in one
/// thread, no sockets, beside the cost of decoding the same datagrams alone.
fn catchup_cpu_figure(total: usize) -> Figure {
    let entries = common::make_entries(total, 3);
    let a = Peer::new(
        peer_config(0, "a", 2_000),
        entries.clone(),
        SeededRng::new(1),
        now(0),
    );
    let b = Peer::new(
        peer_config(1, "b", 2_000),
        Vec::new(),
        SeededRng::new(2),
        now(0),
    );
    let started = Instant::now();
    let (cost, world) = reconcile(a, b);
    let ours = started.elapsed();
    drop(world);
    let Reconciled {
        round_trips,
        bytes,
        datagrams,
    } = cost;
    let packed = wire::pack_log_entries("raid", 1, 1, &entries);
    let started = Instant::now();
    let mut decoded = 0;
    for (_, datagram) in &packed {
        decoded += wire::decode(datagram)
            .map(|e| e.body.entry_count())
            .unwrap_or(0);
    }
    let baseline = started.elapsed();
    assert_eq!(decoded, total);
    println!(
        "catch-up cpu (sans-IO, both peers) for {total} entries: {ours:?} ({round_trips} round \
         trips, {datagrams} datagrams, {bytes} bytes) vs baseline decoding the same entries \
         {baseline:?} = {:.1}x (reported)",
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
    Figure::reported(
        format!(
            "catch-up CPU, sans-IO, {} (baseline: decoding them)",
            count_words(total)
        ),
        ms(ours),
        Some(ms(baseline)),
        "ms",
    )
}

/// Catch-up CPU with a root key and every entry officer-signed (each merged entry's
/// signature is verified), beside the same catch-up with an open roster in the same run.
fn signed_catchup_cpu_figure(total: usize) -> Figure {
    use loot_sync::proto::entry::EntryKind;
    use loot_sync::proto::signature::SecretKey;
    let root = SecretKey::from_seed([7; 32]);
    let officer = SecretKey::from_seed([8; 32]);
    let run = |entries: &[Entry], secured: bool| {
        let mut a = Peer::new(
            peer_config(0, "a", 2_000),
            entries.to_vec(),
            SeededRng::new(1),
            now(0),
        );
        let mut b = Peer::new(
            peer_config(1, "b", 2_000),
            Vec::new(),
            SeededRng::new(2),
            now(0),
        );
        if secured {
            a.set_roster(Some(root.public()), None);
            b.set_roster(Some(root.public()), None);
        }
        let started = Instant::now();
        let cpu_before = process_cpu();
        let (_, world) = reconcile(a, b);
        let cpu = process_cpu() - cpu_before;
        let elapsed = started.elapsed();
        let b = world.peer(1);
        assert_eq!(b.ledger().len(), entries.len());
        (elapsed, cpu, b.ledger().rejected())
    };
    let plain = common::make_entries(total, 3);
    let mut signed = plain.clone();
    let add = EntryBuilder::at_ms(common::BASE_MS - 1)
        .id_random([1; 10])
        .actor(signed[0].actor.as_str())
        .target(signed[0].target.as_str())
        .delta(0)
        .reason(signed[0].reason.as_str())
        .kind(EntryKind::OfficerAdd {
            public_key: officer.public(),
        })
        .signed(&root);
    for entry in &mut signed {
        officer.sign(entry);
    }
    signed.push(add);
    // Alternated twice, the lower CPU time of each: the figure is CPU time (user + system,
    // from getrusage; the sans-IO world is this one thread), which other processes on a busy
    // machine disturb far less than the wall time printed beside it.
    let (mut baseline, mut ours) = (Duration::MAX, Duration::MAX);
    let (mut baseline_wall, mut ours_wall) = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        let (wall, cpu, _) = run(&plain, false);
        baseline = baseline.min(cpu);
        baseline_wall = baseline_wall.min(wall);
        let (wall, cpu, rejected) = run(&signed, true);
        assert_eq!(rejected, 0, "every signed entry counts");
        ours = ours.min(cpu);
        ours_wall = ours_wall.min(wall);
    }
    println!(
        "signed catch-up cpu (sans-IO, both peers, every signature verified) for {total} \
         entries: {ours:?} CPU ({ours_wall:?} wall) vs baseline unsigned open-roster catch-up \
         {baseline:?} CPU ({baseline_wall:?} wall) = {:.1}x CPU, {:.1}x wall (goal <= 4x)",
        ours.as_secs_f64() / baseline.as_secs_f64(),
        ours_wall.as_secs_f64() / baseline_wall.as_secs_f64()
    );
    Figure::ratio_goal(
        format!(
            "signed catch-up CPU, sans-IO, {} (baseline: unsigned)",
            count_words(total)
        ),
        ms(ours),
        ms(baseline),
        "ms",
        4.0,
    )
}

/// One signature check per entry through the peers' cached [`Verifier`] beside the
/// reference `verify_strict` on the same signed entries (all decide exactly alike; the
/// signature tests prove it): the verifier with its default policy (the officer's table is
/// built after a few checks) and with tables turned off (the generic double-scalar
/// multiplication on the cached key). Rounds alternate the three; each figure is its
/// fastest round, so a busy machine skews them alike.
fn signature_check_figures(count: usize) -> Vec<Figure> {
    use loot_sync::proto::signature::{verify, SecretKey, Verifier};
    let officer = SecretKey::from_seed([8; 32]);
    let mut signed = common::make_entries(count, 5);
    for entry in &mut signed {
        officer.sign(entry);
    }
    let mut tabled = Verifier::default();
    let mut generic = Verifier::with_table_after(u32::MAX);
    let (mut reference, mut ours, mut untabled) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let started = Instant::now();
        assert!(signed.iter().all(|e| verify(e).is_ok()));
        reference = reference.min(started.elapsed());
        let started = Instant::now();
        assert!(tabled.verify_all(&signed).iter().all(Result::is_ok));
        ours = ours.min(started.elapsed());
        let started = Instant::now();
        assert!(generic.verify_all(&signed).iter().all(Result::is_ok));
        untabled = untabled.min(started.elapsed());
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!(
        "signature check of {count} entries by one officer, fastest of 5 rounds: {:.1} us each \
         with the signer's table, {:.1} us without, verify_strict with the key decoded per \
         entry {:.1} us (reported)",
        per(ours),
        per(untabled),
        per(reference),
    );
    vec![
        Figure::reported(
            format!(
                "signature check per entry, {} by one officer, signer's table (baseline: verify_strict, key decoded each time)",
                count_words(count)
            ),
            per(ours),
            Some(per(reference)),
            "us",
        ),
        Figure::reported(
            format!(
                "signature check per entry, {} by one officer, no table (baseline: verify_strict, key decoded each time)",
                count_words(count)
            ),
            per(untabled),
            Some(per(reference)),
            "us",
        ),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn udp_rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Baseline: the same payload bytes blasted over loopback UDP in 1200-byte datagrams.
fn raw_udp_transfer(total_bytes: usize) -> (Duration, usize, usize) {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&receiver)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    // Up to 5 s for the first datagram (a loaded machine may start the sender late), then
    // 300 ms of silence ends the transfer.
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let to = receiver.local_addr().unwrap();
    let count = total_bytes.div_ceil(1200);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut got = 0;
        let mut last = Instant::now();
        while got < count {
            match receiver.recv(&mut buf) {
                Ok(_) => {
                    if got == 0 {
                        let _ = receiver.set_read_timeout(Some(Duration::from_millis(300)));
                    }
                    got += 1;
                    last = Instant::now();
                }
                Err(_) => break,
            }
        }
        (got, last)
    });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = vec![0xabu8; 1200];
    let start = Instant::now();
    for _ in 0..count {
        sender.send_to(&payload, to).unwrap();
    }
    let (got, last) = reader.join().unwrap();
    (last.duration_since(start), got, count)
}

/// A loopback config for one bench daemon: group `group_name` on `port`, TTL 1.
fn bench_config(state_dir: &std::path::Path, node: &str, group_name: &str, port: u16) -> Config {
    let mut config = Config {
        node: node.into(),
        state_dir: state_dir.join(node),
        ..Config::default()
    };
    config.group.name = group_name.into();
    config.group.address = Some(GROUP);
    config.group.port = port;
    config.group.interface = Ipv4Addr::LOCALHOST;
    config.group.ttl = 1;
    config.whisper.bind = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    config.http.enabled = false;
    config.validate().expect("bench config is valid");
    config
}

/// Writes `entries` into the log a daemon with `config` will open.
fn seed_log(config: &Config, entries: &[Entry]) {
    let lock = StateLock::acquire(&config.state_dir).unwrap();
    let (mut store, _, _) = LogStore::open(lock, &config.group.name).unwrap();
    for chunk in entries.chunks(10_000) {
        store.append(chunk).unwrap();
    }
    store.sync().unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    // Two workers: the machine the published figures come from has two cores.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Notes the moment a daemon has merged `target` entries from peers (no polling).
struct MergedCount {
    target: usize,
    count: AtomicUsize,
    done_at: Mutex<Option<Instant>>,
    done: tokio::sync::Notify,
}

impl LedgerObserver for MergedCount {
    fn merged(&self, entries: &[Entry]) {
        let count = self.count.fetch_add(entries.len(), Ordering::SeqCst) + entries.len();
        if count >= self.target {
            let mut done_at = self.done_at.lock().unwrap();
            if done_at.is_none() {
                *done_at = Some(Instant::now());
                self.done.notify_one();
            }
        }
    }
}

/// One late-joiner catch-up point: daemon A holds `entries_count` entries, daemon B starts
/// empty. Timed from just before B starts until B's observer sees the last entry merged.
struct CatchUp {
    entries: usize,
    payload_bytes: usize,
    ours: Duration,
    /// CPU time (user + system, both daemons) during the catch-up, sampled a little after
    /// it finished, so slightly more than the catch-up itself used.
    cpu: Duration,
    raw: Duration,
    /// Runs the medians are taken over.
    runs: usize,
    /// Raw-transfer datagrams that arrived, summed over the runs.
    raw_arrived: usize,
    raw_sent: usize,
    kernel_drops: u64,
}

/// CPU time (user + system) this process has used so far: both daemons run in it, and the
/// bench's own thread only waits meanwhile.
fn process_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// One catch-up: (wall time, CPU time of the process meanwhile, kernel receive drops).
fn late_joiner_once(entries: &[Entry]) -> (Duration, Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config_a = bench_config(dir.path(), "catchup-a", "bench-catchup", CATCHUP_PORT);
    let config_b = bench_config(dir.path(), "catchup-b", "bench-catchup", CATCHUP_PORT);
    seed_log(&config_a, entries);
    let observer = Arc::new(MergedCount {
        target: entries.len(),
        count: AtomicUsize::new(0),
        done_at: Mutex::new(None),
        done: tokio::sync::Notify::new(),
    });
    runtime().block_on(async {
        let a = daemon::start(config_a, DaemonOptions::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let drops_before = udp_rcvbuf_errors();
        let options = DaemonOptions {
            observer: Some(observer.clone()),
            ..DaemonOptions::default()
        };
        let cpu_before = process_cpu();
        let started = Instant::now();
        let b = daemon::start(config_b, options).await.unwrap();
        tokio::time::timeout(Duration::from_secs(600), observer.done.notified())
            .await
            .expect("catch-up finished within 10 minutes");
        let done_at = observer.done_at.lock().unwrap().expect("done");
        let cpu = process_cpu() - cpu_before;
        let drops = udp_rcvbuf_errors() - drops_before;
        let entries_b = b.request(Status {}).await.unwrap().entries;
        assert_eq!(entries_b, entries.len(), "B holds every entry");
        a.stop().await;
        b.stop().await;
        (done_at - started, cpu, drops)
    })
}

fn median_duration(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Late joiner missing `count` entries vs raw UDP of the same bytes; the median of `runs`.
fn catch_up_point(count: usize, runs: usize) -> CatchUp {
    let entries = common::make_entries(count, 3);
    let payload_bytes: usize = entries.iter().map(wire::encoded_len).sum();
    let (mut ours, mut cpu) = (Vec::new(), Vec::new());
    let mut kernel_drops = 0;
    for _ in 0..runs {
        let (elapsed, cpu_time, drops) = late_joiner_once(&entries);
        ours.push(elapsed);
        cpu.push(cpu_time);
        kernel_drops += drops;
    }
    drop(entries);
    let mut raw = Vec::new();
    let (mut raw_arrived, mut raw_sent) = (0, 0);
    for _ in 0..runs {
        let (elapsed, got, sent) = raw_udp_transfer(payload_bytes);
        raw.push(elapsed);
        raw_arrived += got;
        raw_sent += sent;
    }
    let point = CatchUp {
        entries: count,
        payload_bytes,
        ours: median_duration(ours),
        cpu: median_duration(cpu),
        raw: median_duration(raw),
        runs,
        raw_arrived,
        raw_sent,
        kernel_drops,
    };
    println!(
        "late joiner missing {count} entries ({payload_bytes} bytes), median of {runs}: {:?} vs \
         baseline raw UDP of the same bytes in 1200-byte datagrams {:?} ({raw_arrived}/{raw_sent} \
         datagrams arrived) = {:.2}x; CPU time of both daemons meanwhile {:?} ({:.2} of the 2 \
         cores busy); kernel UDP receive-buffer drops during catch-up: {kernel_drops}; entries \
         lost: 0",
        point.ours,
        point.raw,
        point.ours.as_secs_f64() / point.raw.as_secs_f64(),
        point.cpu,
        point.cpu.as_secs_f64() / point.ours.as_secs_f64(),
    );
    point
}

/// The catch-up sweep: each size's point, the CSV and the chart. The goal applies to
/// `goal_size` (100,000 entries in full mode).
fn catch_up_figures(sizes: &[usize], goal_size: usize, runs_below_1m: usize) -> Vec<Figure> {
    let points: Vec<CatchUp> = sizes
        .iter()
        .map(|&n| catch_up_point(n, if n >= 1_000_000 { 1 } else { runs_below_1m }))
        .collect();
    let dir = common::output_dir();
    let mut csv = String::from(
        "missing_entries,payload_bytes,runs,lootsync_ms,raw_udp_ms,ratio,lootsync_cpu_ms,raw_datagrams_arrived,raw_datagrams_sent,kernel_drops\n",
    );
    for p in &points {
        csv.push_str(&format!(
            "{},{},{},{:.3},{:.3},{:.3},{:.3},{},{},{}\n",
            p.entries,
            p.payload_bytes,
            p.runs,
            ms(p.ours),
            ms(p.raw),
            ms(p.ours) / ms(p.raw),
            ms(p.cpu),
            p.raw_arrived,
            p.raw_sent,
            p.kernel_drops
        ));
    }
    std::fs::write(dir.join("catchup.csv"), csv).unwrap();
    std::fs::write(dir.join("catchup.svg"), catch_up_svg(&points)).unwrap();
    println!(
        "catch-up sweep written to {} and catchup.svg",
        dir.join("catchup.csv").display()
    );
    let mut figures = Vec::new();
    for p in &points {
        let name = format!(
            "late joiner missing {} (baseline: raw UDP, same bytes)",
            count_words(p.entries)
        );
        if p.entries == goal_size {
            figures.push(Figure::ratio_goal(name, ms(p.ours), ms(p.raw), "ms", 3.0));
            figures.push(Figure::reported(
                format!(
                    "late joiner missing {}: CPU time of both daemons (baseline: wall time)",
                    count_words(p.entries)
                ),
                ms(p.cpu),
                Some(ms(p.ours)),
                "ms",
            ));
            figures.push(Figure::at_most(
                format!(
                    "late joiner missing {}: datagrams lost (kernel receive-buffer drops)",
                    count_words(p.entries)
                ),
                p.kernel_drops as f64,
                None,
                "",
                0.0,
            ));
        } else {
            figures.push(Figure::reported(name, ms(p.ours), Some(ms(p.raw)), "ms"));
        }
    }
    figures
}

/// Log-log chart of catch-up time against missing entries, lootsync beside raw UDP.
fn catch_up_svg(points: &[CatchUp]) -> String {
    let (width, height) = (720.0, 440.0);
    let (left, right, top, bottom) = (80.0, 30.0, 50.0, 60.0);
    let xs: Vec<f64> = points.iter().map(|p| (p.entries as f64).log10()).collect();
    let ys: Vec<f64> = points
        .iter()
        .flat_map(|p| [ms(p.ours), ms(p.raw), 3.0 * ms(p.raw)])
        .map(|v| v.max(0.01).log10())
        .collect();
    let (x0, x1) = (
        xs[0].floor(),
        xs[xs.len() - 1].ceil().max(xs[0].floor() + 1.0),
    );
    let y0 = ys.iter().cloned().fold(f64::MAX, f64::min).floor();
    let y1 = ys
        .iter()
        .cloned()
        .fold(f64::MIN, f64::max)
        .ceil()
        .max(y0 + 1.0);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (width - left - right);
    let py = |y: f64| height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Late \
         joiner catch-up time vs missing entries (loopback, log-log)</text>\n",
        width / 2.0
    );
    let mut decade = x0;
    while decade <= x1 {
        let x = px(decade);
        svg.push_str(&format!(
            "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/>\n<text x=\"{x}\" \
             y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            height - bottom,
            height - bottom + 18.0,
            axis_label(10f64.powf(decade))
        ));
        decade += 1.0;
    }
    let mut decade = y0;
    while decade <= y1 {
        let y = py(decade);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>\n<text x=\"{}\" \
             y=\"{}\" text-anchor=\"end\">{}</text>\n",
            width - right,
            left - 6.0,
            y + 4.0,
            ms_label(10f64.powf(decade))
        ));
        decade += 1.0;
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">missing entries</text>\n",
        (left + width - right) / 2.0,
        height - 18.0
    ));
    type Series = (&'static str, &'static str, fn(&CatchUp) -> Duration);
    let series: [Series; 3] = [
        ("lootsync late joiner (2 daemons)", "#c0392b", |p| p.ours),
        ("goal: 3x raw UDP", "#7f8c8d", |p| p.raw * 3),
        ("raw UDP, same bytes, 1200-byte datagrams", "#2471a3", |p| {
            p.raw
        }),
    ];
    for (i, (label, colour, value)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    px((p.entries as f64).log10()),
                    py(ms(value(p)).max(0.01).log10())
                )
            })
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{} points=\"{}\"/>\n",
            if label.starts_with("goal") {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            },
            path.join(" ")
        ));
        for point in path.iter().filter(|_| !label.starts_with("goal")) {
            let (x, y) = point.split_once(',').unwrap();
            svg.push_str(&format!(
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3.5\" fill=\"{colour}\"/>\n"
            ));
        }
        // The legend sits bottom right, under the lines (which rise to the right).
        let (lx, ly) = (
            width - right - 290.0,
            height - bottom - 62.0 + 18.0 * i as f64,
        );
        svg.push_str(&format!(
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" \
             stroke-width=\"2\"/>\n<text x=\"{}\" y=\"{}\">{label}</text>\n",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        ));
    }
    // Each lootsync point labelled with its ratio to the raw line.
    for p in points {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#c0392b\">{:.1}x</text>\n",
            px((p.entries as f64).log10()),
            py(ms(p.ours).max(0.01).log10()) - 9.0,
            ms(p.ours) / ms(p.raw)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// A decade's axis label: 100 µs as "0.1", 1,000 as "1k", 1,000,000 as "1M".
fn axis_label(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{}k", value / 1e3)
    } else {
        format!("{value}")
    }
}

/// A decade of milliseconds: "0.1 ms", "100 ms", "1 s", "10 s".
fn ms_label(value: f64) -> String {
    if value >= 1e3 {
        format!("{} s", value / 1e3)
    } else {
        format!("{value} ms")
    }
}

/// Real-time propagation among 10 real daemons on one LAN (clear, no group key): for each
/// adjust, the time from the origin acknowledging it (just before its reply is sent) until
/// the last of the other 9 has merged it, both instants taken inside the daemons by a
/// [`LedgerObserver`].
fn propagation_samples(adjusts: usize, warmup: usize) -> (Vec<f64>, usize) {
    let nodes = 10;
    runtime().block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let fleet = fleet::Fleet::lan(
            nodes,
            "bench-propagation",
            PROPAGATION_PORT,
            &[],
            false,
            |i| fleet::reporting(&tx, i),
        )
        .await;
        let all: Vec<usize> = (0..nodes).collect();
        let measured = fleet::propagation(&fleet, &mut rx, &all, &all, adjusts, warmup).await;
        fleet.stop().await;
        measured
    })
}

/// Baseline: one sender multicasts a datagram on loopback to 9 receiver threads (each its
/// own socket on the group port, as the daemons have); per datagram, the time from just
/// before `send_to` until the last of the 9 has returned from `recv`.
fn raw_multicast_samples(messages: usize, warmup: usize, receivers: usize) -> (Vec<f64>, usize) {
    use socket2::{Domain, Protocol, Socket, Type};
    let group = SocketAddrV4::new(GROUP, RAW_MULTICAST_PORT);
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Instant)>();
    let mut threads = Vec::new();
    for _ in 0..receivers {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.set_reuse_port(true).unwrap();
        socket.set_multicast_all_v4(false).unwrap();
        socket.bind(&SocketAddr::V4(group).into()).unwrap();
        socket
            .join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST)
            .unwrap();
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok(len) = socket.recv(&mut buf) {
                let at = Instant::now();
                if len < 8 {
                    continue;
                }
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                if seq == u64::MAX || tx.send((seq, at)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    sender.set_multicast_ttl_v4(1).unwrap();
    sender.set_multicast_loop_v4(true).unwrap();
    sender
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    let sender: UdpSocket = sender.into();
    // A LOG_ENTRY-sized datagram.
    let mut payload = vec![0u8; 120];
    let mut samples = Vec::new();
    let mut lost = 0;
    for seq in 0..(warmup + messages) as u64 {
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        let sent_at = Instant::now();
        sender.send_to(&payload, group).unwrap();
        let mut last = None;
        let mut got = 0;
        while got < receivers {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok((s, at)) if s == seq => {
                    got += 1;
                    last = Some(at);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if got < receivers {
            lost += 1;
            continue;
        }
        if seq as usize >= warmup {
            samples.push(ms(last.unwrap() - sent_at));
        }
    }
    payload[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    sender.send_to(&payload, group).unwrap();
    for thread in threads {
        let _ = thread.join();
    }
    (samples, lost)
}

fn propagation_figures(adjusts: usize) -> Vec<Figure> {
    let warmup = 10;
    let (mut ours, slow) = propagation_samples(adjusts, warmup);
    let (mut raw, raw_lost) = raw_multicast_samples(adjusts, warmup, 9);
    let (median, p99) = (percentile(&mut ours, 50.0), percentile(&mut ours, 99.0));
    let (raw_median, raw_p99) = (percentile(&mut raw, 50.0), percentile(&mut raw, 99.0));
    println!(
        "propagation, 10 daemons, {adjusts} adjusts: acknowledged on one until applied on all 9 \
         others: median {median:.3} ms, p99 {p99:.3} ms, max {:.3} ms ({slow} needed \
         reconciliation) vs baseline raw loopback multicast to 9 receiver threads: median \
         {raw_median:.3} ms, p99 {raw_p99:.3} ms ({raw_lost} datagrams lost) (goal p99 <= 5 ms: {})",
        ours.last().unwrap(),
        if p99 <= 5.0 { "met" } else { "MISSED" }
    );
    vec![
        Figure::reported(
            "propagation to all 9 of 10 daemons, median (baseline: raw multicast to 9 threads)",
            median,
            Some(raw_median),
            "ms",
        ),
        Figure::at_most(
            "propagation to all 9 of 10 daemons, p99 (baseline: raw multicast to 9 threads)",
            p99,
            Some(raw_p99),
            "ms",
            5.0,
        ),
    ]
}

/// 20 real daemons in sync and idle: what each sends per second, from their own counters.
fn idle_daemons_figures(seconds: u64) -> Vec<Figure> {
    let nodes = 20;
    // In sync on a realistic log, so HELLOs carry a real fingerprint and newest key.
    let entries = common::make_entries(1_000, 5);
    let (datagrams, bytes, elapsed, heartbeat) = runtime().block_on(async {
        let fleet = fleet::Fleet::lan(nodes, "bench-idle", IDLE_PORT, &entries, false, |_| {
            DaemonOptions::default()
        })
        .await;
        let before = fleet::Traffic::sum(&fleet.traffic().await);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let idle = fleet::Traffic::sum(&fleet.traffic().await).since(before);
        let elapsed = started.elapsed().as_secs_f64();
        let heartbeat = fleet.heartbeat;
        fleet.stop().await;
        (idle.datagrams_sent, idle.bytes_sent, elapsed, heartbeat)
    });
    let per_second = |total: u64| total as f64 / nodes as f64 / elapsed;
    let hello_bytes = hello_len(
        &fleet::node_name("bench-idle", nodes - 1),
        "bench-idle",
        entries,
    ) as f64;
    let heartbeats = 1.0 / heartbeat.as_secs_f64();
    println!(
        "idle: 20 real daemons in sync for {elapsed:.1} s, per peer per second: {:.2} datagrams, \
         {:.0} B (goal <= 1 and <= 200 B) vs baseline one HELLO per heartbeat ({heartbeat:?}): \
         {heartbeats:.2} datagrams, {:.0} B",
        per_second(datagrams),
        per_second(bytes),
        heartbeats * hello_bytes
    );
    vec![
        Figure::at_most(
            format!("idle, 20 real daemons, {seconds} s: datagrams per peer per second (baseline: one HELLO per heartbeat)"),
            per_second(datagrams),
            Some(heartbeats),
            "",
            1.0,
        ),
        Figure::at_most(
            format!("idle, 20 real daemons, {seconds} s: bytes per peer per second (baseline: one HELLO per heartbeat)"),
            per_second(bytes),
            Some(heartbeats * hello_bytes),
            "B",
            200.0,
        ),
    ]
}

/// The size of one HELLO from a node called `name` in group `group` holding `entries` (a
/// full-length node id and port, so an upper bound).
fn hello_len(name: &str, group: &str, entries: Vec<Entry>) -> usize {
    let ledger_of = Peer::new(
        peer_config(0, name, 2_000),
        entries,
        SeededRng::new(0),
        now(0),
    );
    wire::encode(&wire::Envelope {
        group: group.into(),
        from: u64::MAX,
        whisper_port: 65535,
        body: wire::Body::Hello(wire::Hello {
            name: name.into(),
            fingerprint: ledger_of.ledger().fingerprint(),
            newest: ledger_of.ledger().newest(),
        }),
    })
    .unwrap()
    .len()
}

/// 20 sans-IO peers in sync and idle for 60 virtual seconds: what each sends per second
/// (the protocol alone, without sockets or timer jitter of a real run).
fn idle_figure() -> Vec<Figure> {
    let peers_count = 20;
    let heartbeat_ms = 2_000;
    let entries = common::make_entries(1_000, 5);
    let peers: Vec<Peer> = (0..peers_count)
        .map(|i| {
            Peer::new(
                peer_config(i, &format!("p{i}"), heartbeat_ms),
                entries.clone(),
                SeededRng::new(i as u64),
                now(0),
            )
        })
        .collect();
    let mut world = sans_io_world(peers);
    for i in 0..peers_count {
        world.start(i);
    }
    // What all peers sent so far: (datagrams, bytes).
    let sent = |world: &World| {
        (0..peers_count)
            .map(|i| world.peer(i).stats())
            .fold((0, 0), |(d, b), s| (d + s.datagrams_sent, b + s.bytes_sent))
    };
    let seconds = 60;
    let warmup_ms = 10_000;
    world.run_until(warmup_ms - 1);
    let (datagrams_before, bytes_before) = sent(&world);
    world.run_until(warmup_ms + seconds * 1000 - 1);
    let (datagrams_after, bytes_after) = sent(&world);
    let (datagrams, bytes) = (
        datagrams_after - datagrams_before,
        bytes_after - bytes_before,
    );
    let per_peer_datagrams = datagrams as f64 / peers_count as f64 / seconds as f64;
    let per_peer_bytes = bytes as f64 / peers_count as f64 / seconds as f64;
    let hello = wire::encode(&wire::Envelope {
        group: "raid".into(),
        from: u64::MAX,
        whisper_port: 65535,
        body: wire::Body::Hello(wire::Hello {
            name: "p19".into(),
            fingerprint: world.peer(0).ledger().fingerprint(),
            newest: world.peer(0).ledger().newest(),
        }),
    })
    .unwrap()
    .len() as f64;
    let floor = 1000.0 / heartbeat_ms as f64;
    println!(
        "idle: 20 sans-IO peers in sync, per peer per second: {per_peer_datagrams:.2} datagrams, \
         {per_peer_bytes:.0} B (goal <= 1 and <= 200 B: {}) vs baseline one HELLO per heartbeat \
         {floor:.2} datagrams, {:.0} B",
        if per_peer_datagrams <= 1.0 && per_peer_bytes <= 200.0 {
            "met"
        } else {
            "MISSED"
        },
        floor * hello
    );
    vec![
        Figure::reported(
            "idle, 20 sans-IO peers, 60 virtual s: datagrams per peer per second (baseline: one HELLO per heartbeat)",
            per_peer_datagrams,
            Some(floor),
            "",
        ),
        Figure::reported(
            "idle, 20 sans-IO peers, 60 virtual s: bytes per peer per second (baseline: one HELLO per heartbeat)",
            per_peer_bytes,
            Some(floor * hello),
            "B",
        ),
    ]
}

fn main() {
    if common::invoked_as_test_or_list() {
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        // Profiling aid: `RUST_LOG=sync=info cargo bench --bench sync` shows session summaries.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_ansi(false)
            .init();
    }
    let full = full_mode();
    let mode = if full { "full" } else { "quick" };
    let reconcile_size = if full { 1_000_000 } else { 100_000 };
    // The late-joiner goal applies to this size; the sweep gives the chart its points, each
    // the median of `runs` runs (1,000,000 entries: one run).
    let catch_up_goal_size = if full { 100_000 } else { 20_000 };
    let default_sizes: &[usize] = if full {
        &[1_000, 10_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000, 20_000]
    };
    // `LOOTSYNC_BENCH_ENTRIES=n` sweeps the catch-up at that size alone (the scaling table's
    // 10,000,000 row).
    let chosen_size: Option<usize> = std::env::var("LOOTSYNC_BENCH_ENTRIES").ok().map(|n| {
        n.parse()
            .expect("LOOTSYNC_BENCH_ENTRIES: a number of entries")
    });
    let chosen_sizes = chosen_size.map(|n| [n]);
    let sizes: &[usize] = chosen_sizes.as_ref().map_or(default_sizes, |one| one);
    let runs = if full { 3 } else { 1 };
    let adjusts = if full { 1_000 } else { 100 };
    let idle_seconds = if full { 30 } else { 5 };
    let hub_idle_seconds = if full { 30 } else { 10 };
    let hub_adjusts = if full { 400 } else { 100 };
    // `LOOTSYNC_BENCH_ONLY=<figure>` runs one figure (for a profiler).
    let only = std::env::var("LOOTSYNC_BENCH_ONLY").ok();
    let figures = match only.as_deref() {
        Some("catchup-cpu") => vec![catchup_cpu_figure(catch_up_goal_size)],
        Some("signed-catchup-cpu") => {
            let mut figures = signature_check_figures(5_000);
            figures.push(signed_catchup_cpu_figure(catch_up_goal_size));
            figures
        }
        // Five runs of one size: enough samples for `perf record`.
        Some("late-joiner") => catch_up_figures(&[catch_up_goal_size], catch_up_goal_size, 5),
        Some("catchup-sweep") => catch_up_figures(sizes, catch_up_goal_size, runs),
        Some("propagation") => propagation_figures(adjusts),
        Some("idle") => idle_daemons_figures(idle_seconds),
        Some("hub") => {
            let mut figures = hub::idle_figures();
            figures.extend(hub::catch_up_figures());
            figures.extend(hub::propagation_figures());
            figures
        }
        Some("hub-daemons") => hub::daemons::figures(hub_idle_seconds, hub_adjusts),
        Some("quiet") => {
            let mut figures = quiet::sans_io_figures();
            figures.extend(quiet::real_figures(full));
            figures
        }
        Some("quiet-sans-io") => quiet::sans_io_figures(),
        // The figures that need no sockets: deterministic byte and round-trip counts, quick.
        Some("sans-io") => {
            let mut figures = reconciliation_figures(reconcile_size);
            figures.push(catchup_cpu_figure(catch_up_goal_size));
            figures.extend(signature_check_figures(5_000));
            figures.push(signed_catchup_cpu_figure(catch_up_goal_size));
            figures.extend(idle_figure());
            figures.extend(hub::idle_figures());
            figures.extend(hub::catch_up_figures());
            figures.extend(hub::propagation_figures());
            figures.extend(quiet::sans_io_figures());
            figures
        }
        Some(other) => panic!(
            "LOOTSYNC_BENCH_ONLY={other}: expected catchup-cpu, signed-catchup-cpu, \
             late-joiner, catchup-sweep, propagation, idle, hub, hub-daemons, quiet, \
             quiet-sans-io or sans-io"
        ),
        None => {
            println!(
                "lootsync sync benchmarks ({mode} mode; LOOTSYNC_BENCH_FULL=1 for published sizes)"
            );
            let mut figures = reconciliation_figures(reconcile_size);
            figures.push(catchup_cpu_figure(catch_up_goal_size));
            figures.extend(signature_check_figures(5_000));
            figures.push(signed_catchup_cpu_figure(catch_up_goal_size));
            figures.extend(catch_up_figures(sizes, catch_up_goal_size, runs));
            figures.extend(propagation_figures(adjusts));
            figures.extend(idle_daemons_figures(idle_seconds));
            figures.extend(idle_figure());
            figures.extend(hub::idle_figures());
            figures.extend(hub::catch_up_figures());
            figures.extend(hub::propagation_figures());
            figures.extend(hub::daemons::figures(hub_idle_seconds, hub_adjusts));
            figures.extend(quiet::sans_io_figures());
            figures.extend(quiet::real_figures(full));
            figures
        }
    };
    common::print_table(
        &format!("sync figures ({mode} mode; storage figures: cargo bench --bench store)"),
        &figures,
    );
}
