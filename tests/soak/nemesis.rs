//! The nemesis: seeded faults, each logged with the time it happened. One episode applies one
//! or two faults at once while the officers adjust, then heals everything; the run then
//! measures how long the cluster takes to converge.
//!
//! Faults: SIGKILL and restart with a torn tail appended to the log; SIGSTOP/SIGCONT;
//! partitions, both ways and one way (nftables at the switch); random loss and duplication
//! (nftables); delay (tc netem where the kernel has it, otherwise the receiving daemon is
//! stopped for 30-150 ms at a time, which delays and bunches what it receives); wall-clock
//! jumps forward and back (libfaketime's offset file); a full disk (node 0's tmpfs state dir
//! filled); `sync off`/`on`; a node's state dir restored from an old copy; an officer added
//! on one side of a partition while another is removed on the other side.

use super::cluster::{Cluster, Life, NetFaults, ROSTER_LIMIT};
use loot_sync::control::{self, SwitchSync};
use loot_sync::core::rng::SeededRng;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL, a torn tail, restart (mid-episode or at the heal).
    Kill,
    /// SIGSTOP until the heal.
    Pause,
    /// Two sides that cannot hear each other.
    Partition,
    /// One side cannot hear the other; the other hears it.
    OneWay,
    /// Random datagram loss.
    Loss,
    /// Random datagram duplication.
    Duplicate,
    /// Datagrams delayed (netem, or micro-pauses without it).
    Delay,
    /// A daemon's wall clock jumps hours forward or back, and back again at the heal.
    ClockJump,
    /// Node 0's disk is full.
    DiskFull,
    /// `sync off`, then `sync on` at the heal.
    SyncOff,
    /// A daemon's state dir replaced by an old copy.
    Restore,
    /// An officer added and another removed, on two sides of a partition.
    OfficerChange,
    /// A daemon killed and its checkpoint damaged (bytes flipped, cut short, or another
    /// node's) before it restarts: it must ignore the checkpoint and rebuild from the log.
    Checkpoint,
}

impl Fault {
    /// Every kind, in a fixed order.
    pub const ALL: [Fault; 13] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::Duplicate,
        Fault::Delay,
        Fault::ClockJump,
        Fault::DiskFull,
        Fault::SyncOff,
        Fault::Restore,
        Fault::OfficerChange,
        Fault::Checkpoint,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way partition",
            Fault::Loss => "loss",
            Fault::Duplicate => "duplication",
            Fault::Delay => "delay",
            Fault::ClockJump => "clock jump",
            Fault::DiskFull => "disk full",
            Fault::SyncOff => "sync off",
            Fault::Restore => "restore old state",
            Fault::OfficerChange => "officer change in partition",
            Fault::Checkpoint => "damaged checkpoint",
        }
    }

    /// Faults that cut the network (two are not combined in one episode).
    fn partitions(self) -> bool {
        matches!(
            self,
            Fault::Partition | Fault::OneWay | Fault::OfficerChange
        )
    }
}

/// What the current episode did, so the heal can undo it.
#[derive(Default)]
struct Active {
    killed: Vec<usize>,
    paused: Vec<usize>,
    net: NetFaults,
    netem: bool,
    jitter: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    clocks: Vec<usize>,
    /// Torn tails appended and not yet checked: (node, offset, bytes).
    torn: Vec<(usize, u64, Vec<u8>)>,
    /// The filler file and how long node 0's output was when the disk filled.
    filler: Option<(PathBuf, u64)>,
    sync_off: Vec<usize>,
    /// Nodes restarting over a damaged checkpoint, with the entries they held before.
    damaged: Vec<(usize, usize)>,
}

