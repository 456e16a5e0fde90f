//! Deterministic network simulator for the sans-IO sync core.
//!
//! N [`Peer`]s (2..=12, chosen by the seed) run on a simulated network in virtual time,
//! driven exactly the way `src/daemon.rs` drives one: `Peer::with_ledger` + `start`, datagrams
//! through `handle_datagram`, timers through `poll_timeout`/`handle_timeout`, local adjusts
//! as `prepare_adjust` -> durable append -> `commit_local`, and `drain_actions` after every
//! call. Everything random comes from `SeededRng` streams derived from the run seed, so a
//! seed replays exactly.
//!
//! The network loses (per link, 0-40 %), duplicates, delays (0-50 ms, which reorders) and
//! partitions (symmetric and one-way) datagrams. Each node has a receive socket with a
//! finite buffer drained at a finite rate, so a sender that does not pace itself overflows
//! it. Each node has a disk: entries are durable or still unsynced (group commit every
//! 50 ms); a crash keeps a random prefix of the unsynced tail (a torn tail).
//!
//! A run: a chaos phase (20-40 virtual seconds) of concurrent adjusts, crashes and
//! restarts, a restore from an old backup, partitions, sync switched off and on and clocks
//! hours off; then a heal phase (everything up and connected, loss cut to 0-10 %) that runs
//! until all fingerprints agree. Then the invariants are checked (see `verify`).
//!
//! Replay one seed:   `SIM_SEED=<n> cargo test --test sim -- --nocapture`
//!   (add `SIM_VERBOSE=1` to print the scenario's events as they happen)
//! Run more seeds:    `SIM_SEEDS=5000 cargo test --release --test sim -- --nocapture`
//!   (`SIM_SEED_START=<n>` moves the first seed; `SIM_THREADS=<n>` sets the threads, default 2)

// Node tables are indexed by node number throughout (nodes, blocked[i][j], loss[i][j]); index
// loops read more plainly here than iterator chains over several parallel tables.
#![allow(clippy::needless_range_loop)]

use loot_sync::core::ledger::{EntryReader, Ledger, LedgerBuilder};
use loot_sync::core::rng::SeededRng;
use loot_sync::core::sync::{Action, Channel, Now, Peer, PeerConfig, Tuning};
use loot_sync::proto::entry::{new_entry_id, AdjustRequest, Entry, EntryId, EntryKind, Hlc};
use loot_sync::proto::signature::{PublicKey, SecretKey};
use loot_sync::proto::wire;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

// ---- protocol configuration -----------------------------------------------------------------

/// Wall-clock origin of virtual time (node clocks add their own skew).
const BASE_UNIX_MS: u64 = 1_700_000_000_000;
const HOUR_MS: i64 = 3_600_000;
/// HELLO every 500 ms (the shipped default is slower; a fast beat keeps virtual runs short
/// and makes every peer-table and partner-choice path run many times per seed).
const HEARTBEAT_MS: u64 = 500;
/// Six heartbeats: a peer is forgotten only after ~6 HELLOs in a row are lost. At 40 % loss
/// that happens now and then (0.4^6 = 0.4 % per window), so peers do come and go under
/// chaos, which is wanted; under the heal phase's <= 10 % loss it practically never does.
const PEER_TIMEOUT_MS: u64 = 3_000;
/// Peers' clocks may pull ours ahead by at most an hour; sim clocks are up to 6 h off, so the
/// cap is exercised both ways.
const MAX_CLOCK_DRIFT_MS: u64 = 3_600_000;
/// Largest one-way network delay. Round trip <= 2 x 50 ms plus a few ms of receive queueing.
const MAX_DELAY_MS: u64 = 50;
/// Request timeout: twice the worst round trip (2 x 50 ms + queueing), so a request is only
/// re-sent when an answer was really lost, never merely late.
const REQUEST_TIMEOUT_MS: u64 = 200;
/// Remote entries become durable at most this long after `Persist` (the daemon's group commit).
const GROUP_COMMIT_MS: u64 = 50;
/// Receive model: a node's daemon handles at most this many datagrams per virtual ms
/// (50 us each: a slow machine)...
const RX_PER_MS: usize = 20;
/// ...from a socket buffer of Linux's default `rmem_default` (212992 bytes), where each
/// queued datagram costs its length plus ~1 KiB of kernel overhead (skb truesize). A
/// datagram arriving at a full buffer is dropped (counted as an overflow).
const RX_BUFFER_BYTES: usize = 212_992;
const RX_OVERHEAD_BYTES: usize = 1_024;
/// Heal phase: give up (and fail) if fingerprints still differ after this long.
const HEAL_LIMIT_MS: u64 = 120_000;
const WHISPER_BASE_PORT: u16 = 20_000;
const GROUP_NAME: &str = "raid";

fn peer_config(i: usize) -> PeerConfig {
    PeerConfig {
        node_name: format!("n{i}"),
        group: GROUP_NAME.into(),
        whisper_port: WHISPER_BASE_PORT + i as u16,
        sync_enabled: true,
        heartbeat_ms: HEARTBEAT_MS,
        peer_timeout_ms: PEER_TIMEOUT_MS,
        max_clock_drift_ms: MAX_CLOCK_DRIFT_MS,
        tuning: Tuning {
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            ..Tuning::default()
        },
    }
}

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], WHISPER_BASE_PORT + i as u16))
}

// ---- the simulated world --------------------------------------------------------------------

/// One datagram on its way. Ordered by (deliver time, sequence number): the sequence number
/// is unique, so the ordering never looks at the bytes and equal times keep send order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: u64,
    seq: u64,
    to: usize,
    group: bool,
    from: usize,
    bytes: Rc<Vec<u8>>,
}

/// What one daemon incarnation's log file holds, in append order; a record's "offset" is its
/// index. Peers read entry bodies back from it through [`EntryReader`], as the daemon reads
/// its log file, so the simulator runs the index-only ledger the daemon runs.
#[derive(Default)]
struct SimFile {
    records: Mutex<Vec<Entry>>,
}

impl SimFile {
    /// Appends records; returns the offset of the first.
    fn append(&self, entries: &[Entry]) -> u64 {
        let mut records = self.records.lock().unwrap();
        let first = records.len() as u64;
        records.extend_from_slice(entries);
        first
    }
}

impl EntryReader for SimFile {
    fn read_at(&self, offset: u64) -> Result<Entry, String> {
        self.records
            .lock()
            .unwrap()
            .get(offset as usize)
            .cloned()
            .ok_or_else(|| format!("no record at {offset}"))
    }
}

/// One simulated machine: its daemon (when running), disk, clock and receive socket.
struct Node {
    /// The running incarnation's log as its ledger reads it back.
    file: Arc<SimFile>,
    skew_ms: i64,
    /// The running daemon; `None` while crashed or not started yet.
    peer: Option<Peer>,
    /// Virtual time this incarnation started: its monotonic clock counts from here (a
    /// restarted daemon's monotonic clock starts again at 0, as the real one does).
    started_at: u64,
    /// Records fsynced to disk, in file order.
    durable: Vec<Entry>,
    /// Records appended but not yet fsynced (group commit pending).
    unsynced: Vec<Entry>,
    flush_at: Option<u64>,
    rx: VecDeque<Delivery>,
    rx_bytes: usize,
    rx_ms: u64,
    rx_done: usize,
    /// Next virtual time `handle_timeout` is due (from `poll_timeout`).
    wake: Option<u64>,
    sync_off: bool,
    /// An old copy of `durable`, for the restore-from-backup event.
    backup: Option<(u64, Vec<Entry>)>,
    incarnations: u32,
    /// The group's root key and this node's officer key (`None`, `None`: open roster).
    security: (Option<PublicKey>, Option<Arc<SecretKey>>),
}

