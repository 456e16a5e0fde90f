//! A burst of adjusts among sans-IO peers on one LAN, the load of issue "quiet under load":
//! what the whole group sends while one or two officers adjust, beside the floor (one
//! LOG_ENTRY datagram per entry plus every peer's heartbeats over the same window). Shared
//! by the tests that assert the session count and by the bench that prints the figures.

use super::{PeerConfigBuilder, World};
use crate::core::rng::SeededRng;
use crate::core::sync::{Now, Peer};
use crate::proto::digest::Digest;
use crate::proto::entry::{AdjustRequest, Entry};
use crate::proto::wire::{self, Body, Envelope, Hello};
use std::collections::BTreeSet;

/// Virtual time the burst starts at (plus [`Burst::offset_ms`]): the peers have been in
/// sync and idle since they started.
const BURST_START_MS: u64 = 10_000;
/// How long after it was made an entry must be on every peer that did not lose it (the
/// world's links take 1 ms; this leaves room for queues).
const IN_FLIGHT_MS: u64 = 20;

/// One burst run: who adjusts, how much, how fast, over what network.
#[derive(Clone, Debug)]
pub struct Burst {
    /// Peers on the LAN, all in sync before the burst.
    pub peers: usize,
    /// Officers adjusting at the same time (peers 0, 1, ...).
    pub officers: usize,
    /// Adjusts each officer makes.
    pub adjusts: usize,
    /// Virtual ms the adjusts are spread over (0: all at once, a batch).
    pub over_ms: u64,
    /// Probability that any one datagram is lost.
    pub loss: f64,
    /// Every peer's HELLO interval.
    pub heartbeat_ms: u64,
    /// The peers are started over this long (daemons started together send their HELLOs in
    /// a cluster for a while; started by hand, spread out).
    pub starts_over_ms: u64,
    /// Virtual ms the burst starts after [`BURST_START_MS`] (where it falls between the
    /// HELLOs).
    pub offset_ms: u64,
    /// Seeds the peers and the network.
    pub seed: u64,
}

/// What a burst cost, summed over all peers, beside its floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BurstCost {
    /// Datagrams sent from the burst's start until two heartbeats after its end.
    pub datagrams: u64,
    /// Bytes of those datagrams.
    pub bytes: u64,
    /// Reconciliation sessions started in that window.
    pub sessions: u64,
    /// The floor for the window: one LOG_ENTRY datagram per entry and each peer's HELLOs.
    pub floor_datagrams: u64,
    /// Bytes of the floor's datagrams.
    pub floor_bytes: u64,
    /// The window's length (virtual ms).
    pub window_ms: u64,
    /// When every peer held every entry, in virtual ms after the burst's end (0: at once);
    /// `None` if not within a minute.
    pub converged_after_ms: Option<u64>,
    /// Peers that lacked an entry [`IN_FLIGHT_MS`] after it was made (they lost it).
    pub missed: usize,
    /// Sessions started in the window by peers that never lacked anything.
    pub sessions_without_loss: u64,
}

impl Burst {
    /// One officer, `adjusts` adjusts over `over_ms`, no loss, the daemon's heartbeat.
    pub fn new(peers: usize, adjusts: usize, over_ms: u64) -> Burst {
        Burst {
            peers,
            officers: 1,
            adjusts,
            over_ms,
            loss: 0.0,
            heartbeat_ms: 2_000,
            starts_over_ms: 2_000,
            offset_ms: 0,
            seed: 1,
        }
    }

