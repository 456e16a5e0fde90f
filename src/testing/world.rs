//! [`World`]: sans-IO peers on a simulated network, in virtual time, driven the way the
//! daemon drives one: datagrams through `handle_datagram`, timers through
//! `poll_timeout`/`handle_timeout`, `drain_actions` after every call.
//!
//! The network delivers each datagram after a delay drawn from a range (which reorders),
//! and may lose, duplicate or block it per link. Optionally each node reads its socket at a
//! finite rate from a finite buffer, so a sender that does not pace itself overflows it.
//! What a peer asks to persist goes to a [`Disk`]; the default one drops it (the peer keeps
//! the bodies in memory). Every network decision comes from one seeded generator, so a
//! world replays exactly.

use super::network::{NetCounters, Network, Route};
use crate::core::ledger::ReplayResult;
use crate::core::rng::SeededRng;
use crate::core::sync::{Action, Channel, Now, Peer};
use crate::proto::batch::EncodedBatch;
use crate::proto::entry::{AdjustRequest, Entry};
use ::core::net::SocketAddr;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

/// Wall-clock time (Unix ms) at virtual time 0, unless [`World::set_unix_base_ms`] moves it.
pub const BASE_UNIX_MS: u64 = 1_700_000_000_000;

/// Node `i` of a world sends from and receives at 127.0.0.1, port `WHISPER_BASE_PORT + i`.
pub const WHISPER_BASE_PORT: u16 = 20_000;

/// The address node `index` of a world sends from and receives whisper datagrams at; its
/// peer must advertise this port ([`super::PeerConfigBuilder::world_node`]).
pub fn node_addr(index: usize) -> SocketAddr {
    let port = u16::try_from(index)
        .ok()
        .and_then(|i| WHISPER_BASE_PORT.checked_add(i))
        .expect("a world has at most 45,535 nodes");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where the entries a peer asks to persist ([`Action::Persist`]) go.
pub trait Disk {
    /// Node `node`'s peer asked, at virtual time `now_ms`, to persist the entries of
    /// `batch` (encoded, with their keys); the disk may tell the peer where they went
    /// ([`Peer::mark_stored`]).
    fn persist(&mut self, node: usize, peer: &mut Peer, batch: EncodedBatch, now_ms: u64);

    /// The earliest virtual time at which [`Disk::run_due`] has work (a pending group
    /// commit, say).
    fn next_due(&self) -> Option<u64> {
        None
    }

    /// Does the work due at `now_ms`.
    fn run_due(&mut self, _now_ms: u64) {}
}

/// A disk that keeps nothing: the peers hold every entry in memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDisk;

impl Disk for NoDisk {
    fn persist(&mut self, _: usize, _: &mut Peer, _: EncodedBatch, _: u64) {}
}

/// One datagram on its way. Ordered by (deliver time, sequence number): the sequence number
/// is unique, so the ordering never looks at the bytes and equal times keep send order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: u64,
    seq: u64,
    to: usize,
    group: bool,
    from: usize,
    /// The source address the receiver sees (a NAT may have rewritten it).
    src: SocketAddr,
    bytes: Rc<Vec<u8>>,
}

/// One simulated machine: its peer (while running), clock and receive socket.
struct Node {
    peer: Option<Peer>,
    addr: SocketAddr,
    /// Virtual time the running peer started: its monotonic clock counts from here (a
    /// restarted daemon's monotonic clock starts again at 0, as the real one does).
    started_at: u64,
    /// How far this machine's wall clock is off.
    skew_ms: i64,
    /// Next virtual time `handle_timeout` is due (from `poll_timeout`).
    wake: Option<u64>,
    rx: VecDeque<Delivery>,
    rx_bytes: usize,
    /// The virtual ms `rx_done` counts in.
    rx_ms: u64,
    rx_done: usize,
    /// Replays handed out by the peer, run at once on their snapshot, with the virtual time
    /// each result is taken back (see [`World::defer_replays`]).
    replays: VecDeque<(u64, ReplayResult)>,
}