impl Node {
    fn new(skew_ms: i64, log: Vec<Entry>) -> Node {
        Node {
            file: Arc::default(),
            skew_ms,
            peer: None,
            started_at: 0,
            durable: log,
            unsynced: Vec::new(),
            flush_at: None,
            rx: VecDeque::new(),
            rx_bytes: 0,
            rx_ms: 0,
            rx_done: 0,
            wake: None,
            sync_off: false,
            backup: None,
            incarnations: 0,
            security: (None, None),
        }
    }

    fn up(&self) -> bool {
        self.peer.is_some()
    }

    fn peer(&self) -> &Peer {
        self.peer.as_ref().expect("node is up")
    }
}

#[derive(Debug, Default, Clone)]
struct Counters {
    /// Datagrams the peers handed over to send (a multicast counts once).
    sent: u64,
    sent_group: u64,
    sent_to: u64,
    /// Whisper datagrams addressed to each node.
    sent_to_node: Vec<u64>,
    delivered: u64,
    lost: u64,
    blocked: u64,
    duplicated: u64,
    overflow: u64,
    to_down: u64,
    unknown_dest: u64,
    /// `poll_timeout` still due right after `handle_timeout` ran (a daemon would spin).
    timer_spins: u64,
    /// Entries the peers asked to persist.
    persisted: u64,
}

struct World {
    now: u64,
    nodes: Vec<Node>,
    heap: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    /// Network decisions (loss, duplication, delay) only.
    rng: SeededRng,
    loss: Vec<Vec<f64>>,
    dup: f64,
    blocked: Vec<Vec<bool>>,
    counters: Counters,
    /// Hash of every datagram sent, in order (for the replay test); `None` when not wanted.
    trace: Option<u64>,
    log: Vec<String>,
    verbose: bool,
}

impl World {
    fn new(nodes: Vec<Node>, rng: SeededRng, loss: Vec<Vec<f64>>, dup: f64) -> World {
        let n = nodes.len();
        World {
            now: 0,
            nodes,
            heap: BinaryHeap::new(),
            seq: 0,
            rng,
            loss,
            dup,
            blocked: vec![vec![false; n]; n],
            counters: Counters {
                sent_to_node: vec![0; n],
                ..Counters::default()
            },
            trace: None,
            log: Vec::new(),
            verbose: false,
        }
    }

    fn note(&mut self, what: String) {
        let line = format!("[{:>6} ms] {what}", self.now);
        if self.verbose {
            eprintln!("{line}");
        }
        self.log.push(line);
    }

    /// With `SIM_VERBOSE`, the peer's own log lines (RUST_LOG=sync=debug) carry node and time.
    fn span(&self, i: usize) -> Option<tracing::span::EnteredSpan> {
        self.verbose
            .then(|| tracing::info_span!("sim", node = i, t = self.now).entered())
    }

    fn now_of(&self, i: usize) -> Now {
        let node = &self.nodes[i];
        Now {
            mono_ms: self.now - node.started_at,
            unix_ms: ((BASE_UNIX_MS + self.now) as i64 + node.skew_ms) as u64,
        }
    }

    /// Starts node `i`'s daemon on its durable log (what `lootsync run` reads at start).
    fn start_node(&mut self, i: usize, rng_seed: u64) {
        assert!(!self.nodes[i].up());
        self.nodes[i].started_at = self.now;
        let now = self.now_of(i);
        let _span = self.span(i);
        let node = &mut self.nodes[i];
        node.incarnations += 1;
        node.sync_off = false;
        node.rx.clear();
        node.rx_bytes = 0;
        // What `lootsync run` does: scan the log into an index-only ledger that reads
        // bodies back from the file.
        let file = Arc::new(SimFile::default());
        file.append(&node.durable);
        let mut builder = LedgerBuilder::new();
        for (offset, entry) in node.durable.iter().enumerate() {
            builder.push(entry, offset as u64);
        }
        let (ledger, _duplicates) = builder.finish(file.clone());
        node.file = file;
        let mut peer = Peer::with_ledger(peer_config(i), ledger, SeededRng::new(rng_seed), now);
        peer.set_roster(node.security.0, node.security.1.clone());
        peer.start(now);
        node.peer = Some(peer);
        self.dispatch(i);
    }

    /// kill -9: the daemon and its socket buffer vanish; of the unsynced tail, the first
    /// `keep` records made it to disk (the rest is torn off).
    fn crash(&mut self, i: usize, keep: usize) {
        let node = &mut self.nodes[i];
        node.peer = None;
        node.wake = None;
        node.flush_at = None;
        node.rx.clear();
        node.rx_bytes = 0;
        let keep = keep.min(node.unsynced.len());
        let kept: Vec<Entry> = node.unsynced.drain(..keep).collect();
        node.durable.extend(kept);
        node.unsynced.clear();
    }

    /// The daemon's adjust path: prepare, append + fsync (which also makes every earlier
    /// appended record durable), then apply and multicast. Returns the acknowledged entry.
    fn adjust(&mut self, i: usize, request: &AdjustRequest) -> Entry {
        let now = self.now_of(i);
        let _span = self.span(i);
        let node = &mut self.nodes[i];
        let peer = node.peer.as_mut().expect("adjust on a running node");
        let entry = peer
            .prepare_adjust(now, request)
            .expect("sim adjust requests are valid");
        self.append_local(i, entry)
    }

    /// Appends an entry made on node `i` (an adjust, or a roster change signed elsewhere)
    /// the way the daemon does: durable, then applied and multicast.
    fn append_local(&mut self, i: usize, entry: Entry) -> Entry {
        let now = self.now_of(i);
        let _span = self.span(i);
        let node = &mut self.nodes[i];
        let peer = node.peer.as_mut().expect("append on a running node");
        let earlier: Vec<Entry> = node.unsynced.drain(..).collect();
        node.durable.extend(earlier);
        node.flush_at = None;
        node.durable.push(entry.clone());
        let offset = node.file.append(std::slice::from_ref(&entry));
        peer.commit_local(now, entry.clone());
        peer.mark_stored(&entry.key(), offset);
        self.dispatch(i);
        entry
    }

    fn set_sync(&mut self, i: usize, enabled: bool) {
        let now = self.now_of(i);
        let _span = self.span(i);
        let node = &mut self.nodes[i];
        node.sync_off = !enabled;
        node.peer
            .as_mut()
            .expect("running")
            .set_sync_enabled(now, enabled);
        self.dispatch(i);
    }