    /// Runs the burst in a fresh world and measures it.
    pub fn run(&self) -> BurstCost {
        let history: Vec<Entry> = (0..100u64)
            .map(|i| {
                super::EntryBuilder::at_ms(super::BASE_UNIX_MS - 1_000_000 + i)
                    .id_random([(i % 251) as u8; 10])
                    .target(format!("P{}", i % 13))
                    .build()
            })
            .collect();
        let mut world = World::new(SeededRng::new(self.seed));
        for i in 0..self.peers {
            let config = PeerConfigBuilder::new(format!("p{i}"))
                .world_node(i)
                .heartbeat_ms(self.heartbeat_ms)
                .peer_timeout_ms(5 * self.heartbeat_ms)
                .build();
            let now = Now {
                mono_ms: 0,
                unix_ms: super::BASE_UNIX_MS,
            };
            let rng = SeededRng::new(self.seed * 1_000 + i as u64);
            world.insert(Peer::new(config, history.clone(), rng, now));
        }
        world.net.set_loss_everywhere(self.loss);
        for i in 0..self.peers {
            world.run_until(i as u64 * self.starts_over_ms / self.peers as u64);
            world.start(i);
        }
        let burst_start = BURST_START_MS + self.offset_ms;
        world.run_until(burst_start - 1);
        let before = totals(&world);
        let sessions_before: Vec<u64> = (0..self.peers)
            .map(|i| world.peer(i).stats().sessions_started)
            .collect();
        // The adjusts, each officer's in turn at each step; entries are checked on every
        // peer IN_FLIGHT_MS after they were made.
        let mut made: Vec<(u64, Digest)> = Vec::new();
        let mut checked = 0;
        let mut missed = BTreeSet::new();
        let mut floor_bytes = 0u64;
        for k in 0..self.adjusts {
            let at = burst_start + k as u64 * self.over_ms / self.adjusts.max(1) as u64;
            world.run_until(at);
            check_arrivals(&world, &made, &mut checked, at, &mut missed);
            for officer in 0..self.officers {
                let request = AdjustRequest {
                    actor: format!("officer{officer}"),
                    target: format!("P{}", k % 13),
                    delta: 1,
                    reason: format!("burst {k}"),
                };
                let entry = world.adjust(officer, &request);
                let node = world.peer(officer).node_id();
                let port = super::node_addr(officer).port();
                floor_bytes +=
                    wire::pack_log_entries("raid", node, port, std::slice::from_ref(&entry))
                        .iter()
                        .map(|(_, d)| d.len() as u64)
                        .sum::<u64>();
                made.push((at, entry.key().digest));
            }
        }
        let end = burst_start + self.over_ms;
        let window_end = end + 2 * self.heartbeat_ms;
        let mut converged_at = None;
        let mut t = end;
        while t < window_end {
            t += 10;
            world.run_until(t);
            check_arrivals(&world, &made, &mut checked, t, &mut missed);
            if converged_at.is_none() && world.converged() {
                converged_at = Some(t);
            }
        }
        let after = totals(&world);
        let sessions_without_loss = (0..self.peers)
            .filter(|i| !missed.contains(i))
            .map(|i| world.peer(i).stats().sessions_started - sessions_before[i])
            .sum();
        if converged_at.is_none() {
            converged_at = world.run_until_converged(60_000, 10);
        }
        let window_ms = window_end - burst_start;
        let heartbeats = window_ms as f64 / self.heartbeat_ms as f64;
        let hello_bytes: u64 = (0..self.peers).map(|i| hello_len(world.peer(i), i)).sum();
        let entries = (self.adjusts * self.officers) as u64;
        BurstCost {
            datagrams: after.0 - before.0,
            bytes: after.1 - before.1,
            sessions: after.2 - before.2,
            floor_datagrams: entries + (self.peers as f64 * heartbeats).round() as u64,
            floor_bytes: floor_bytes + (hello_bytes as f64 * heartbeats).round() as u64,
            window_ms,
            converged_after_ms: converged_at.map(|at| at.saturating_sub(end)),
            missed: missed.len(),
            sessions_without_loss,
        }
    }
}

/// (datagrams sent, bytes sent, sessions started), summed over the world's peers.
fn totals(world: &World) -> (u64, u64, u64) {
    (0..world.len())
        .map(|i| world.peer(i).stats())
        .fold((0, 0, 0), |(d, b, s), st| {
            (
                d + st.datagrams_sent,
                b + st.bytes_sent,
                s + st.sessions_started,
            )
        })
}

/// Marks the peers lacking an entry of `made` that is at least [`IN_FLIGHT_MS`] old at
/// `now`; `checked` counts the entries already looked at (each is looked at once).
fn check_arrivals(
    world: &World,
    made: &[(u64, Digest)],
    checked: &mut usize,
    now: u64,
    missed: &mut BTreeSet<usize>,
) {
    while let Some((at, digest)) = made.get(*checked) {
        if at + IN_FLIGHT_MS > now {
            return;
        }
        for i in 0..world.len() {
            if !world.peer(i).ledger().contains(digest) {
                missed.insert(i);
            }
        }
        *checked += 1;
    }
}

/// The size of world node `i`'s HELLO as it is now (clear, as the world's peers send it).
fn hello_len(peer: &Peer, i: usize) -> u64 {
    let ledger = peer.ledger();
    let envelope = Envelope {
        group: "raid".into(),
        from: peer.node_id(),
        whisper_port: super::node_addr(i).port(),
        body: Body::Hello(Hello {
            name: format!("p{i}"),
            fingerprint: ledger.fingerprint(),
            newest: ledger.newest(),
        }),
    };
    wire::encode(&envelope).map_or(0, |d| d.len() as u64)
}