/// Peers on a simulated network, in virtual time. See the module docs.
pub struct World<D: Disk = NoDisk> {
    now: u64,
    nodes: Vec<Node>,
    /// Each node by its own address.
    by_addr: HashMap<SocketAddr, usize>,
    in_flight: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    /// Network decisions (loss, duplication, delay) only.
    rng: SeededRng,
    unix_base_ms: u64,
    /// Hash of every datagram sent, in order; `None` until [`World::trace_datagrams`].
    trace: Option<u64>,
    /// Every datagram sent, in order; `None` until [`World::record_datagrams`].
    recorded: Option<Vec<Vec<u8>>>,
    /// How the network treats datagrams; change it at any time.
    pub net: Network,
    /// What happened on the network.
    pub counters: NetCounters,
    /// Where persisted entries go.
    pub disk: D,
    /// Runs every peer call inside a tracing span naming the node and the virtual time, so
    /// the peers' own log lines say who and when.
    pub verbose: bool,
    /// How long a replay handed out by a peer takes, in virtual ms; `None`: peers replay
    /// at once, inside the call that needs it.
    replay_ms: Option<u64>,
    /// How many replays peers handed out (with [`World::defer_replays`]).
    pub replays_run: u64,
}

impl World<NoDisk> {
    /// An empty world on a [`Network::lan`], its network decisions drawn from `rng`.
    pub fn new(rng: SeededRng) -> World<NoDisk> {
        World::with_disk(NoDisk, rng)
    }

    /// `peers` (node `i` advertising [`node_addr`]`(i)`'s port) on a LAN, each started in
    /// turn: the usual test set-up.
    pub fn started(peers: Vec<Peer>) -> World<NoDisk> {
        let mut world = World::new(SeededRng::new(0));
        for peer in peers {
            world.insert(peer);
        }
        for i in 0..world.nodes.len() {
            world.start(i);
        }
        world
    }
}

impl<D: Disk> World<D> {
    /// An empty world on a [`Network::lan`] whose peers persist to `disk`.
    pub fn with_disk(disk: D, rng: SeededRng) -> World<D> {
        World {
            now: 0,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            in_flight: BinaryHeap::new(),
            seq: 0,
            rng,
            unix_base_ms: BASE_UNIX_MS,
            trace: None,
            recorded: None,
            net: Network::lan(),
            counters: NetCounters::default(),
            disk,
            verbose: false,
            replay_ms: None,
            replays_run: 0,
        }
    }

    /// Moves wall-clock time at virtual time 0 to `unix_ms`.
    pub fn set_unix_base_ms(&mut self, unix_ms: u64) {
        self.unix_base_ms = unix_ms;
    }

    /// Starts hashing every datagram sent (time, sender, receiver, bytes), to show that a
    /// run replays exactly.
    pub fn trace_datagrams(&mut self) {
        self.trace.get_or_insert(0xcbf2_9ce4_8422_2325);
    }

    /// The hash of every datagram sent since [`World::trace_datagrams`].
    pub fn trace(&self) -> Option<u64> {
        self.trace
    }

    /// Virtual time (ms).
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// How many nodes there are, up or down.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the world has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Makes every peer (running now or booted later) hand its replays out, as the daemon's
    /// do ([`Peer::defer_replays`]): each is run on its snapshot when handed out and its
    /// result taken back `replay_ms` virtual ms later, with the peer working on meanwhile.
    pub fn defer_replays(&mut self, replay_ms: u64) {
        self.replay_ms = Some(replay_ms);
        for node in &mut self.nodes {
            if let Some(peer) = node.peer.as_mut() {
                peer.defer_replays(true);
            }
        }
    }