    /// Executes node `i`'s pending actions and refreshes its timer.
    fn dispatch(&mut self, i: usize) {
        let Some(peer) = self.nodes[i].peer.as_mut() else {
            return;
        };
        let actions = peer.drain_actions();
        for action in actions {
            match action {
                Action::SendGroup(bytes) => {
                    self.counters.sent += 1;
                    self.counters.sent_group += 1;
                    self.trace_send(i, usize::MAX, &bytes);
                    let bytes = Rc::new(bytes);
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.transmit(i, j, true, &bytes);
                        }
                    }
                }
                Action::SendTo(addr, bytes) => {
                    self.counters.sent += 1;
                    self.counters.sent_to += 1;
                    let to = (addr.port() as usize)
                        .checked_sub(WHISPER_BASE_PORT as usize)
                        .filter(|&j| j < self.nodes.len() && addr == node_addr(j));
                    let Some(j) = to else {
                        self.counters.unknown_dest += 1;
                        continue;
                    };
                    self.counters.sent_to_node[j] += 1;
                    self.trace_send(i, j, &bytes);
                    self.transmit(i, j, false, &Rc::new(bytes));
                }
                Action::Persist { entries, keys } => {
                    self.counters.persisted += entries.len() as u64;
                    let node = &mut self.nodes[i];
                    let first = node.file.append(&entries);
                    if let Some(peer) = node.peer.as_mut() {
                        for (k, key) in keys.iter().enumerate() {
                            peer.mark_stored(key, first + k as u64);
                        }
                    }
                    node.unsynced.extend(entries);
                    node.flush_at.get_or_insert(self.now + GROUP_COMMIT_MS);
                }
            }
        }
        let node = &mut self.nodes[i];
        let started_at = node.started_at;
        node.wake = node
            .peer
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .map(|ms| started_at + ms);
    }

    fn trace_send(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if let Some(h) = self.trace.as_mut() {
            // FNV-1a over (time, from, to, bytes).
            let mut x = *h;
            let head = [self.now, from as u64, to as u64];
            for b in head
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .chain(bytes.iter().copied())
            {
                x = (x ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            *h = x;
        }
    }

    /// Puts one copy (or two, when duplicated) of a datagram on the wire from i to j.
    fn transmit(&mut self, from: usize, to: usize, group: bool, bytes: &Rc<Vec<u8>>) {
        if self.blocked[from][to] {
            self.counters.blocked += 1;
            return;
        }
        if self.rng.chance(self.loss[from][to]) {
            self.counters.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.dup) {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.below(MAX_DELAY_MS + 1);
            self.seq += 1;
            self.heap.push(Reverse(Delivery {
                at,
                seq: self.seq,
                to,
                group,
                from,
                bytes: bytes.clone(),
            }));
        }
    }

    /// The earliest virtual time at which something happens.
    fn next_time(&self) -> Option<u64> {
        let mut next = self.heap.peek().map(|Reverse(d)| d.at);
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for node in &self.nodes {
            if let Some(flush) = node.flush_at {
                consider(flush);
            }
            if !node.up() {
                continue;
            }
            if let Some(wake) = node.wake {
                consider(wake);
            }
            if !node.rx.is_empty() {
                let busy = node.rx_ms == self.now && node.rx_done >= RX_PER_MS;
                consider(if busy { self.now + 1 } else { self.now });
            }
        }
        next.map(|t| t.max(self.now))
    }

    /// Runs the network and every node up to and including virtual time `until`.
    fn run_until(&mut self, until: u64) {
        while let Some(t) = self.next_time() {
            if t > until {
                break;
            }
            self.step(t);
        }
        self.now = self.now.max(until);
    }

    fn step(&mut self, t: u64) {
        self.now = t;
        // Datagrams reaching their receivers' socket buffers.
        while self.heap.peek().is_some_and(|Reverse(d)| d.at <= t) {
            let Reverse(d) = self.heap.pop().expect("peeked");
            let node = &mut self.nodes[d.to];
            if !node.up() {
                self.counters.to_down += 1;
                continue;
            }
            let cost = d.bytes.len() + RX_OVERHEAD_BYTES;
            if node.rx_bytes + cost > RX_BUFFER_BYTES {
                self.counters.overflow += 1;
                continue;
            }
            node.rx_bytes += cost;
            node.rx.push_back(d);
        }
        // Each daemon reads its socket at its finite rate.
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up() {
                continue;
            }
            if self.nodes[i].rx_ms != t {
                self.nodes[i].rx_ms = t;
                self.nodes[i].rx_done = 0;
            }
            while self.nodes[i].rx_done < RX_PER_MS {
                let now = self.now_of(i);
                let _span = self.span(i);
                let node = &mut self.nodes[i];
                let Some(d) = node.rx.pop_front() else {
                    break;
                };
                node.rx_done += 1;
                node.rx_bytes -= d.bytes.len() + RX_OVERHEAD_BYTES;
                self.counters.delivered += 1;
                let channel = if d.group {
                    Channel::Group
                } else {
                    Channel::Whisper
                };
                node.peer.as_mut().expect("up").handle_datagram(
                    now,
                    channel,
                    node_addr(d.from),
                    &d.bytes,
                );
                self.dispatch(i);
            }
        }
        // Timers.
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up() || self.nodes[i].wake.is_none_or(|w| w > t) {
                continue;
            }
            let now = self.now_of(i);
            let _span = self.span(i);
            self.nodes[i].peer.as_mut().expect("up").handle_timeout(now);
            self.dispatch(i);
            if self.nodes[i].wake.is_some_and(|w| w <= t) {
                self.counters.timer_spins += 1;
                self.nodes[i].wake = Some(t + 1);
            }
        }
        // Group commit.
        for node in &mut self.nodes {
            if node.flush_at.is_some_and(|f| f <= t) {
                node.flush_at = None;
                let batch: Vec<Entry> = node.unsynced.drain(..).collect();
                node.durable.extend(batch);
            }
        }
    }

    fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up())
            .collect()
    }

    /// Whether every node is running and all hold the same fingerprint.
    fn converged(&self) -> bool {
        let mut fps = self
            .nodes
            .iter()
            .map(|n| n.peer.as_ref().map(|p| p.ledger().fingerprint()));
        let Some(Some(first)) = fps.next() else {
            return false;
        };
        fps.all(|fp| fp == Some(first))
    }

    /// Runs until all fingerprints agree or `limit` virtual ms pass; returns when.
    fn run_until_converged(&mut self, limit: u64, check_every: u64) -> Option<u64> {
        let deadline = self.now + limit;
        loop {
            if self.converged() {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            let next = (self.now + check_every).min(deadline);
            self.run_until(next);
        }
    }

    fn describe_nodes(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match &node.peer {
                Some(p) => {
                    let s = p.stats();
                    out += &format!(
                        "  n{i}: fp {} entries {} skew {:+}h sync {} session {} pushing {} peers {} \
                         sessions {}/{}/{} merged {} pushed {} sent {} recv {} dropped {:?}\n",
                        p.ledger().fingerprint().short(),
                        p.ledger().len(),
                        node.skew_ms as f64 / HOUR_MS as f64,
                        p.sync_enabled(),
                        p.in_session(),
                        p.pushing(),
                        p.peers().count(),
                        s.sessions_started,
                        s.sessions_completed,
                        s.sessions_aborted,
                        s.entries_merged,
                        s.entries_pushed,
                        s.datagrams_sent,
                        s.datagrams_received,
                        s.dropped,
                    )
                }
                None => out += &format!("  n{i}: down\n"),
            }
        }
        out += &format!("  network: {:?}\n", self.counters);
        out
    }
}

// ---- entries --------------------------------------------------------------------------------

fn reason(rng: &mut SeededRng, tag: &str) -> String {
    if rng.chance(0.1) {
        // Near the bound, so datagram packing sees big entries too.
        let mut r = format!("{tag} ");
        while r.len() < 240 {
            r.push_str("long reason ");
        }
        r
    } else {
        tag.to_string()
    }
}

/// An entry made long ago (before the simulation), as found in logs at start-up.
fn old_entry(rng: &mut SeededRng, unix_ms: u64, actor: &str, target: &str, i: usize) -> Entry {
    let delta = 1 + rng.below(100) as i64;
    Entry {
        id: new_entry_id(unix_ms, rng.bytes()),
        at: Hlc::new(unix_ms, 0),
        actor: actor.into(),
        target: target.into(),
        delta: if rng.chance(0.3) { -delta } else { delta },
        new_total: 0,
        reason: reason(rng, &format!("old {i}")),
        kind: loot_sync::proto::entry::EntryKind::Points,
        seal: None,
    }
}

fn ids_in_order(peer: &Peer) -> Vec<EntryId> {
    peer.ledger().iter().map(|e| e.id).collect()
}

// ---- one randomized run ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SeedReport {
    seed: u64,
    nodes: usize,
    entries: usize,
    converge_ms: u64,
    heal_datagrams: u64,
    heal_ceiling: u64,
    crashes: u32,
    torn: u32,
    restores: u32,
    missing: usize,
    lost_by_restore: usize,
    trace: u64,
}

enum Pending {
    Start(usize),
    Restart(usize),
    SyncOn(usize),
}

