//! The workload: officers adjusting points concurrently in bursts (a raid night: a boss dies,
//! everyone gets points at once, then quiet), and readers calling `points`, `history` and
//! `status`. Every adjust is recorded with its outcome, so the checker knows what was
//! acknowledged.
//!
//! Most adjusts go through the control socket (`loot_sync::control::call` on the node's
//! socket, from the default namespace: a Unix socket is a file, not part of a network
//! namespace); one in twenty runs the real CLI inside the node's namespace. The CLI on a node
//! whose daemon the nemesis killed writes the log itself: an officer's offline edit.

use super::cluster::{Cluster, Life, CLI_LIMIT};
use loot_sync::control::{self, Adjust, ControlError, History, Points, Status};
use loot_sync::core::rng::SeededRng;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Players the officers adjust.
pub const PLAYERS: usize = 12;

/// How an adjust ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: it must be on every node at the end.
    Acked,
    /// Refused or never sent (daemon not running, disk full): it must be nowhere.
    Failed(String),
    /// No answer (timeout, connection cut by a kill, CLI failure): it may or may not exist.
    Unknown(String),
}

/// One adjust the workload tried.
#[derive(Clone, Debug)]
pub struct Op {
    /// Also its reason, `soak op ID`, which is how the checker finds its entry.
    pub id: u64,
    /// Through which node.
    pub node: usize,
    /// Whose points.
    pub player: String,
    /// By how much.
    pub delta: i64,
    /// Through the CLI (not the control socket).
    pub cli: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// The true time when it ended, Unix ms.
    pub wall_ms: u64,
}

/// The reason an op's entry carries.
pub fn reason(id: u64) -> String {
    format!("soak op {id}")
}

/// What the workload did, shared by its threads, the nemesis and the checker.
pub struct Workload {
    /// Every adjust tried.
    pub ops: Mutex<Vec<Op>>,
    /// Reads answered.
    pub reads_ok: AtomicU64,
    /// Reads that failed (daemon down or stopped).
    pub reads_failed: AtomicU64,
    /// Replies that did not decode: a violation.
    pub bad_replies: Mutex<Vec<String>>,
    next_id: AtomicU64,
    /// Officers adjust only while this is set (a burst).
    pub burst: AtomicBool,
    /// Adjusts under way (the nemesis waits for 0 before measuring convergence).
    pub in_flight: AtomicUsize,
    /// Ends every workload thread.
    pub stop: AtomicBool,
    /// Adjusts per second over the whole cluster, during a burst.
    pub rate: f64,
}

impl Workload {
    /// A workload adjusting at `rate` per second (cluster-wide) during bursts.
    pub fn new(rate: f64) -> Workload {
        Workload {
            ops: Mutex::new(Vec::new()),
            reads_ok: AtomicU64::new(0),
            reads_failed: AtomicU64::new(0),
            bad_replies: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            burst: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            rate,
        }
    }

    /// Waits until no adjust is under way (at most `limit`); whether it got there.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Runs one officer adjusting through `node` until stopped.
    pub fn officer(&self, cluster: &Cluster, node: usize, seed: u64) {
        let officers = cluster.nodes.iter().filter(|n| n.officer).count().max(1);
        let per_officer = (self.rate / officers as f64).max(0.01);
        let mut rng = SeededRng::new(seed);
        let mut boss_kill = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let n = &cluster.nodes[node];
            if !self.burst.load(Ordering::SeqCst) || n.frozen.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if boss_kill == 0 {
                // Exponential gaps (a Poisson stream at `per_officer` a second); now and then
                // a boss dies and the officer hands out a flurry back to back.
                let u = (rng.below(1_000_000) as f64 + 1.0) / 1_000_001.0;
                let gap = -u.ln() / per_officer;
                std::thread::sleep(Duration::from_secs_f64(gap.min(5.0)));
                if rng.chance(0.05) {
                    boss_kill = 3 + rng.below(8);
                }
            } else {
                boss_kill -= 1;
            }
            if !self.burst.load(Ordering::SeqCst) || n.frozen.load(Ordering::SeqCst) {
                continue;
            }
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            let player = format!("raider{:02}", rng.below(PLAYERS as u64));
            let magnitude = 1 + rng.below(50) as i64;
            let delta = if rng.chance(0.3) {
                -magnitude
            } else {
                magnitude
            };
            let (outcome, cli) = self.adjust(cluster, node, (&player, delta, id), rng.chance(0.05));
            self.ops.lock().unwrap().push(Op {
                id,
                node,
                player,
                delta,
                cli,
                outcome,
                wall_ms: super::nemesis::unix_ms(),
            });
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// One adjust through node `node`: by the CLI if `cli` (and the daemon is not stopped),
    /// else through the control socket. Its outcome, and whether the CLI made it.
    fn adjust(
        &self,
        cluster: &Cluster,
        node: usize,
        (player, delta, id): (&str, i64, u64),
        cli: bool,
    ) -> (Outcome, bool) {
        let n = &cluster.nodes[node];
        if cli {
            // Holding the process lock keeps a restart from racing an offline adjust for the
            // log's lock; a stopped daemon would block the CLI while we hold it.
            let proc = n.proc();
            if proc.life != Life::Paused {
                let delta = delta.to_string();
                let result = n.cli(
                    &cluster.bin,
                    &[
                        "adjust",
                        "--player",
                        player,
                        "--delta",
                        &delta,
                        "--reason",
                        &reason(id),
                    ],
                    CLI_LIMIT,
                );
                drop(proc);
                return match result {
                    Ok(_) => (Outcome::Acked, true),
                    Err(e) => (Outcome::Unknown(e), true),
                };
            }
        }
        let adjust = Adjust {
            player: player.to_owned(),
            delta,
            reason: reason(id),
            actor: None,
        };
        let outcome = match control::call(&n.socket(), adjust) {
            Ok(_) => Outcome::Acked,
            // Nobody listening: the request never reached a daemon.
            Err(e @ ControlError::NotRunning { .. }) => Outcome::Failed(e.to_string()),
            // The daemon answered no: nothing was written (a full disk, say).
            Err(e @ ControlError::Refused { .. }) => Outcome::Failed(e.to_string()),
            Err(e) => Outcome::Unknown(e.to_string()),
        };
        (outcome, false)
    }

    /// Runs one reader until stopped: `points` mostly, `status`, a player's `history`, and
    /// now and then the whole history, from running daemons.
    pub fn reader(&self, cluster: &Cluster, seed: u64) {
        let mut rng = SeededRng::new(seed);
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50 + rng.below(150)));
            let node = &cluster.nodes[rng.below(cluster.nodes.len() as u64) as usize];
            if node.proc().life != Life::Up {
                continue;
            }
            let socket = node.socket();
            let pick = rng.below(100);
            let result = if pick < 50 {
                control::call(&socket, Points {}).map(drop)
            } else if pick < 80 {
                control::call(&socket, Status {}).map(drop)
            } else if pick < 98 {
                let player = format!("raider{:02}", rng.below(PLAYERS as u64));
                control::call(
                    &socket,
                    History {
                        player: Some(player),
                    },
                )
                .map(drop)
            } else {
                control::call(&socket, History { player: None }).map(drop)
            };
            match result {
                Ok(()) => {
                    self.reads_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e @ (ControlError::BadReply { .. } | ControlError::NoResult { .. })) => {
                    self.bad_replies
                        .lock()
                        .unwrap()
                        .push(format!("{}: {e}", node.name));
                }
                Err(_) => {
                    self.reads_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A copy of every op so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}