    /// Adds a machine, down until [`World::boot`], whose wall clock is `skew_ms` off;
    /// returns its index.
    pub fn add_node(&mut self, skew_ms: i64) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node {
            peer: None,
            addr: node_addr(index),
            started_at: self.now,
            skew_ms,
            wake: None,
            rx: VecDeque::new(),
            rx_bytes: 0,
            rx_ms: 0,
            rx_done: 0,
            replays: VecDeque::new(),
        });
        self.by_addr.entry(node_addr(index)).or_insert(index);
        self.net.add_node();
        self.counters.sent_to_node.push(0);
        index
    }

    /// Adds a machine running `peer`, whose monotonic clock reads the world's virtual time
    /// (so a peer built and used at `mono_ms` t before joins a world at t or later). It is
    /// not started: its timers run and what it has queued goes out, but it has not announced
    /// itself. Returns its index.
    pub fn insert(&mut self, peer: Peer) -> usize {
        self.insert_at(node_addr(self.nodes.len()), peer)
    }

    /// [`World::insert`], the node sending from and receiving at `addr` instead of
    /// [`node_addr`] (the peer must advertise `addr`'s port).
    pub fn insert_at(&mut self, addr: SocketAddr, peer: Peer) -> usize {
        let index = self.add_node(0);
        if self.by_addr.get(&self.nodes[index].addr) == Some(&index) {
            self.by_addr.remove(&self.nodes[index].addr);
        }
        self.nodes[index].addr = addr;
        self.by_addr.insert(addr, index);
        self.nodes[index].started_at = 0;
        self.nodes[index].peer = Some(peer);
        self.defer_if_asked(index);
        self.dispatch(index);
        index
    }

    /// The peers, in node order, taken out of the world (to feed them datagrams by hand);
    /// panics when a node is down.
    pub fn into_peers(self) -> Vec<Peer> {
        self.nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| node.peer.unwrap_or_else(|| panic!("node {i} is down")))
            .collect()
    }

    /// Starts keeping a copy of every datagram sent, as an eavesdropper would.
    pub fn record_datagrams(&mut self) {
        self.recorded.get_or_insert_with(Vec::new);
    }

    /// The datagrams sent since [`World::record_datagrams`], in order.
    pub fn recorded_datagrams(&self) -> &[Vec<u8>] {
        self.recorded.as_deref().unwrap_or_default()
    }

    /// Starts node `i`'s peer: it announces itself and asks who differs.
    pub fn start(&mut self, i: usize) {
        self.act(i, |peer, now| peer.start(now));
    }

    /// Starts a new process on node `i` (which must be down): its monotonic clock starts at
    /// 0, `make` builds its peer for that time, and the peer is started.
    pub fn boot(&mut self, i: usize, make: impl FnOnce(Now) -> Peer) {
        assert!(!self.is_up(i), "node {i} is already running");
        let node = &mut self.nodes[i];
        node.started_at = self.now;
        node.rx.clear();
        node.rx_bytes = 0;
        let now = self.now_of(i);
        let _span = self.span(i);
        let mut peer = make(now);
        peer.start(now);
        self.nodes[i].peer = Some(peer);
        self.defer_if_asked(i);
        self.dispatch(i);
    }

    /// kill -9: node `i`'s peer and its socket buffer vanish.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.peer = None;
        node.wake = None;
        node.rx.clear();
        node.rx_bytes = 0;
        node.replays.clear();
    }

    /// Node `i`'s new peer hands its replays out if [`World::defer_replays`] asked.
    fn defer_if_asked(&mut self, i: usize) {
        if self.replay_ms.is_some() {
            if let Some(peer) = self.nodes[i].peer.as_mut() {
                peer.defer_replays(true);
            }
        }
    }

    /// Whether node `i` runs a peer.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].peer.is_some()
    }

    /// The nodes running a peer.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// Node `i`'s peer; panics when it is down.
    pub fn peer(&self, i: usize) -> &Peer {
        self.try_peer(i)
            .unwrap_or_else(|| panic!("node {i} is down"))
    }

    /// Node `i`'s peer, if it runs.
    pub fn try_peer(&self, i: usize) -> Option<&Peer> {
        self.nodes[i].peer.as_ref()
    }

    /// How far node `i`'s wall clock is off.
    pub fn skew_ms(&self, i: usize) -> i64 {
        self.nodes[i].skew_ms
    }

    /// The time as node `i` sees it.
    pub fn now_of(&self, i: usize) -> Now {
        let node = &self.nodes[i];
        Now {
            mono_ms: self.now - node.started_at,
            unix_ms: ((self.unix_base_ms + self.now) as i64 + node.skew_ms) as u64,
        }
    }

    /// Calls `f` on node `i`'s running peer with its time, then sends what it queued.
    pub fn act<R>(&mut self, i: usize, f: impl FnOnce(&mut Peer, Now) -> R) -> R {
        let now = self.now_of(i);
        let _span = self.span(i);
        let peer = self.nodes[i]
            .peer
            .as_mut()
            .unwrap_or_else(|| panic!("node {i} is down"));
        let result = f(peer, now);
        self.dispatch(i);
        result
    }

    /// Node `i` makes `request` as a local adjust and commits it at once (what a durable
    /// adjust through the daemon does), and sends what that produces; the entry made.
    ///
    /// # Panics
    /// When `request` is not a valid adjust (a test's own input) or node `i` is down.
    pub fn adjust(&mut self, i: usize, request: &AdjustRequest) -> Entry {
        self.act(i, |peer, now| {
            let entry = peer
                .prepare_adjust(now, request)
                .expect("the test's adjust is valid");
            peer.commit_local(now, entry.clone());
            entry
        })
    }

    /// Whether every node runs, all hold the same set, and none has totals waiting for a
    /// replay.
    pub fn converged(&self) -> bool {
        if self
            .nodes
            .iter()
            .any(|n| n.peer.as_ref().is_some_and(|p| p.ledger().replay_pending()))
        {
            return false;
        }
        let mut fingerprints = self
            .nodes
            .iter()
            .map(|n| n.peer.as_ref().map(|p| p.ledger().fingerprint()));
        let Some(Some(first)) = fingerprints.next() else {
            return false;
        };
        fingerprints.all(|fp| fp == Some(first))
    }

    /// Whether nothing is on its way or waiting to be read, and no peer is reconciling or
    /// pushing: only heartbeats are left to happen.
    pub fn quiet(&self) -> bool {
        self.in_flight.is_empty()
            && self.nodes.iter().all(|node| {
                node.rx.is_empty()
                    && node.replays.is_empty()
                    && node
                        .peer
                        .as_ref()
                        .is_none_or(|p| !p.in_session() && !p.pushing())
            })
    }

    /// Runs the network and every node up to and including virtual time `until`.
    pub fn run_until(&mut self, until: u64) {
        while let Some(t) = self.next_time() {
            if t > until {
                break;
            }
            self.step(t);
        }
        self.now = self.now.max(until);
    }

    /// Runs until all sets agree, looking every `check_every_ms`; returns when they did, or
    /// `None` when `limit_ms` passed first.
    pub fn run_until_converged(&mut self, limit_ms: u64, check_every_ms: u64) -> Option<u64> {
        let deadline = self.now + limit_ms;
        loop {
            if self.converged() {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            let next = (self.now + check_every_ms).min(deadline);
            self.run_until(next);
        }
    }

    /// Runs event by event until the world is [`World::quiet`]; returns when it was, or
    /// `None` when `limit_ms` passed first.
    pub fn run_until_quiet(&mut self, limit_ms: u64) -> Option<u64> {
        let deadline = self.now + limit_ms;
        loop {
            if self.quiet() {
                return Some(self.now);
            }
            match self.next_time() {
                Some(t) if t <= deadline => self.step(t),
                _ => return None,
            }
        }
    }

    /// [`World::run_until_quiet`] within ten virtual minutes, or a panic showing the nodes.
    pub fn settle(&mut self) -> u64 {
        self.run_until_quiet(600_000)
            .unwrap_or_else(|| panic!("not quiet after 10 minutes:\n{}", self.describe()))
    }

    /// One line per node (set, sessions, counters) and the network counters, for failure
    /// reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(p) = &node.peer else {
                let _ = writeln!(out, "  n{i}: down");
                continue;
            };
            let s = p.stats();
            let _ = writeln!(
                out,
                "  n{i}: fp {} entries {} skew {:+}h sync {} session {} pushing {} peers {} \
                 sessions {}/{}/{} merged {} pushed {} sent {} recv {} dropped {:?}",
                p.ledger().fingerprint().short(),
                p.ledger().len(),
                node.skew_ms as f64 / 3_600_000.0,
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
            );
        }
        let _ = writeln!(out, "  network: {:?}", self.counters);
        out
    }

    /// With [`World::verbose`], a span naming node `i` and the virtual time.
    fn span(&self, i: usize) -> Option<tracing::span::EnteredSpan> {
        self.verbose
            .then(|| tracing::info_span!("sim", node = i, t = self.now).entered())
    }

    /// Executes node `i`'s pending actions and refreshes its timer.
    fn dispatch(&mut self, i: usize) {
        let Some(peer) = self.nodes[i].peer.as_mut() else {
            return;
        };
        for action in peer.drain_actions() {
            match action {
                Action::SendGroup(bytes) => {
                    self.counters.sent += 1;
                    self.counters.sent_group += 1;
                    self.note_sent(i, usize::MAX, &bytes);
                    let bytes = Rc::new(bytes);
                    let src = self.nodes[i].addr;
                    for j in 0..self.nodes.len() {
                        if self.net.multicast_reaches(i, j) {
                            self.transmit(i, j, true, src, &bytes);
                        }
                    }
                }
                Action::SendTo(addr, bytes) => {
                    self.counters.sent += 1;
                    self.counters.sent_to += 1;
                    let from_addr = self.nodes[i].addr;
                    match self.net.route(self.now, i, from_addr, addr, &self.by_addr) {
                        Route::Deliver { to, seen_from } => {
                            self.counters.sent_to_node[to] += 1;
                            self.note_sent(i, to, &bytes);
                            self.transmit(i, to, false, seen_from, &Rc::new(bytes));
                        }
                        Route::Unknown => self.counters.unknown_dest += 1,
                        Route::Unreachable => self.counters.unreachable += 1,
                        Route::NatDropped => self.counters.nat_dropped += 1,
                    }
                }
                Action::Persist(batch) => {
                    self.counters.persisted += batch.len() as u64;
                    if let Some(peer) = self.nodes[i].peer.as_mut() {
                        self.disk.persist(i, peer, batch, self.now);
                    }
                }
            }
        }
        let node = &mut self.nodes[i];
        if let Some(replay_ms) = self.replay_ms {
            if let Some(job) = node.peer.as_mut().and_then(Peer::poll_replay) {
                node.replays.push_back((self.now + replay_ms, job.run()));
                self.replays_run += 1;
            }
        }
        let started_at = node.started_at;
        node.wake = node
            .peer
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .map(|ms| started_at + ms);
    }

    fn note_sent(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.push(bytes.to_vec());
        }
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

    /// Puts one copy (or two, when duplicated) of a datagram on the wire from `from` to `to`.
    fn transmit(
        &mut self,
        from: usize,
        to: usize,
        group: bool,
        src: SocketAddr,
        bytes: &Rc<Vec<u8>>,
    ) {
        if self.net.blocked[from][to] || group && self.net.group_blocked[from][to] {
            self.counters.blocked += 1;
            return;
        }
        if self.rng.chance(self.net.loss[from][to]) {
            self.counters.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.net.duplication) {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        let spread = self.net.max_delay_ms.saturating_sub(self.net.min_delay_ms);
        for _ in 0..copies {
            let at = self.now + self.net.min_delay_ms + self.rng.below(spread + 1);
            self.seq += 1;
            self.in_flight.push(Reverse(Delivery {
                at,
                seq: self.seq,
                to,
                group,
                from,
                src,
                bytes: bytes.clone(),
            }));
        }
    }

    /// Datagrams a node handles per virtual ms.
    fn read_rate(&self) -> usize {
        self.net
            .receive_limit
            .as_ref()
            .map_or(usize::MAX, |limit| limit.per_ms)
    }

    /// The earliest virtual time at which something happens.
    fn next_time(&self) -> Option<u64> {
        let mut next = self.in_flight.peek().map(|Reverse(d)| d.at);
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if let Some(due) = self.disk.next_due() {
            consider(due);
        }
        let read_rate = self.read_rate();
        for node in self.nodes.iter().filter(|node| node.peer.is_some()) {
            if let Some(wake) = node.wake {
                consider(wake);
            }
            if let Some((at, _)) = node.replays.front() {
                consider(*at);
            }
            if !node.rx.is_empty() {
                let busy = node.rx_ms == self.now && node.rx_done >= read_rate;
                consider(if busy { self.now + 1 } else { self.now });
            }
        }
        next.map(|t| t.max(self.now))
    }

    /// Everything that happens at virtual time `t`: arrivals, reads, timers, then the disk.
    fn step(&mut self, t: u64) {
        self.now = t;
        self.arrive(t);
        let read_rate = self.read_rate();
        let overhead = self
            .net
            .receive_limit
            .as_ref()
            .map_or(0, |limit| limit.overhead_bytes);
        // Each node reads its socket at its finite rate.
        for i in 0..self.nodes.len() {
            if !self.is_up(i) {
                continue;
            }
            if self.nodes[i].rx_ms != t {
                self.nodes[i].rx_ms = t;
                self.nodes[i].rx_done = 0;
            }
            while self.nodes[i].rx_done < read_rate {
                let now = self.now_of(i);
                let _span = self.span(i);
                let node = &mut self.nodes[i];
                let Some(d) = node.rx.pop_front() else {
                    break;
                };
                node.rx_done += 1;
                node.rx_bytes -= d.bytes.len() + overhead;
                self.counters.delivered += 1;
                self.counters.bytes_delivered += d.bytes.len() as u64;
                self.counters.last_delivery_ms = t;
                let channel = if d.group {
                    Channel::Group
                } else {
                    Channel::Whisper
                };
                let peer = self.nodes[i].peer.as_mut().expect("up");
                peer.handle_datagram(now, channel, d.src, &d.bytes);
                self.dispatch(i);
            }
        }
        for i in 0..self.nodes.len() {
            while self.nodes[i]
                .replays
                .front()
                .is_some_and(|(at, _)| *at <= t)
            {
                let (_, result) = self.nodes[i].replays.pop_front().expect("peeked");
                self.act(i, |peer, _| peer.handle_replay(result));
            }
        }
        for i in 0..self.nodes.len() {
            if !self.is_up(i) || self.nodes[i].wake.is_none_or(|w| w > t) {
                continue;
            }
            self.act(i, |peer, now| peer.handle_timeout(now));
            if self.nodes[i].wake.is_some_and(|w| w <= t) {
                self.counters.timer_spins += 1;
                self.nodes[i].wake = Some(t + 1);
            }
        }
        self.disk.run_due(t);
    }

    /// Moves the datagrams due by `t` into their receivers' socket buffers.
    fn arrive(&mut self, t: u64) {
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at <= t) {
            let Reverse(d) = self.in_flight.pop().expect("peeked");
            let node = &mut self.nodes[d.to];
            if node.peer.is_none() {
                self.counters.to_down += 1;
                continue;
            }
            let cost = d.bytes.len()
                + self
                    .net
                    .receive_limit
                    .as_ref()
                    .map_or(0, |limit| limit.overhead_bytes);
            if let Some(limit) = &self.net.receive_limit {
                if node.rx_bytes + cost > limit.buffer_bytes {
                    self.counters.overflow += 1;
                    continue;
                }
            }
            node.rx_bytes += cost;
            node.rx.push_back(d);
        }
    }
}