/// The heal-phase datagram ceiling: datagrams sent (a multicast counts once) from the
/// moment of healing until all fingerprints agree.
///
/// Terms (measured over 60,000 seeds with the settings in this file, then given headroom):
/// * heartbeats: each node multicasts a HELLO every 0.9-1.1 heartbeat, so over the time to
///   converge N x (t / 450 ms + 1). Unavoidable, and the only term that grows with time, so
///   a session that keeps re-asking for long still breaks the ceiling;
/// * joins: at healing, restarted and re-enabled nodes probe and every peer that differs
///   answers with a summary: N^2;
/// * sessions: each node reconciles about once, and each level of range splitting (16
///   sub-ranges per level, id lists below 32 entries: depth = 1 + log16(entries / 32)) is
///   a round of requests and answers each way: 6 N x depth;
/// * moving entries: `missing` is the sum over nodes of the entries the union has and the
///   node lacks. ~10 entries fit a datagram and one multicast push serves every node, but
///   scattered differences cost extra requests: 0.3 per missing entry;
/// * 20 for re-sends under the heal phase's <= 10 % loss.
///
/// The worst seed measured reached 88 % of that sum (seed 20431: 3 nodes, 1488 entries, 274
/// missing, 151 datagrams); the median seed uses 23 %. The ceiling is 1.5 x the sum.
fn heal_ceiling(n: usize, converge_ms: u64, entries: usize, missing: usize) -> u64 {
    let n = n as u64;
    let mut depth = 1;
    let mut ranges = entries.max(1);
    while ranges > 32 {
        ranges = ranges.div_ceil(16);
        depth += 1;
    }
    let heartbeats = n * (converge_ms / (HEARTBEAT_MS * 9 / 10) + 1);
    let joins = n * n;
    let sessions = 6 * n * depth;
    let moving = 3 * missing as u64 / 10;
    (heartbeats + joins + sessions + moving + 20) * 3 / 2
}

