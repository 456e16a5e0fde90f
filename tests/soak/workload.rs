//! The workload: officers adjusting, awarding, decaying and reverting points concurrently in
//! bursts (a raid night: a boss dies, everyone gets points at once, then quiet), and readers
//! calling `points`, `history` and `status`. Every command is recorded with its outcome and
//! the entries it makes, so the checker knows what was acknowledged.
//!
//! Every command but one adjust in twenty goes through the control socket (`loot_sync::control::call` on the node's
//! socket, from the default namespace: a Unix socket is a file, not part of a network
//! namespace); one in twenty runs the real CLI inside the node's namespace. The CLI on a node
//! whose daemon the nemesis killed writes the log itself: an officer's offline edit.

use super::cluster::{Cluster, Life, CLI_LIMIT};
use loot_sync::control::{
    self, Adjust, Award, BatchResult, ControlError, Decay, History, Points, Revert, Status,
};
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

/// Which officer command an op was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One player's points.
    Adjust,
    /// The same delta to several players: one entry each.
    Award,
    /// Every non-zero total by a percentage: one entry per such player on that peer.
    Decay,
    /// The negation of an earlier acknowledged adjust, linked to it.
    Revert,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 4] = [Kind::Adjust, Kind::Award, Kind::Decay, Kind::Revert];

    /// Its command's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Adjust => "adjust",
            Kind::Award => "award",
            Kind::Decay => "decay",
            Kind::Revert => "revert",
        }
    }
}

/// One officer command the workload tried.
#[derive(Clone, Debug)]
pub struct Op {
    /// Also its reason, `soak op ID` (after a revert's link), which is how the checker finds
    /// its entries.
    pub id: u64,
    /// Through which node.
    pub node: usize,
    /// Which command.
    pub kind: Kind,
    /// The entries it makes, (player, delta) each: one per player of an award, the
    /// negation of the original for a revert. `None` for a decay that was not answered:
    /// its amounts depend on the totals that peer held, which only its reply tells.
    pub effect: Option<Vec<(String, i64)>>,
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
    /// Officer commands per second over the whole cluster, during a burst.
    pub rate: f64,
}

impl Workload {
    /// A workload issuing `rate` officer commands per second (cluster-wide) during bursts.
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

    /// Runs one officer working through `node` until stopped.
    pub fn officer(&self, cluster: &Cluster, node: usize, seed: u64) {
        let officers = cluster.nodes.iter().filter(|n| n.officer).count().max(1);
        let per_officer = (self.rate / officers as f64).max(0.01);
        let mut rng = SeededRng::new(seed);
        let mut boss_kill = 0;
        // This officer's acknowledged adjusts not yet reverted: (player, delta, digest).
        let mut revertible = Vec::new();
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
            let op = self.command(cluster, node, id, &mut rng, &mut revertible);
            self.ops.lock().unwrap().push(op);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// One officer command through node `node`, picked at random: mostly adjusts (one in
    /// twenty through the CLI), some awards, reverts of this officer's earlier acknowledged
    /// adjusts (each at most once) and now and then a small decay.
    fn command(
        &self,
        cluster: &Cluster,
        node: usize,
        id: u64,
        rng: &mut SeededRng,
        revertible: &mut Vec<(String, i64, String)>,
    ) -> Op {
        let socket = cluster.nodes[node].socket();
        let pick = rng.below(100);
        let magnitude = 1 + rng.below(50) as i64;
        let delta = if rng.chance(0.3) {
            -magnitude
        } else {
            magnitude
        };
        let player = |rng: &mut SeededRng| format!("raider{:02}", rng.below(PLAYERS as u64));
        let (kind, effect, result, cli) = if pick < 8 {
            let mut players: Vec<String> = (0..2 + rng.below(5)).map(|_| player(rng)).collect();
            players.sort();
            players.dedup();
            let effect = players.iter().map(|p| (p.clone(), delta)).collect();
            let award = Award {
                players,
                delta,
                reason: reason(id),
                actor: None,
                dry_run: false,
            };
            let result = control::call(&socket, award)
                .map(answered)
                .map_err(outcome_of);
            (Kind::Award, Some(effect), result, false)
        } else if pick < 10 {
            let decay = Decay {
                percent_hundredths: 100 + rng.below(400) as u32,
                reason: reason(id),
                actor: None,
                dry_run: false,
            };
            let result = control::call(&socket, decay)
                .map(answered)
                .map_err(outcome_of);
            (Kind::Decay, None, result, false)
        } else if pick < 16 && !revertible.is_empty() {
            let (player, delta, digest) =
                revertible.swap_remove(rng.below(revertible.len() as u64) as usize);
            let revert = Revert {
                entry: digest,
                reason: reason(id),
                actor: None,
            };
            let result = control::call(&socket, revert)
                .map(answered)
                .map_err(outcome_of);
            (Kind::Revert, Some(vec![(player, -delta)]), result, false)
        } else {
            let player = player(rng);
            let (result, cli) = self.adjust(cluster, node, (&player, delta, id), rng.chance(0.05));
            (Kind::Adjust, Some(vec![(player, delta)]), result, cli)
        };
        let (outcome, effect) = match result {
            Ok((answer, digest)) => {
                if let (Some(digest), Some(effect)) = (&digest, &effect) {
                    revertible.push((effect[0].0.clone(), effect[0].1, digest.clone()));
                }
                (Outcome::Acked, effect.or(answer))
            }
            Err(outcome) => (outcome, effect),
        };
        Op {
            id,
            node,
            kind,
            effect,
            cli,
            outcome,
            wall_ms: super::nemesis::unix_ms(),
        }
    }

    /// One adjust through node `node`: by the CLI if `cli` (and the daemon is not stopped),
    /// else through the control socket. Acknowledged with the entry's digest (none from the
    /// CLI), or how it failed; and whether the CLI made it.
    fn adjust(
        &self,
        cluster: &Cluster,
        node: usize,
        (player, delta, id): (&str, i64, u64),
        cli: bool,
    ) -> (Result<Answer, Outcome>, bool) {
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
                return (result.map(|_| (None, None)).map_err(Outcome::Unknown), true);
            }
        }
        let adjust = Adjust {
            player: player.to_owned(),
            delta,
            reason: reason(id),
            actor: None,
        };
        let result = control::call(&n.socket(), adjust)
            .map(|r| (None, Some(r.entry.digest().to_hex())))
            .map_err(outcome_of);
        (result, false)
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

/// What an acknowledged command answered: the entries a batch wrote, as (player, delta)
/// (only a decay needs them: its amounts are the peer's to decide), and an adjust's digest.
type Answer = (Option<Vec<(String, i64)>>, Option<String>);

/// A batch's answer.
fn answered(result: BatchResult) -> Answer {
    let changes = result
        .changes
        .into_iter()
        .map(|c| (c.player, c.delta))
        .collect();
    (Some(changes), None)
}

/// How a failed control call ended for the checker.
fn outcome_of(err: ControlError) -> Outcome {
    match err {
        // Nobody listening: the request never reached a daemon.
        e @ ControlError::NotRunning { .. } => Outcome::Failed(e.to_string()),
        // The daemon answered no: nothing was written (a full disk, say).
        e @ ControlError::Refused { .. } => Outcome::Failed(e.to_string()),
        e => Outcome::Unknown(e.to_string()),
    }
}