/// The nemesis: its seeded choices, its log and its tallies.
pub struct Nemesis<'a> {
    cluster: &'a Cluster,
    rng: SeededRng,
    started: Instant,
    /// Lines written to its log.
    pub events: usize,
    /// Faults injected, by kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// Problems it hit undoing a fault (a daemon that would not restart): violations.
    pub failures: Vec<String>,
    /// The slowest `officer add|remove` so far, seconds.
    pub slowest_roster_change: f64,
    /// Forward clock jumps: (node, minutes, from, to) in true Unix ms.
    pub jumps: Vec<(usize, u64, u64, u64)>,
    active: Active,
    /// An old copy of a node's state dir, for the restore fault: (node, dir).
    snapshot: Option<(usize, PathBuf)>,
    /// Spare officers added so far and not yet removed: (name).
    spares: Vec<String>,
    spare_count: usize,
    /// Where the log goes as it happens (so a hung run still shows its story).
    log: Option<std::fs::File>,
}

impl<'a> Nemesis<'a> {
    /// A nemesis over `cluster` seeded with `seed`, logging to `log`.
    pub fn new(
        cluster: &'a Cluster,
        seed: u64,
        started: Instant,
        log: Option<std::fs::File>,
    ) -> Nemesis<'a> {
        Nemesis {
            cluster,
            rng: SeededRng::new(seed),
            started,
            events: 0,
            counts: BTreeMap::new(),
            failures: Vec::new(),
            jumps: Vec::new(),
            slowest_roster_change: 0.0,
            active: Active::default(),
            snapshot: None,
            spares: Vec::new(),
            spare_count: 0,
            log,
        }
    }

    /// Records `what` in the log.
    pub fn note(&mut self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        if let Some(log) = &mut self.log {
            let _ = writeln!(log, "{at:9.2}s {what}");
        }
        if std::env::var_os("LOOTSYNC_SOAK_VERBOSE").is_some() {
            eprintln!("{at:9.2}s {what}");
        }
        self.events += 1;
    }

    /// A seeded number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.below(hi - lo + 1)
    }

    /// Picks the faults of the next episode: `forced` if given, plus (in the long run) now
    /// and then a second one that does not also cut the network.
    pub fn choose(&mut self, forced: Option<Fault>, combine: bool) -> Vec<Fault> {
        let first =
            forced.unwrap_or_else(|| Fault::ALL[self.rng.below(Fault::ALL.len() as u64) as usize]);
        let mut faults = vec![first];
        if combine && self.rng.chance(0.35) {
            let second = Fault::ALL[self.rng.below(Fault::ALL.len() as u64) as usize];
            // Micro-pauses (delay without netem) signal processes by id, so they must not
            // meet kills and restarts, nor undo a pause.
            let signals = |f: Fault| {
                matches!(
                    f,
                    Fault::Kill | Fault::Pause | Fault::Restore | Fault::Checkpoint
                )
            };
            let clash = second == first
                || (second.partitions() && first.partitions())
                || second == Fault::Restore
                || (first == Fault::Delay && signals(second))
                || (second == Fault::Delay && signals(first));
            if !clash {
                faults.push(second);
            }
        }
        // A restore goes first: it must start from a converged, quiet cluster.
        faults.sort_by_key(|f| *f != Fault::Restore);
        faults
    }

    /// Random nodes: between 1 and `max` of them, distinct.
    fn some_nodes(&mut self, max: usize) -> Vec<usize> {
        let n = self.cluster.nodes.len();
        let count = self.between(1, max.clamp(1, n) as u64) as usize;
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            all.swap(i, j);
        }
        all.truncate(count);
        all.sort_unstable();
        all
    }

    /// Two non-empty sides.
    fn sides(&mut self) -> (Vec<usize>, Vec<usize>) {
        let n = self.cluster.nodes.len();
        let a = self.some_nodes(n - 1);
        let b = (0..n).filter(|i| !a.contains(i)).collect();
        (a, b)
    }

    /// Applies `fault` (the episode's workload runs meanwhile).
    pub fn apply(&mut self, fault: Fault) {
        *self.counts.entry(fault.name()).or_default() += 1;
        let n = self.cluster.nodes.len();
        match fault {
            Fault::Kill => {
                for i in self.some_nodes((n - 1) / 2) {
                    if self.active.killed.contains(&i) || self.active.paused.contains(&i) {
                        continue;
                    }
                    let torn = self.kill(i);
                    self.note(format!("kill -9 n{i}; torn tail of {torn} bytes appended"));
                    self.active.killed.push(i);
                }
            }
            Fault::Pause => {
                for i in self.some_nodes((n - 1) / 2) {
                    if self.active.killed.contains(&i) || self.active.paused.contains(&i) {
                        continue;
                    }
                    let node = &self.cluster.nodes[i];
                    let mut proc = node.proc();
                    node.signal_locked(&proc, libc::SIGSTOP);
                    proc.life = Life::Paused;
                    drop(proc);
                    self.note(format!("SIGSTOP n{i}"));
                    self.active.paused.push(i);
                }
            }
            Fault::Partition => {
                let (a, b) = self.sides();
                self.cut(&a, &b, true);
                self.note(format!("partition {a:?} | {b:?}"));
            }
            Fault::OneWay => {
                let (a, b) = self.sides();
                self.cut(&a, &b, false);
                self.note(format!("one-way partition: {a:?} cannot hear {b:?}"));
            }
            Fault::Loss => {
                self.active.net.loss = self.between(10, 40) as u32;
                self.cluster.set_net(&self.active.net);
                self.note(format!("loss {}%", self.active.net.loss));
            }
            Fault::Duplicate => {
                self.active.net.dup = self.between(10, 50) as u32;
                self.cluster.set_net(&self.active.net);
                self.note(format!("duplication {}%", self.active.net.dup));
            }
            Fault::Delay => self.delay(),
            Fault::ClockJump => {
                // An officer's clock jumps forward (its entries then show it), and now and
                // then another node's jumps back.
                let officers = self.cluster.nodes.iter().filter(|n| n.officer).count();
                let ahead = self.rng.below(officers as u64) as usize;
                let minutes = self.between(60, 180);
                self.jump(ahead, &format!("+{minutes}m"));
                self.jumps
                    .push((ahead, minutes, unix_ms() + 1500, u64::MAX));
                let behind = self.rng.below(n as u64) as usize;
                if behind != ahead && self.rng.chance(0.7) {
                    let minutes = self.between(30, 180);
                    self.jump(behind, &format!("-{minutes}m"));
                }
            }
            Fault::DiskFull => {
                let filler = self.cluster.tmpfs().join("filler");
                let output =
                    std::fs::metadata(&self.cluster.nodes[0].output).map_or(0, |m| m.len());
                let written = fill(&filler);
                self.note(format!("disk of n0 full ({} MiB filler)", written >> 20));
                self.active.filler = Some((filler, output));
            }
            Fault::SyncOff => {
                for i in self.some_nodes((n - 1) / 2) {
                    if self.active.killed.contains(&i) || self.active.paused.contains(&i) {
                        continue;
                    }
                    let node = &self.cluster.nodes[i];
                    match control::call(&node.socket(), SwitchSync { enabled: false }) {
                        Ok(_) => {
                            self.note(format!("sync off on n{i}"));
                            self.active.sync_off.push(i);
                        }
                        Err(e) => self.failures.push(format!("sync off on n{i}: {e}")),
                    }
                }
            }
            Fault::Restore => self.restore(),
            Fault::OfficerChange => self.officer_change(),
            Fault::Checkpoint => self.damage_checkpoint(),
        }
    }

    /// Halfway through an episode: some killed daemons come back while the other faults
    /// still hold.
    pub fn midway(&mut self) {
        let killed = std::mem::take(&mut self.active.killed);
        for i in killed {
            // One that fails to come back (a violation, recorded) is tried again at the heal.
            if !(self.rng.chance(0.5) && self.restart(i, "midway")) {
                self.active.killed.push(i);
            }
        }
    }

    /// Undoes every fault of the episode.
    pub fn heal(&mut self) {
        if let Some((stop, thread)) = self.active.jitter.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        for i in std::mem::take(&mut self.active.paused) {
            let node = &self.cluster.nodes[i];
            let mut proc = node.proc();
            node.signal_locked(&proc, libc::SIGCONT);
            if proc.life == Life::Paused {
                proc.life = Life::Up;
            }
        }
        if self.active.net != NetFaults::default() {
            self.active.net = NetFaults::default();
            self.cluster.set_net(&self.active.net);
        }
        if std::mem::take(&mut self.active.netem) {
            self.cluster.set_netem_delay(0, 0);
        }
        for i in std::mem::take(&mut self.active.clocks) {
            std::fs::write(&self.cluster.nodes[i].faketime, "+0\n").unwrap();
        }
        let now = unix_ms();
        for jump in self.jumps.iter_mut().filter(|j| j.3 == u64::MAX) {
            jump.3 = now;
        }
        if let Some((filler, output)) = self.active.filler.take() {
            let _ = std::fs::remove_file(filler);
            self.check_full_disk_logged(output);
        }
        for i in std::mem::take(&mut self.active.killed) {
            self.restart(i, "at the heal");
        }
        for i in std::mem::take(&mut self.active.sync_off) {
            let node = &self.cluster.nodes[i];
            if let Err(e) = control::call(&node.socket(), SwitchSync { enabled: true }) {
                self.failures.push(format!("sync on on n{i}: {e}"));
            }
        }
        self.note("heal".into());
    }

    /// Sets node `i`'s wall-clock offset (libfaketime reads the file within a second).
    fn jump(&mut self, i: usize, offset: &str) {
        std::fs::write(&self.cluster.nodes[i].faketime, format!("{offset}\n")).unwrap();
        self.note(format!("clock of n{i} jumps {offset}"));
        self.active.clocks.push(i);
    }

    /// SIGKILLs node `i` and appends a torn record to its log (a write cut short by a power
    /// cut: a plausible length and checksum, then fewer payload bytes than the length says).
    /// The number of bytes appended.
    fn kill(&mut self, i: usize) -> usize {
        let node = &self.cluster.nodes[i];
        let mut proc = node.proc();
        node.kill_locked(&mut proc);
        drop(proc);
        let Some(log) = node.ledger_log() else {
            return 0;
        };
        let payload = self.between(1, 60) as usize;
        let mut torn = Vec::new();
        torn.extend_from_slice(&(payload as u32 + 100).to_le_bytes());
        torn.extend_from_slice(&(self.rng.next_u64() as u32).to_le_bytes());
        for _ in 0..payload {
            torn.push(self.rng.below(256) as u8);
        }
        let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        let offset = file.metadata().unwrap().len();
        // On a full disk the torn bytes may not fit; a shorter tear is a tear too.
        match file.write_all(&torn) {
            Ok(()) => self.active.torn.push((i, offset, torn.clone())),
            Err(_) => torn.clear(),
        }
        torn.len()
    }

    /// Kills a running node and damages its checkpoint: a few bytes flipped in the middle,
    /// the file cut to half, or another node's checkpoint in its place (valid in itself,
    /// but of a different log). It restarts mid-episode or at the heal like a killed node,
    /// and must come back with at least the entries it had.
    fn damage_checkpoint(&mut self) {
        let n = self.cluster.nodes.len();
        let i = self.rng.below(n as u64) as usize;
        if self.active.killed.contains(&i) || self.active.paused.contains(&i) {
            return;
        }
        let node = &self.cluster.nodes[i];
        let Ok(before) = node.status().map(|s| s.entries) else {
            return;
        };
        let mut proc = node.proc();
        node.kill_locked(&mut proc);
        drop(proc);
        let Some(log) = node.ledger_log() else {
            return;
        };
        let path = loot_sync::store::checkpoint_path(&log);
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        let how = match self.rng.below(3) {
            0 if bytes.len() > 16 => {
                let at = self.between(8, bytes.len() as u64 - 8) as usize;
                for b in &mut bytes[at..at + 4] {
                    *b ^= 1 + self.rng.below(255) as u8;
                }
                format!("4 bytes flipped at {at}")
            }
            1 if !bytes.is_empty() => {
                bytes.truncate(bytes.len() / 2);
                format!("cut to {} bytes", bytes.len())
            }
            _ => {
                let other = (i + 1 + self.rng.below(n as u64 - 1) as usize) % n;
                let theirs = self.cluster.nodes[other]
                    .ledger_log()
                    .and_then(|l| std::fs::read(loot_sync::store::checkpoint_path(&l)).ok());
                match theirs {
                    Some(theirs) => {
                        bytes = theirs;
                        format!("replaced by n{other}'s")
                    }
                    None => {
                        bytes = (0..64).map(|_| self.rng.below(256) as u8).collect();
                        "replaced by 64 random bytes".into()
                    }
                }
            }
        };
        // On n0's full disk the damage may not fit; the daemon then meets what is there.
        let _ = std::fs::write(&path, &bytes);
        self.note(format!(
            "kill -9 n{i} ({before} entries); its checkpoint damaged: {how}"
        ));
        self.active.killed.push(i);
        self.active.damaged.push((i, before));
    }

    /// After node `i` restarted: if its checkpoint was damaged, it must hold at least the
    /// entries it had before (rebuilt from the log, not from the damaged checkpoint).
    fn check_damaged_rebuilt(&mut self, i: usize) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active.damaged)
            .into_iter()
            .partition(|d| d.0 == i);
        self.active.damaged = rest;
        for (_, before) in mine {
            match self.cluster.nodes[i].status() {
                Ok(s) if s.entries >= before => {}
                Ok(s) => self.failures.push(format!(
                    "n{i} restarted over a damaged checkpoint with {} entries, {before} before",
                    s.entries
                )),
                Err(e) => self
                    .failures
                    .push(format!("n{i} after its damaged checkpoint: {e}")),
            }
        }
    }

    /// Starts node `i` again; a failure is a violation. Whether it runs.
    fn restart(&mut self, i: usize, when: &str) -> bool {
        let node = &self.cluster.nodes[i];
        let mut proc = node.proc();
        let result = node.start_locked(&mut proc, &self.cluster.bin, &self.cluster.faketime);
        drop(proc);
        match result {
            Ok(()) => {
                self.note(format!("restart n{i} ({when})"));
                self.check_torn_cut(i);
                self.check_damaged_rebuilt(i);
                true
            }
            Err(e) => {
                self.note(format!("restart n{i} FAILED"));
                self.failures.push(format!("restart of n{i} {when}: {e}"));
                false
            }
        }
    }

    /// What node 0 logged about I/O errors while its disk was full (from byte `from` of its
    /// output on) must name the cause. Found by this soak: the daemon logged "I/O error
    /// while appending to …" and never "No space left on device" (regression test:
    /// `store::error::tests::describe_names_the_operating_system_error_under_an_io_error`).
    fn check_full_disk_logged(&mut self, from: u64) {
        let text = std::fs::read(&self.cluster.nodes[0].output).unwrap_or_default();
        let since = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        let io_errors: Vec<&str> = since.lines().filter(|l| l.contains("I/O error")).collect();
        if let Some(bad) = io_errors.iter().find(|l| !l.contains(&full)) {
            self.failures.push(format!(
                "n0 logged an I/O error on a full disk without its cause ({full:?}): {bad}"
            ));
        }
        self.note(format!(
            "n0 logged {} I/O errors while its disk was full",
            io_errors.len()
        ));
    }

    /// After node `i` restarted: the torn bytes appended to its log before must be gone
    /// (cut at open, and maybe overwritten by new records since).
    fn check_torn_cut(&mut self, i: usize) {
        let (mine, rest) = std::mem::take(&mut self.active.torn)
            .into_iter()
            .partition(|t| t.0 == i);
        self.active.torn = rest;
        let mine: Vec<(usize, u64, Vec<u8>)> = mine;
        let Some(log) = self.cluster.nodes[i].ledger_log() else {
            return;
        };
        let bytes = std::fs::read(log).unwrap_or_default();
        for (_, offset, torn) in mine {
            let at = offset as usize;
            if bytes.get(at..at + torn.len()) == Some(&torn[..]) {
                self.failures.push(format!(
                    "n{i} restarted with the torn tail at offset {offset} still in its log"
                ));
            }
        }
    }

    /// Adds a spare officer through node 0 (before the episodes, so the first officer
    /// change has one to remove).
    pub fn add_first_spare(&mut self) {
        self.add_spare(0);
    }

    fn add_spare(&mut self, i: usize) {
        let bin = self.cluster.bin.clone();
        let name = format!("spare{}", self.spare_count);
        self.spare_count += 1;
        let key = self.cluster.dir.join(format!("{name}.key"));
        let public = super::net::run(
            bin.to_str().unwrap(),
            &["keygen", "officer", key.to_str().unwrap()],
        )
        .trim()
        .to_owned();
        // Only an officer that was added can be removed later.
        if self.roster_cli(i, &["officer", "add", &name, &public]) {
            self.spares.push(name);
        }
    }

    fn cut(&mut self, a: &[usize], b: &[usize], both_ways: bool) {
        for &x in a {
            for &y in b {
                self.active.net.blocked.push((y, x));
                if both_ways {
                    self.active.net.blocked.push((x, y));
                }
            }
        }
        self.cluster.set_net(&self.active.net);
    }

    fn delay(&mut self) {
        if self.cluster.netem {
            let ms = self.between(20, 200) as u32;
            let jitter = ms / 2;
            self.cluster.set_netem_delay(ms, jitter);
            self.active.netem = true;
            self.note(format!("delay {ms} ms ± {jitter} ms (netem)"));
            return;
        }
        // No netem on this kernel: stop the receiving daemons for 30-150 ms at a time, so
        // what they receive waits in their socket buffers and arrives late and bunched.
        let victims = self.some_nodes(2);
        self.note(format!(
            "delay by micro-pauses of {victims:?} (no tc netem on this kernel)"
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let seed = self.rng.next_u64();
        let thread = {
            let stop = stop.clone();
            let pids: Vec<u32> = victims
                .iter()
                .filter_map(|&i| self.cluster.nodes[i].pid())
                .collect();
            std::thread::spawn(move || {
                let mut rng = SeededRng::new(seed);
                while !stop.load(Ordering::SeqCst) {
                    for &pid in &pids {
                        // SAFETY: kill(2) on our own children's ids (they stay our
                        // unreaped children while this runs: the heal joins this thread
                        // before anything kills or restarts them).
                        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
                    }
                    std::thread::sleep(Duration::from_millis(30 + rng.below(120)));
                    for &pid in &pids {
                        // SAFETY: as above.
                        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
                    }
                    std::thread::sleep(Duration::from_millis(30 + rng.below(120)));
                }
            })
        };
        self.active.jitter = Some((stop, thread));
    }

    /// Replaces a node's state with the old copy taken earlier (taking one now if there is
    /// none yet). Runs first in an episode, on a converged cluster, so nothing acknowledged
    /// exists only on that node.
    fn restore(&mut self) {
        let Some((i, copy)) = self.snapshot.clone() else {
            self.take_snapshot();
            self.note("restore: no old copy yet; copied one for next time".into());
            return;
        };
        let node = &self.cluster.nodes[i];
        let mut proc = node.proc();
        node.kill_locked(&mut proc);
        for entry in std::fs::read_dir(&node.state).unwrap().flatten() {
            let path = entry.path();
            // Regular files only: the control socket stays (the restarted daemon replaces it).
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
                let _ = std::fs::remove_file(&path);
            }
        }
        let mut files = 0;
        for entry in std::fs::read_dir(&copy).unwrap().flatten() {
            std::fs::copy(entry.path(), node.state.join(entry.file_name())).unwrap();
            files += 1;
        }
        let result = node.start_locked(&mut proc, &self.cluster.bin, &self.cluster.faketime);
        drop(proc);
        self.note(format!(
            "restore n{i}'s state dir from the copy taken earlier ({files} files) and restart"
        ));
        if let Err(e) = result {
            self.failures
                .push(format!("restart of n{i} after restore: {e}"));
        }
        // The next restore uses a newer copy of some node.
        if self.rng.chance(0.5) {
            self.take_snapshot();
        }
    }

    /// Copies a random running node's state files (log, checkpoint, marks) aside: an old
    /// backup for a later restore. Taken while the daemon runs, as a backup job would.
    pub fn take_snapshot(&mut self) {
        let i = self.rng.below(self.cluster.nodes.len() as u64) as usize;
        let node = &self.cluster.nodes[i];
        let copy = self.cluster.dir.join(format!("snapshot-n{i}"));
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(&node.state).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            // Regular files only: not the control socket; the filler is not state.
            if meta.file_type().is_file() && entry.file_name() != "filler" {
                std::fs::copy(&path, copy.join(entry.file_name())).unwrap();
            }
        }
        let entries = node.status().map(|s| s.entries).unwrap_or(0);
        self.note(format!("copied n{i}'s state dir aside ({entries} entries)"));
        self.snapshot = Some((i, copy));
    }

    /// A partition; on one side a spare officer is added, on the other the previous spare
    /// (added in an earlier episode, known everywhere) is removed. The workload's officers
    /// stay officers throughout, so totals are unaffected while the roster entries race.
    fn officer_change(&mut self) {
        let (a, b) = self.sides();
        self.cut(&a, &b, true);
        self.note(format!("partition {a:?} | {b:?} for an officer change"));
        // Not through a stopped daemon (the CLI would wait for it).
        let paused = self.active.paused.clone();
        let a: Vec<usize> = a.into_iter().filter(|i| !paused.contains(i)).collect();
        let b: Vec<usize> = b.into_iter().filter(|i| !paused.contains(i)).collect();
        if !self.spares.is_empty() && !b.is_empty() {
            let old = self.spares.remove(0);
            let remover = b[self.rng.below(b.len() as u64) as usize];
            self.roster_cli(remover, &["officer", "remove", &old]);
        }
        if !a.is_empty() {
            let adder = a[self.rng.below(a.len() as u64) as usize];
            self.add_spare(adder);
        }
    }

    /// Runs `lootsync args` (an officer change) on node `i`; whether it succeeded.
    fn roster_cli(&mut self, i: usize, args: &[&str]) -> bool {
        let node = &self.cluster.nodes[i];
        let proc = node.proc();
        let started = Instant::now();
        let result = if proc.life == Life::Paused {
            Err("daemon stopped".to_owned())
        } else {
            node.cli(&self.cluster.bin, args, ROSTER_LIMIT)
        };
        drop(proc);
        let took = started.elapsed().as_secs_f64();
        self.slowest_roster_change = self.slowest_roster_change.max(took);
        match result {
            Ok(_) => {
                self.note(format!(
                    "n{i}: lootsync {} ({took:.1} s)",
                    args[..3].join(" ")
                ));
                true
            }
            Err(e) => {
                self.note(format!("n{i}: lootsync {} {} failed", args[0], args[1]));
                // A full disk refuses it; anything else is a problem.
                if self.active.filler.is_none() || i != 0 {
                    self.failures.push(format!("n{i}: {}: {e}", args.join(" ")));
                }
                false
            }
        }
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// The true time, Unix ms (this process has no libfaketime).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Writes zeros to `path` until the file system is full; the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut size = chunk.len();
    while size > 0 {
        match file.write(&chunk[..size]) {
            Ok(0) | Err(_) => size /= 2,
            Ok(n) => written += n as u64,
        }
    }
    written
}