fn run_seed(seed: u64, verbose: bool, trace: bool) -> Result<SeedReport, String> {
    let mut root = SeededRng::new(seed ^ 0x513d_5eed);
    let mut scen = SeededRng::new(root.next_u64());
    let net_rng = SeededRng::new(root.next_u64());
    let mut ids = SeededRng::new(root.next_u64());

    let n = 2 + scen.below(11) as usize;
    let players: Vec<String> = (0..2 + scen.below(4))
        .map(|p| format!("player{p}"))
        .collect();

    // A shared history from before the simulation; nodes start with different parts of it.
    // Mostly small; one run in eight has a longer history, so reconciliation recurses deeper.
    let base_len = if scen.chance(0.125) {
        200 + scen.below(1_301) as usize
    } else {
        scen.below(121) as usize
    };
    let base: Vec<Entry> = (0..base_len)
        .map(|k| {
            let target = players[scen.below(players.len() as u64) as usize].clone();
            let at = BASE_UNIX_MS - 86_400_000 + k as u64 * 60_000 + scen.below(1_000);
            old_entry(&mut scen, at, "officer-old", &target, k)
        })
        .collect();

    let mut nodes = Vec::new();
    let mut late_start = Vec::new();
    let chaos_ms = 20_000 + scen.below(20_001);
    for _ in 0..n {
        let skew_ms = if scen.chance(0.5) {
            0
        } else {
            scen.below(12 * HOUR_MS as u64 + 1) as i64 - 6 * HOUR_MS
        };
        let log: Vec<Entry> = match scen.below(4) {
            0 => base.clone(),
            1 => base.iter().filter(|_| scen.chance(0.7)).cloned().collect(),
            2 => base[..scen.below(base.len() as u64 + 1) as usize].to_vec(),
            _ => Vec::new(),
        };
        nodes.push(Node::new(skew_ms, log));
        late_start.push(if scen.chance(0.3) {
            Some(1 + scen.below(chaos_ms / 2))
        } else {
            None
        });
    }
    // Old entries some node has on disk count as acknowledged (author unknown: `None`).
    let mut acknowledged: BTreeMap<EntryId, Option<usize>> = nodes
        .iter()
        .flat_map(|node: &Node| node.durable.iter().map(|e| (e.id, None)))
        .collect();
    let max_loss = scen.below(401) as f64 / 1000.0;
    let loss: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            (0..n)
                .map(|_| scen.below(1001) as f64 / 1000.0 * max_loss)
                .collect()
        })
        .collect();
    let dup = scen.below(51) as f64 / 1000.0;
    let mut world = World::new(nodes, net_rng, loss, dup);
    world.verbose = verbose;
    if trace {
        world.trace = Some(0xcbf2_9ce4_8422_2325);
    }
    world.note(format!(
        "seed {seed}: {n} nodes, {} players, {base_len} old entries, chaos {chaos_ms} ms, \
         loss <= {:.0}%, dup {:.1}%, skews {:?} h",
        players.len(),
        max_loss * 100.0,
        dup * 100.0,
        world
            .nodes
            .iter()
            .map(|n| (n.skew_ms as f64 / HOUR_MS as f64 * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    ));

    let mut pending: Vec<(u64, Pending)> = Vec::new();
    for (i, late) in late_start.iter().enumerate() {
        match late {
            None => {
                let s = ids.next_u64();
                world.start_node(i, s);
            }
            Some(at) => pending.push((*at, Pending::Start(i))),
        }
    }

    let mut crashes = 0u32;
    let mut torn = 0u32;
    let mut restores = 0u32;
    // Acknowledged entries that a restore may legitimately have destroyed: at the moment of
    // some restore, no node held them durably any more. Durable copies only ever disappear
    // through a restore, so every other acknowledged entry must survive.
    let mut excused: BTreeSet<EntryId> = BTreeSet::new();
    let mut adjust_no = 0usize;

    // ---- chaos ----
    loop {
        let next_random = world.now + 1 + scen.below(400);
        let next_pending = pending.iter().map(|p| p.0).min();
        let t = next_random.min(next_pending.unwrap_or(u64::MAX));
        if t >= chaos_ms {
            world.run_until(chaos_ms);
            break;
        }
        world.run_until(t);
        if next_pending == Some(t) {
            let due: Vec<Pending> = {
                let (due, rest): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| p.0 <= t);
                pending = rest;
                due.into_iter().map(|p| p.1).collect()
            };
            for p in due {
                match p {
                    Pending::Start(i) | Pending::Restart(i) => {
                        if !world.nodes[i].up() {
                            world.note(format!(
                                "n{i} starts with {} entries on disk",
                                world.nodes[i].durable.len()
                            ));
                            let s = ids.next_u64();
                            world.start_node(i, s);
                        }
                    }
                    Pending::SyncOn(i) => {
                        if world.nodes[i].up() && world.nodes[i].sync_off {
                            world.note(format!("n{i} sync on"));
                            world.set_sync(i, true);
                        }
                    }
                }
            }
            continue;
        }
        let up = world.up_nodes();
        let r = scen.below(1000);
        match r {
            // One officer adjusts a player.
            0..=549 if !up.is_empty() => {
                let i = up[scen.below(up.len() as u64) as usize];
                let target = players[scen.below(players.len() as u64) as usize].clone();
                adjust_no += 1;
                let request = AdjustRequest {
                    actor: format!("officer{i}"),
                    target,
                    delta: 1 + scen.below(100) as i64,
                    reason: reason(&mut scen, &format!("adjust {adjust_no}")),
                };
                let entry = world.adjust(i, &request);
                acknowledged.insert(entry.id, Some(i));
            }
            // Several officers adjust the same player at the same moment.
            550..=629 if up.len() >= 2 => {
                let target = players[scen.below(players.len() as u64) as usize].clone();
                let k = 2 + scen.below(up.len().min(4) as u64 - 1) as usize;
                let mut who = up.clone();
                let mut chosen = Vec::new();
                for _ in 0..k {
                    chosen.push(who.remove(scen.below(who.len() as u64) as usize));
                }
                world.note(format!("{chosen:?} adjust {target} at once"));
                for i in chosen {
                    adjust_no += 1;
                    let delta = scen.below(200) as i64 - 100;
                    let request = AdjustRequest {
                        actor: format!("officer{i}"),
                        target: target.clone(),
                        delta: if delta == 0 { 1 } else { delta },
                        reason: reason(&mut scen, &format!("adjust {adjust_no}")),
                    };
                    let entry = world.adjust(i, &request);
                    acknowledged.insert(entry.id, Some(i));
                }
            }
            // kill -9 with a torn unsynced tail; restart now or a few seconds later.
            630..=669 if !up.is_empty() => {
                // Mostly hit a node with records still unsynced (a crash mid-catch-up),
                // otherwise the tail is usually empty: the group commit is only 50 ms.
                let writing: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|&i| !world.nodes[i].unsynced.is_empty())
                    .collect();
                let i = if !writing.is_empty() && scen.chance(0.7) {
                    writing[scen.below(writing.len() as u64) as usize]
                } else {
                    up[scen.below(up.len() as u64) as usize]
                };
                let unsynced = world.nodes[i].unsynced.len();
                let keep = scen.below(unsynced as u64 + 1) as usize;
                if keep < unsynced {
                    torn += 1;
                }
                let delay = if scen.chance(0.3) {
                    0
                } else {
                    scen.below(5_000)
                };
                world.note(format!(
                    "n{i} crashes (keeps {keep}/{unsynced} unsynced), restart in {delay} ms"
                ));
                world.crash(i, keep);
                crashes += 1;
                if delay == 0 {
                    let s = ids.next_u64();
                    world.start_node(i, s);
                } else {
                    pending.push((world.now + delay, Pending::Restart(i)));
                }
            }
            // Partitions.
            670..=729 => {
                let what = scen.below(4);
                for row in world.blocked.iter_mut() {
                    row.fill(false);
                }
                match what {
                    0 => {
                        let side: Vec<bool> = (0..n).map(|_| scen.chance(0.5)).collect();
                        for a in 0..n {
                            for b in 0..n {
                                world.blocked[a][b] = side[a] != side[b];
                            }
                        }
                        world.note(format!("partition {side:?}"));
                    }
                    1 => {
                        let mut links = Vec::new();
                        for _ in 0..1 + scen.below(3) {
                            let a = scen.below(n as u64) as usize;
                            let b = scen.below(n as u64) as usize;
                            if a != b {
                                world.blocked[a][b] = true;
                                links.push((a, b));
                            }
                        }
                        world.note(format!("one-way blocks {links:?}"));
                    }
                    2 => {
                        let side: Vec<bool> = (0..n).map(|_| scen.chance(0.5)).collect();
                        for a in 0..n {
                            for b in 0..n {
                                world.blocked[a][b] = side[a] && !side[b];
                            }
                        }
                        world.note(format!("one-way partition true->false {side:?}"));
                    }
                    _ => world.note("partitions healed".into()),
                }
            }
            // Sync switched off for a while.
            730..=769 if !up.is_empty() => {
                let i = up[scen.below(up.len() as u64) as usize];
                if !world.nodes[i].sync_off {
                    let back = world.now + 1_000 + scen.below(8_000);
                    world.note(format!("n{i} sync off until {back} ms"));
                    world.set_sync(i, false);
                    pending.push((back, Pending::SyncOn(i)));
                }
            }
            // A backup copy of a node's log file.
            770..=799 => {
                let i = scen.below(n as u64) as usize;
                let copy = world.nodes[i].durable.clone();
                world.note(format!("n{i} backed up ({} entries)", copy.len()));
                world.nodes[i].backup = Some((world.now, copy));
            }
            // Restore a node's log from its old backup (rare: at most once per run).
            800..=802 if restores == 0 => {
                let Some(i) = (0..n).find(|&i| world.nodes[i].backup.is_some()) else {
                    continue;
                };
                let (taken, copy) = world.nodes[i].backup.clone().expect("found");
                world.note(format!(
                    "n{i} restored from backup taken at {taken} ms ({} entries; log had {})",
                    copy.len(),
                    world.nodes[i].durable.len() + world.nodes[i].unsynced.len()
                ));
                restores += 1;
                let was_up = world.nodes[i].up();
                if was_up {
                    world.crash(i, 0);
                }
                world.nodes[i].durable = copy;
                world.nodes[i].unsynced.clear();
                let durable_anywhere: HashSet<EntryId> = world
                    .nodes
                    .iter()
                    .flat_map(|node| node.durable.iter().map(|e| e.id))
                    .collect();
                let newly: Vec<EntryId> = acknowledged
                    .keys()
                    .filter(|id| !durable_anywhere.contains(id) && !excused.contains(id))
                    .copied()
                    .collect();
                world.note(format!(
                    "  {} acknowledged entries now have no durable copy anywhere",
                    newly.len()
                ));
                excused.extend(newly);
                if was_up {
                    let s = ids.next_u64();
                    world.start_node(i, s);
                }
            }
            _ => {}
        }
    }

    // ---- heal ----
    world.note("heal: partitions off, loss <= 10%, everyone up with sync on".into());
    for row in world.blocked.iter_mut() {
        row.fill(false);
    }
    for a in 0..n {
        for b in 0..n {
            world.loss[a][b] = scen.below(101) as f64 / 1000.0;
        }
    }
    pending.clear();
    for i in 0..n {
        if !world.nodes[i].up() {
            let s = ids.next_u64();
            world.start_node(i, s);
        } else if world.nodes[i].sync_off {
            world.set_sync(i, true);
        }
    }
    let heal_start = world.now;
    let sent_before = world.counters.sent;
    let union: BTreeSet<EntryId> = world
        .nodes
        .iter()
        .flat_map(|node| node.peer().ledger().iter().map(|e| e.id))
        .collect();
    let missing: usize = world
        .nodes
        .iter()
        .map(|node| union.len() - node.peer().ledger().len())
        .sum();
    let converged_at = world.run_until_converged(HEAL_LIMIT_MS, 10);
    let heal_datagrams = world.counters.sent - sent_before;

    let fail = |world: &World, why: String| -> String {
        let tail = world.log.len().saturating_sub(150);
        format!(
            "seed {seed} FAILED: {why}\n  replay: SIM_SEED={seed} cargo test --test sim -- --nocapture\n\
             events:\n{}\nnodes:\n{}",
            world.log[tail..].join("\n"),
            world.describe_nodes()
        )
    };
    let Some(converged_at) = converged_at else {
        return Err(fail(
            &world,
            format!("no convergence within {HEAL_LIMIT_MS} ms of healing"),
        ));
    };
    let converge_ms = converged_at - heal_start;

    // ---- verify ----
    let reference = ids_in_order(world.nodes[0].peer());
    let ref_totals = world.nodes[0].peer().ledger().totals().clone();
    for i in 0..n {
        let peer = world.nodes[i].peer();
        if ids_in_order(peer) != reference {
            return Err(fail(
                &world,
                format!("n{i}'s ids in replay order differ from n0's"),
            ));
        }
        if *peer.ledger().totals() != ref_totals {
            return Err(fail(&world, format!("n{i}'s totals differ from n0's")));
        }
        if peer.stats().encode_failures > 0 {
            return Err(fail(
                &world,
                format!("n{i} built a message over the datagram limit"),
            ));
        }
        // Every entry's body was handed to the log and is read back from it: the ledger
        // holds none in memory, and reading them all back gives every entry.
        if peer.ledger().resident_len() != 0 {
            return Err(fail(
                &world,
                format!(
                    "n{i} still holds {} entry bodies in memory",
                    peer.ledger().resident_len()
                ),
            ));
        }
        if peer.ledger().iter().count() != peer.ledger().len() {
            return Err(fail(
                &world,
                format!("n{i} cannot read every indexed entry back from its log"),
            ));
        }
        // Totals are the replayed sums of deltas.
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for e in peer.ledger().iter() {
            *sums.entry(e.target.clone()).or_insert(0) += e.delta;
        }
        if sums != ref_totals {
            return Err(fail(
                &world,
                format!("n{i}'s totals are not its sums of deltas"),
            ));
        }
        // The log is the truth: what the node holds is exactly what is on its disk, each
        // record once.
        let node = &world.nodes[i];
        let on_disk: Vec<EntryId> = node
            .durable
            .iter()
            .chain(node.unsynced.iter())
            .map(|e| e.id)
            .collect();
        let disk_set: BTreeSet<EntryId> = on_disk.iter().copied().collect();
        let held: BTreeSet<EntryId> = reference.iter().copied().collect();
        if disk_set != held {
            return Err(fail(
                &world,
                format!(
                    "n{i} holds {} entries but its disk has {} distinct",
                    held.len(),
                    disk_set.len()
                ),
            ));
        }
        if on_disk.len() != disk_set.len() {
            // A record is re-learned after a crash only if its copy was torn off, so a
            // duplicate means the peer asked to persist an entry it already held.
            return Err(fail(&world, format!("n{i}'s disk holds duplicate records")));
        }
    }
    let held: BTreeSet<EntryId> = reference.iter().copied().collect();
    let mut lost_by_restore = 0;
    for (id, author) in &acknowledged {
        if held.contains(id) {
            continue;
        }
        if excused.contains(id) {
            lost_by_restore += 1;
            continue;
        }
        return Err(fail(
            &world,
            format!(
                "acknowledged entry {id} (made on {}) is lost",
                author.map_or("the old log".into(), |a| format!("n{a}"))
            ),
        ));
    }
    if held.iter().any(|id| !acknowledged.contains_key(id)) {
        return Err(fail(&world, "a node holds an entry nobody made".into()));
    }
    if world.counters.timer_spins > 0 {
        return Err(fail(
            &world,
            "poll_timeout stayed due after handle_timeout ran (a daemon would spin)".into(),
        ));
    }
    if world.counters.unknown_dest > 0 {
        return Err(fail(
            &world,
            "a datagram was sent to an unknown address".into(),
        ));
    }
    let ceiling = heal_ceiling(n, converge_ms, reference.len(), missing);
    if heal_datagrams > ceiling {
        return Err(fail(
            &world,
            format!(
                "{heal_datagrams} datagrams during healing exceed the ceiling {ceiling} \
                 (n {n}, converged in {converge_ms} ms, {missing} entries missing at heal)"
            ),
        ));
    }
    if lost_by_restore > 0 {
        world.note(format!(
            "{lost_by_restore} acknowledged entries existed only on the restored node and are gone"
        ));
    }
    world.note(format!(
        "converged {converge_ms} ms after healing: {} entries, {heal_datagrams} datagrams \
         (ceiling {ceiling}, {missing} missing at heal)",
        reference.len()
    ));
    Ok(SeedReport {
        seed,
        nodes: n,
        entries: reference.len(),
        converge_ms,
        heal_datagrams,
        heal_ceiling: ceiling,
        crashes,
        torn,
        restores,
        missing,
        lost_by_restore,
        trace: world.trace.unwrap_or(0),
    })
}

fn env_u64(name: &str) -> Option<u64> {
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

/// The seed sweep: `SIM_SEED=n` runs exactly that seed, otherwise `SIM_SEEDS` seeds (300 by
/// default) from `SIM_SEED_START` (0), spread over `SIM_THREADS` (2) threads.
#[test]
fn sim_sweep() {
    let single = env_u64("SIM_SEED");
    let seeds: Vec<u64> = match single {
        Some(seed) => vec![seed],
        None => {
            let start = env_u64("SIM_SEED_START").unwrap_or(0);
            let count = env_u64("SIM_SEEDS").unwrap_or(300);
            (start..start + count).collect()
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
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<SeedReport, String>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(seeds.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(k) else {
                    break;
                };
                let outcome = std::panic::catch_unwind(|| run_seed(seed, verbose, false))
                    .unwrap_or_else(|panic| {
                        Err(format!(
                            "seed {seed} PANICKED: {}\n  replay: SIM_SEED={seed} cargo test --test sim -- --nocapture",
                            panic_message(panic)
                        ))
                    });
                match &outcome {
                    Err(report) => eprintln!("{report}"),
                    Ok(r) if std::env::var_os("SIM_CSV").is_some() => eprintln!(
                        "csv,{},{},{},{},{},{}",
                        r.seed, r.nodes, r.entries, r.converge_ms, r.missing, r.heal_datagrams
                    ),
                    Ok(_) => {}
                }
                results.lock().unwrap().push(outcome);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let ok: Vec<&SeedReport> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let runs = ok.len().max(1) as u64;
    let slowest = ok
        .iter()
        .max_by_key(|r| r.converge_ms)
        .map_or("-".into(), |r| {
            format!("seed {}, {} nodes", r.seed, r.nodes)
        });
    let max_ms = ok.iter().map(|r| r.converge_ms).max().unwrap_or(0);
    let avg_ms = ok.iter().map(|r| r.converge_ms).sum::<u64>() / runs;
    let max_dg = ok.iter().map(|r| r.heal_datagrams).max().unwrap_or(0);
    let avg_dg = ok.iter().map(|r| r.heal_datagrams).sum::<u64>() / runs;
    let worst_ratio = ok
        .iter()
        .map(|r| r.heal_datagrams as f64 / r.heal_ceiling as f64)
        .fold(0.0, f64::max);
    let summary = format!(
        "sim: {} seeds run ({} failed) in {:.1} s: converge max {} ms ({}) avg {} ms after healing; \
         heal datagrams max {} avg {} (worst {:.0}% of ceiling); entries avg {}; {} entries missing at heal avg; \
         {} crashes ({} torn tails), {} restores, {} acknowledged entries lost with a restored node",
        results.len(),
        failed.len(),
        started.elapsed().as_secs_f64(),
        max_ms,
        slowest,
        avg_ms,
        max_dg,
        avg_dg,
        worst_ratio * 100.0,
        ok.iter().map(|r| r.entries as u64).sum::<u64>() / runs,
        ok.iter().map(|r| r.missing as u64).sum::<u64>() / runs,
        ok.iter().map(|r| r.crashes).sum::<u32>(),
        ok.iter().map(|r| r.torn).sum::<u32>(),
        ok.iter().map(|r| r.restores).sum::<u32>(),
        ok.iter().map(|r| r.lost_by_restore).sum::<usize>(),
    );
    // Straight to stderr, past the test harness's capture: the one line CI should show.
    let _ = writeln!(std::io::stderr(), "{summary}");
    if single.is_some() {
        if let Some(r) = ok.first() {
            eprintln!("{r:?}");
        }
    }
    if failed.is_empty() && results.len() >= 100 {
        // The sweep must have stressed something: most runs still diverged when healing
        // began (measured: ~91 %), crashes tore unsynced tails, restores happened, and
        // what a restore legitimately destroyed stays a tiny part of what was acknowledged.
        let diverged = ok.iter().filter(|r| r.missing > 0).count();
        assert!(
            diverged * 10 >= ok.len() * 7,
            "only {diverged} runs diverged: {summary}"
        );
        assert!(ok.iter().map(|r| r.torn).sum::<u32>() > 0, "{summary}");
        assert!(ok.iter().map(|r| r.restores).sum::<u32>() > 0, "{summary}");
        let entries: usize = ok.iter().map(|r| r.entries).sum();
        let lost: usize = ok.iter().map(|r| r.lost_by_restore).sum();
        assert!(lost * 100 <= entries, "{lost} lost of {entries}: {summary}");
    }
    if !failed.is_empty() {
        let mut seeds: Vec<&str> = failed
            .iter()
            .filter_map(|f| f.split_whitespace().nth(1))
            .collect();
        seeds.sort();
        panic!(
            "{} of {} seeds failed: {}\nreplay one with: SIM_SEED=<n> cargo test --test sim -- --nocapture",
            failed.len(),
            results.len(),
            seeds.join(", ")
        );
    }
}

/// A seed replays exactly: same datagrams, in the same order, with the same bytes.
#[test]
fn same_seed_replays_identically() {
    for seed in [7, 1234] {
        let a = run_seed(seed, false, true).unwrap_or_else(|e| panic!("{e}"));
        let b = run_seed(seed, false, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.trace, b.trace, "seed {seed} did not replay identically");
        assert_eq!(
            (a.converge_ms, a.heal_datagrams, a.entries),
            (b.converge_ms, b.heal_datagrams, b.entries)
        );
    }
}

/// `count` old entries for `players`, one a minute (as a long-running guild's log).
fn history(rng: &mut SeededRng, count: usize, players: usize) -> Vec<Entry> {
    (0..count)
        .map(|k| {
            let target = format!("player{}", k % players);
            let at = BASE_UNIX_MS - 400 * 86_400_000 + k as u64 * 60_000;
            old_entry(rng, at, "officer-old", &target, k)
        })
        .collect()
}

/// How many LOG_ENTRY datagrams the log takes when packed as tightly as the wire allows.
fn log_datagrams(entries: &[Entry]) -> u64 {
    wire::pack_log_entries(GROUP_NAME, 1, WHISPER_BASE_PORT, entries).len() as u64
}

/// A large catch-up over a lossy link: one peer holds 20,000 entries, the other none, 10 %
/// of datagrams are lost each way. The transfer must complete (loss repaired by re-asking
/// for unanswered spans), stay paced (the receiver's socket buffer never overflows), and
/// not cost much more than the log's own size in datagrams.
#[test]
fn twenty_thousand_entries_reach_an_empty_peer_over_a_lossy_link() {
    let mut rng = SeededRng::new(20_000);
    let log = history(&mut rng, 20_000, 40);
    let packed = log_datagrams(&log);
    let nodes = vec![Node::new(0, log), Node::new(0, Vec::new())];
    let loss = vec![vec![0.10; 2]; 2];
    let mut world = World::new(nodes, SeededRng::new(rng.next_u64()), loss, 0.0);
    world.start_node(0, 1);
    world.start_node(1, 2);
    let converged = world.run_until_converged(600_000, 10);
    let report = world.describe_nodes();
    let Some(at) = converged else {
        panic!("no convergence in 600 s of virtual time:\n{report}");
    };
    let c = &world.counters;
    eprintln!(
        "20k catch-up at 10% loss: {at} ms, {} datagrams ({} group, {} whisper), the log packs \
         into {packed}; lost {}, overflow {}",
        c.sent, c.sent_group, c.sent_to, c.lost, c.overflow
    );
    let a = world.nodes[0].peer();
    let b = world.nodes[1].peer();
    assert_eq!(b.ledger().len(), 20_000, "{report}");
    assert_eq!(ids_in_order(a), ids_in_order(b));
    assert_eq!(a.ledger().totals(), b.ledger().totals());
    assert_eq!(
        c.overflow, 0,
        "pacing: a receive buffer overflowed\n{report}"
    );
    // Measured: see the eprintln above. Bound: the log twice over (it may travel both as
    // session responses and as pushed LOG_ENTRY while both sides reconcile) plus a quarter
    // for requests, HELLOs and re-sends of lost answers.
    assert!(
        c.sent <= packed * 9 / 4,
        "{} datagrams for a log of {packed}\n{report}",
        c.sent
    );
    assert!(at <= 60_000, "took {at} ms\n{report}");
}

/// Twelve peers in sync and one empty joiner: the joiner pulls from one of them. The twelve
/// (the majority) do not start sessions of their own, and the log reaches the joiner about
/// once, not twelve times.
#[test]
fn empty_joiner_pulls_from_one_of_twelve_peers_in_sync() {
    let mut rng = SeededRng::new(12);
    let log = history(&mut rng, 600, 20);
    let packed = log_datagrams(&log);
    let mut nodes: Vec<Node> = (0..12).map(|_| Node::new(0, log.clone())).collect();
    nodes.push(Node::new(0, Vec::new()));
    let loss = vec![vec![0.05; 13]; 13];
    let mut world = World::new(nodes, SeededRng::new(rng.next_u64()), loss, 0.01);
    for i in 0..12 {
        world.start_node(i, 100 + i as u64);
    }
    world.run_until(3_000);
    let before = world.counters.clone();
    world.start_node(12, 99);
    let converged = world.run_until_converged(30_000, 10);
    let report = world.describe_nodes();
    let Some(at) = converged else {
        panic!("joiner did not catch up:\n{report}");
    };
    let to_joiner = world.counters.sent_to_node[12];
    let sessions: u64 = (0..12)
        .map(|i| world.nodes[i].peer().stats().sessions_started)
        .sum();
    let pushed: u64 = (0..12)
        .map(|i| world.nodes[i].peer().stats().entries_pushed)
        .sum();
    let joiner = world.nodes[12].peer().stats().clone();
    eprintln!(
        "joiner caught up in {} ms: {to_joiner} whisper datagrams to it (log packs into \
         {packed}), {} datagrams in all, joiner sessions {}/{}, peers' sessions {sessions}",
        at - 3_000,
        world.counters.sent - before.sent,
        joiner.sessions_started,
        joiner.sessions_completed,
    );
    assert_eq!(world.nodes[12].peer().ledger().len(), 600);
    assert_eq!(
        ids_in_order(world.nodes[0].peer()),
        ids_in_order(world.nodes[12].peer())
    );
    assert_eq!(
        sessions, 0,
        "the in-sync majority never starts sessions\n{report}"
    );
    assert_eq!(
        pushed, 0,
        "nothing to push: the joiner has nothing new\n{report}"
    );
    assert!(
        joiner.sessions_started <= 2,
        "the joiner reconciles with one peer\n{report}"
    );
    // One copy of the log plus re-sends under 5 % loss, 12 probe summaries and slack: far
    // under the 12 copies a naive "everyone answers the joiner" would send.
    assert!(
        to_joiner <= packed * 3 / 2 + 12 + 20,
        "{to_joiner} datagrams to the joiner for a log of {packed}\n{report}"
    );
    assert!(to_joiner < 12 * packed / 4);
}

/// A daemon restarted on the same whisper address (a new node id) is reconciled with at
/// once: its previous incarnation, still in the peer table until `peer_timeout`, must not
/// be chosen as a partner. (Every answer from the new process would be dropped as coming
/// from the wrong node; and a restarted majority member never starts a session itself, so
/// the minority node would wait for the dead id to time out.)
#[test]
fn peer_restarted_on_the_same_address_is_not_shadowed_by_its_old_incarnation() {
    let mut slowest = 0;
    for seed in 0..20u64 {
        let mut rng = SeededRng::new(seed);
        let log = history(&mut rng, 50, 5);
        let mut newer = log.clone();
        newer.extend(history(&mut rng, 5, 5));
        // n1 and n2 agree (the majority); n0 lacks five entries.
        let nodes = vec![
            Node::new(0, log),
            Node::new(0, newer.clone()),
            Node::new(0, newer),
        ];
        let mut world = World::new(
            nodes,
            SeededRng::new(rng.next_u64()),
            vec![vec![0.0; 3]; 3],
            0.0,
        );
        // At first n0 hears only n1 and cannot reach it: n0 starts a session with n1 that
        // gets no answers.
        world.blocked = vec![
            vec![false, true, true],
            vec![false, false, false],
            vec![true, false, false],
        ];
        for i in 0..3 {
            world.start_node(i, 10 * seed + i as u64);
        }
        world.run_until(900);
        assert!(
            world.nodes[0].peer().in_session(),
            "seed {seed}: n0 is asking n1"
        );
        // n1 restarts (same entries, same address, new node id); the network heals.
        world.crash(1, 0);
        world.start_node(1, 10 * seed + 3);
        world.blocked = vec![vec![false; 3]; 3];
        let restart = world.now;
        let at = world
            .run_until_converged(30_000, 10)
            .unwrap_or_else(|| panic!("seed {seed}: no convergence\n{}", world.describe_nodes()));
        slowest = slowest.max(at - restart);
    }
    // Measured: at most 170 ms over these 20 runs. Before the fix in `touch_peer`, 4 of the
    // 20 took ~1.1 s (a session with the dead id until it gave up on silence), and worse
    // runs wait for the old incarnation to time out.
    assert!(slowest < 500, "converged {slowest} ms after the restart");
}

/// A roster change signed by `root`, stamped `unix_ms`.
fn roster_change(
    rng: &mut SeededRng,
    root: &SecretKey,
    unix_ms: u64,
    name: &str,
    kind: EntryKind,
) -> Entry {
    let mut entry = Entry {
        id: new_entry_id(unix_ms, rng.bytes()),
        at: Hlc::new(unix_ms, 0),
        actor: "root".into(),
        target: name.into(),
        delta: 0,
        new_total: 0,
        reason: "roster".into(),
        kind,
        seal: None,
    };
    root.sign(&mut entry);
    entry
}

/// A roster race in the simulator: with a root key, four officers adjust on four nodes split
/// into two partitions; meanwhile one side removes officer 3 and the other removes officer 0
/// and re-adds officer 3 under a new key. After healing (with loss), every node must hold the
/// same set and the same totals, rejected count and history, and those must be what a single
/// ledger holding the union computes.
#[test]
fn roster_race_across_a_partition_resolves_identically_everywhere() {
    let root = SecretKey::from_seed([200; 32]);
    let mut outcomes = BTreeSet::new();
    for seed in 0..8u64 {
        let mut rng = SeededRng::new(seed ^ 0x0ff1ce);
        let officers: Vec<SecretKey> = (0..4)
            .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
            .collect();
        let log: Vec<Entry> = officers
            .iter()
            .enumerate()
            .map(|(i, key)| {
                roster_change(
                    &mut rng,
                    &root,
                    BASE_UNIX_MS - 10_000,
                    &format!("officer{i}"),
                    EntryKind::OfficerAdd {
                        public_key: key.public(),
                    },
                )
            })
            .collect();
        let nodes: Vec<Node> = (0..4)
            .map(|i| {
                let mut node = Node::new(rng.below(2_000) as i64 - 1_000, log.clone());
                node.security = (
                    Some(root.public()),
                    Some(Arc::new(SecretKey::from_seed([i as u8 + 1; 32]))),
                );
                node
            })
            .collect();
        let loss = vec![vec![0.1; 4]; 4];
        let mut world = World::new(nodes, SeededRng::new(rng.next_u64()), loss, 0.02);
        for i in 0..4 {
            world.start_node(i, 100 * seed + i as u64);
        }
        world.run_until(1_000);
        // Partition {0, 1} | {2, 3}.
        for i in 0..4 {
            for j in 0..4 {
                world.blocked[i][j] = (i < 2) != (j < 2);
            }
        }
        let request = |i: usize, k: usize| AdjustRequest {
            actor: format!("officer{i}"),
            target: format!("P{}", k % 3),
            delta: 1 + k as i64,
            reason: format!("r{k}"),
        };
        let mut k = 0;
        let mut readd_wins = false;
        let mut kept0 = Vec::new();
        for round in 0..6 {
            for i in 0..4 {
                // An officer whose own node has heard of their removal cannot adjust there.
                let now = world.now_of(i);
                if let Ok(entry) = world.nodes[i]
                    .peer
                    .as_mut()
                    .unwrap()
                    .prepare_adjust(now, &request(i, k))
                {
                    world.append_local(i, entry);
                }
                k += 1;
            }
            if round == 2 {
                let t = world.now_of(1).unix_ms;
                let remove3 =
                    roster_change(&mut rng, &root, t, "officer3", EntryKind::OfficerRemove);
                let remove3_key = remove3.key();
                world.append_local(1, remove3);
                // Officer 0 is removed by revocation, keeping the entries of theirs that
                // count on node 2; node 0, across the partition, keeps signing for them.
                let t = world.now_of(2).unix_ms;
                kept0 = world.nodes[2]
                    .peer()
                    .ledger()
                    .history(None)
                    .into_iter()
                    .filter(|row| {
                        row.rejected.is_none()
                            && row.entry.kind == EntryKind::Points
                            && row.entry.seal.map(|s| s.signer) == Some(officers[0].public())
                    })
                    .map(|row| row.entry.digest())
                    .collect();
                let revoke0 = roster_change(
                    &mut rng,
                    &root,
                    t,
                    "officer0",
                    EntryKind::OfficerRevoke {
                        public_key: officers[0].public(),
                        batch: [seed as u8; 8],
                        part: 0,
                        parts: 1,
                        keep: kept0.clone(),
                    },
                );
                world.append_local(2, revoke0);
                let new3 = SecretKey::from_seed([50; 32]);
                let readd3 = roster_change(
                    &mut rng,
                    &root,
                    t + 1,
                    "officer3",
                    EntryKind::OfficerAdd {
                        public_key: new3.public(),
                    },
                );
                // Which of the racing changes to officer3 wins depends only on their keys.
                readd_wins = readd3.key() > remove3_key;
                world.append_local(2, readd3);
            }
            let until = world.now + 200 + rng.below(300);
            world.run_until(until);
        }
        world.blocked = vec![vec![false; 4]; 4];
        world
            .run_until_converged(HEAL_LIMIT_MS, 10)
            .unwrap_or_else(|| panic!("seed {seed}: no convergence\n{}", world.describe_nodes()));
        let mut union = Ledger::from_entries(world.nodes[0].peer().ledger().iter()).0;
        union.set_root(Some(root.public()));
        assert!(
            union.rejected() > 0,
            "seed {seed}: the race rejected something"
        );
        for i in 0..4 {
            let ledger = world.nodes[i].peer().ledger();
            assert_eq!(ledger.totals(), union.totals(), "seed {seed} node {i}");
            assert_eq!(ledger.rejected(), union.rejected(), "seed {seed} node {i}");
            assert_eq!(ledger.officers(), union.officers(), "seed {seed} node {i}");
            assert_eq!(
                ledger.history(None),
                union.history(None),
                "seed {seed} node {i}"
            );
        }
        // Exactly the entries of officer 0 the revocation kept still count.
        let counting0: Vec<_> = union
            .history(None)
            .into_iter()
            .filter(|row| {
                row.rejected.is_none()
                    && row.entry.seal.map(|s| s.signer) == Some(officers[0].public())
            })
            .map(|row| row.entry.digest())
            .collect();
        assert_eq!(counting0, kept0, "seed {seed}");
        // Officer 0 was removed; officer 3 is back (with the new key) only if the re-add
        // sorts after the concurrent removal.
        let names: Vec<String> = union.officers().into_keys().collect();
        let mut expected = vec!["officer1", "officer2"];
        if readd_wins {
            expected.push("officer3");
        }
        assert_eq!(names, expected, "seed {seed}");
        outcomes.insert(readd_wins);
    }
    assert_eq!(
        outcomes.len(),
        2,
        "the seeds cover both winners of the race"
    );
}
