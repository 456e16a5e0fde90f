//! The soak cluster: one network namespace per daemon, all plugged into one bridge (a LAN
//! switch) in a namespace of its own, and the daemons' processes, configs and state dirs.
//!
//! ```text
//!   namespace sw: bridge br0, ports p0..pN-1 (nftables here: partitions, loss, duplication)
//!      │ p0            │ p1                   │ pN-1
//!   n0 192.0.2.10   n1 192.0.2.11   …   nN-1 192.0.2.(10+N-1)      (eth0 in each node's namespace)
//! ```
//!
//! Safety: only TEST-NET-1 addresses (192.0.2.0/24); multicast only on the nodes' own `eth0`
//! with TTL 1; veth pairs are made directly between two of our namespaces, so nothing appears
//! in the default namespace, and the default namespace's interfaces, routes and firewall are
//! never touched. Namespaces are named `lsnat-PID-soak-ROLE` so `tests/nat/net.rs` cleans up
//! what a killed run left.
//!
//! Each daemon runs as `ip netns exec nI lootsync --config FILE run` (ip execs the binary, so
//! the child's id is the daemon's) with libfaketime preloaded, reading its clock offset from a
//! file the nemesis rewrites (a clock jump while the daemon runs). Node 0's state dir is a
//! small tmpfs, so the nemesis can fill its disk.

use super::net::{remove_stale_namespaces, run, tool_path, try_run, try_run_limited, Ns, PREFIX};
use loot_sync::control::{self, ControlError, Status, StatusResult};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The whisper port every daemon binds inside its own namespace.
pub const WHISPER_PORT: u16 = 47684;
/// How long a daemon may take to answer on its control socket after starting (a big log is
/// replayed first; debug builds are slow).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long the adjust CLI may take.
pub const CLI_LIMIT: Duration = Duration::from_secs(20);
/// How long `officer add|remove` may take: the roster query reads back every entry after
/// the officer's first key was added, which on a long run's log in a debug build under load
/// takes seconds (it fetched and re-judged the whole log before, 10-35 s).
pub const ROSTER_LIMIT: Duration = Duration::from_secs(180);
/// How full node 0's tmpfs state dir may get (the disk the nemesis fills).
pub const TMPFS_BYTES: u64 = 96 << 20;
/// libfaketime's preload library where Debian's `faketime` package puts it
/// (`/usr/lib/ARCH-linux-gnu/faketime/libfaketime.so.1`), if installed.
pub fn faketime_lib() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-linux-gnu"))
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.is_file())
}

/// Whether this kernel has tc netem (many, CI's among them, are built without it): tried on
/// a veth pair in a namespace of our own.
pub fn netem_available(sw: &Ns) -> bool {
    sw.ip(&[
        "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
    ]);
    let ok = try_run(
        "ip",
        &[
            "netns", "exec", &sw.name, "tc", "qdisc", "add", "dev", "probe0", "root", "netem",
            "delay", "1ms",
        ],
    )
    .is_ok();
    sw.ip(&["link", "del", "probe0"]);
    ok
}

/// Whether a daemon process should be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Running (and not stopped).
    Up,
    /// Stopped with SIGSTOP by the nemesis.
    Paused,
    /// Killed (or not started yet).
    Down,
}

/// A daemon's process and what the harness expects of it.
pub struct Proc {
    child: Option<Child>,
    /// What the nemesis last did to it.
    pub life: Life,
    /// When the current process started.
    pub started: Instant,
    /// Times it was (re)started.
    pub starts: u32,
}

impl Proc {
    /// The daemon's process id while one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// One daemon: its namespace, files and process.
pub struct Node {
    /// 0-based.
    pub index: usize,
    /// `nI`, also its node name.
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its state dir (log, checkpoint, control socket).
    pub state: PathBuf,
    /// Where its stdout and stderr go.
    pub output: PathBuf,
    /// Its libfaketime offset file (`+0`, `+2h`, `-90m`, …).
    pub faketime: PathBuf,
    /// Whether it holds an officer key (the workload adjusts through it).
    pub officer: bool,
    /// Its officer key's public half, if it is an officer.
    pub officer_public: Option<String>,
    /// The process, behind a lock that also keeps an offline CLI adjust and a restart apart
    /// (both take the log's lock; the loser would fail).
    proc: Mutex<Proc>,
    /// Set while the workload must not write through this node (a restore is being prepared).
    pub frozen: AtomicBool,
}

impl Node {
    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        control::socket_path(&self.state)
    }

    /// The process state, locked.
    pub fn proc(&self) -> MutexGuard<'_, Proc> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The daemon's process id while one runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc().pid()
    }

    /// The ledger log (`GROUP.lootlog`), once the daemon has made it.
    pub fn ledger_log(&self) -> Option<PathBuf> {
        let path = self.state.join("soak.lootlog");
        path.is_file().then_some(path)
    }

    /// Starts the daemon (the caller holds `proc`) and waits until its control socket
    /// answers; an error with the end of its output if it exits or does not answer.
    pub fn start_locked(&self, proc: &mut Proc, bin: &Path, lib: &Path) -> Result<(), String> {
        assert!(proc.child.is_none(), "{} already runs", self.name);
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output)
            .map_err(|e| format!("{}: {e}", self.output.display()))?;
        let child = Command::new(tool_path("ip").expect("ip (iproute2)"))
            .args(["netns", "exec", &self.ns])
            .arg(bin)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env_remove("RUST_LOG")
            .env("LD_PRELOAD", lib)
            .env("FAKETIME_TIMESTAMP_FILE", &self.faketime)
            // Re-read the offset file at most once a second; tokio's timers run on the
            // monotonic clock, which stays true (a jump is a wall-clock jump).
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .map_err(|e| format!("{}: spawn: {e}", self.name))?;
        proc.child = Some(child);
        proc.life = Life::Up;
        proc.started = Instant::now();
        proc.starts += 1;
        let start = Instant::now();
        loop {
            match control::call(&self.socket(), Status {}) {
                Ok(_) => return Ok(()),
                Err(ControlError::NotRunning { .. } | ControlError::Io { .. }) => {}
                Err(e) => return Err(format!("{}: status: {e}", self.name)),
            }
            if let Some(status) = proc.child.as_mut().unwrap().try_wait().unwrap() {
                proc.child = None;
                proc.life = Life::Down;
                return Err(format!(
                    "{} exited at start ({status}); its output ends:\n{}",
                    self.name,
                    self.output_tail(30)
                ));
            }
            if start.elapsed() > START_LIMIT {
                return Err(format!(
                    "{} did not answer within {START_LIMIT:?}; its output ends:\n{}",
                    self.name,
                    self.output_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the daemon, if it runs.
    pub fn signal_locked(&self, proc: &Proc, signal: libc::c_int) {
        if let Some(child) = &proc.child {
            // SAFETY: kill(2) on the id of a child we spawned and have not reaped yet.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGKILLs the daemon (continuing it first if stopped, so it dies at once) and reaps it.
    pub fn kill_locked(&self, proc: &mut Proc) {
        if let Some(mut child) = proc.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        proc.life = Life::Down;
    }

    /// The daemon's exit status if it exited on its own (reaped here), or None while it runs.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut proc = self.proc();
        let status = proc.child.as_mut()?.try_wait().ok()??;
        proc.child = None;
        proc.life = Life::Down;
        Some(status)
    }

    /// `status` through the control socket.
    pub fn status(&self) -> Result<StatusResult, ControlError> {
        control::call(&self.socket(), Status {})
    }

    /// The last `lines` lines of the daemon's output.
    pub fn output_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs the real CLI inside the node's namespace: `lootsync --config FILE args`, for
    /// at most `limit`.
    pub fn cli(&self, bin: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
        let config = self.config.to_str().unwrap();
        let bin = bin.to_str().unwrap();
        let mut all = vec!["netns", "exec", &self.ns, bin, "--config", config];
        all.extend_from_slice(args);
        try_run_limited("ip", &all, limit)
    }
}

/// Faults applied at the switch (nftables in namespace `sw`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetFaults {
    /// (from, to): datagrams from node `from` to node `to` are dropped.
    pub blocked: Vec<(usize, usize)>,
    /// Percent of UDP datagrams dropped at random.
    pub loss: u32,
    /// Percent of UDP datagrams duplicated at random.
    pub dup: u32,
}

/// The keys every node shares.
struct Keys {
    /// The group key file.
    group: PathBuf,
    /// The root secret key file (every node may sign roster changes in this test).
    root: PathBuf,
    /// The root public key.
    root_public: String,
}

/// The whole cluster. Fields drop in order: processes first, then namespaces.
pub struct Cluster {
    /// The daemons.
    pub nodes: Vec<Node>,
    node_ns: Vec<Ns>,
    sw: Ns,
    /// Node 0's tmpfs state dir, unmounted on drop.
    tmpfs: PathBuf,
    /// A copy of the binary under test (a rebuild during a long run must not change it).
    pub bin: PathBuf,
    /// libfaketime's preload library.
    pub faketime: PathBuf,
    /// Whether tc netem works here (delay then uses it; otherwise micro-pauses).
    pub netem: bool,
    /// The run directory (configs, state dirs, outputs).
    pub dir: PathBuf,
    rules_loaded: AtomicBool,
    /// Datagrams counted by fault rules already replaced: (blocked, lost, duplicated).
    datagrams: Mutex<(u64, u64, u64)>,
}

impl Cluster {
    /// Builds the LAN and writes every node's config; starts nothing. `officers` nodes
    /// (0..officers) get officer keys, added to the roster by [`Cluster::start_all`].
    pub fn new(dir: &Path, nodes: usize, officers: usize, faketime: PathBuf) -> Cluster {
        assert!((2..=40).contains(&nodes));
        remove_stale_namespaces();
        let run_id = format!("{PREFIX}-{}-soak", std::process::id());
        let sw = Ns::create(format!("{run_id}-sw"));
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.ip(&["link", "set", "br0", "up"]);
        let netem = netem_available(&sw);
        let bin = dir.join("lootsync");
        std::fs::copy(env!("CARGO_BIN_EXE_lootsync"), &bin).expect("copy the binary");
        let bin_str = bin.to_str().unwrap().to_owned();
        let keygen = |kind: &str, file: &str| -> String {
            let path = dir.join(file);
            run(&bin_str, &["keygen", kind, path.to_str().unwrap()])
                .trim()
                .to_owned()
        };
        keygen("group", "group.key");
        let root_public = keygen("root", "root.key");
        let keys = Keys {
            group: dir.join("group.key"),
            root: dir.join("root.key"),
            root_public,
        };
        let mut node_ns = Vec::new();
        let mut all = Vec::new();
        for i in 0..nodes {
            let name = format!("n{i}");
            let ns = Ns::create(format!("{run_id}-{name}"));
            let port = format!("p{i}");
            sw.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            sw.ip(&["link", "set", &port, "master", "br0"]);
            sw.ip(&["link", "set", &port, "up"]);
            let addr = Ipv4Addr::new(192, 0, 2, 10 + i as u8);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            let home = dir.join(&name);
            let state = home.join("state");
            std::fs::create_dir_all(&state).unwrap();
            let officer = i < officers;
            let officer_public = officer.then(|| keygen("officer", &format!("{name}/officer.key")));
            let officer_key = if officer {
                format!(
                    "officer_key_file = \"{}\"\n",
                    home.join("officer.key").display()
                )
            } else {
                String::new()
            };
            let faketime_file = home.join("faketime");
            std::fs::write(&faketime_file, "+0\n").unwrap();
            // Node 0 is on the LAN like the rest and also listed by every other node: a
            // unicast path beside multicast (a peer heard both ways is one peer).
            let listed = if i == 0 {
                String::new()
            } else {
                format!("\"192.0.2.10:{WHISPER_PORT}\"")
            };
            let config = home.join("lootsync.toml");
            std::fs::write(
                &config,
                format!(
                    r#"node = "{name}"
state_dir = "{state}"
[group]
name = "soak"
address = "239.255.76.83"
interface = "{addr}"
ttl = 1
[whisper]
bind = "0.0.0.0:{WHISPER_PORT}"
[peers]
addresses = [{listed}]
[sync]
heartbeat = "200ms"
peer_timeout = "2s"
[log]
level = "info"
[security]
group_key_file = "{group}"
root_public_key = "{root_public}"
root_key_file = "{root}"
{officer_key}"#,
                    state = state.display(),
                    group = keys.group.display(),
                    root = keys.root.display(),
                    root_public = keys.root_public,
                ),
            )
            .unwrap();
            all.push(Node {
                index: i,
                name: name.clone(),
                ns: ns.name.clone(),
                config,
                state,
                output: home.join("output.txt"),
                faketime: faketime_file,
                officer,
                officer_public,
                proc: Mutex::new(Proc {
                    child: None,
                    life: Life::Down,
                    started: Instant::now(),
                    starts: 0,
                }),
                frozen: AtomicBool::new(false),
            });
            node_ns.push(ns);
        }
        let tmpfs = all[0].state.clone();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={TMPFS_BYTES},mode=0700"),
                "lootsync-soak",
                tmpfs.to_str().unwrap(),
            ],
        );
        let cluster = Cluster {
            nodes: all,
            node_ns,
            sw,
            tmpfs,
            bin,
            faketime,
            netem,
            dir: dir.to_path_buf(),
            rules_loaded: AtomicBool::new(false),
            datagrams: Mutex::new((0, 0, 0)),
        };
        cluster.set_net(&NetFaults::default());
        cluster
    }

    /// Starts every daemon, then makes every officer node's key an officer (signed by the
    /// root key, through node 0's CLI) and waits until every node holds the whole roster.
    pub fn start_all(&self) -> Result<(), String> {
        for node in &self.nodes {
            let mut proc = node.proc();
            node.start_locked(&mut proc, &self.bin, &self.faketime)?;
        }
        for node in &self.nodes {
            if let Some(public) = &node.officer_public {
                self.nodes[0].cli(
                    &self.bin,
                    &["officer", "add", &node.name, public],
                    ROSTER_LIMIT,
                )?;
            }
        }
        let officers = self.nodes.iter().filter(|n| n.officer).count();
        let start = Instant::now();
        loop {
            let counts: Vec<usize> = self
                .nodes
                .iter()
                .map(|n| n.status().map(|s| s.entries).unwrap_or(0))
                .collect();
            if counts.iter().all(|&c| c == officers) {
                return Ok(());
            }
            if start.elapsed() > START_LIMIT {
                return Err(format!(
                    "the roster ({officers} officers) did not reach every node: entries {counts:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the switch's fault rules with `faults` (one atomic nftables transaction),
    /// adding the replaced rules' counts to the run's totals first.
    pub fn set_net(&self, faults: &NetFaults) {
        if self
            .rules_loaded
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let (b, l, d) = self.net_counts();
            let mut total = self.datagrams.lock().unwrap();
            *total = (total.0 + b, total.1 + l, total.2 + d);
        }
        let mut forward = String::new();
        for (from, to) in &faults.blocked {
            forward.push_str(&format!(
                "        iifname \"p{from}\" oifname \"p{to}\" counter name \"blocked\" drop\n"
            ));
        }
        if faults.loss > 0 {
            forward.push_str(&format!(
                "        meta l4proto udp numgen random mod 100 < {} counter name \"lost\" drop\n",
                faults.loss
            ));
        }
        // Duplication: a copy of the frame arriving at a port is handed to the bridge again,
        // which forwards it like the original (the netdev family's `dup to`).
        let mut ingress = String::new();
        if faults.dup > 0 {
            for i in 0..self.nodes.len() {
                ingress.push_str(&format!(
                    r#"    chain dup{i} {{
        type filter hook ingress device "p{i}" priority filter; policy accept;
        meta protocol ip meta l4proto udp numgen random mod 100 < {} counter name "duplicated" dup to "br0"
    }}
"#,
                    faults.dup
                ));
            }
        }
        let ruleset = format!(
            r#"table bridge soak
delete table bridge soak
table bridge soak {{
    counter blocked {{ }}
    counter lost {{ }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
{forward}    }}
}}
table netdev soakdup
delete table netdev soakdup
table netdev soakdup {{
    counter duplicated {{ }}
{ingress}}}
"#
        );
        self.sw.nft(&ruleset);
    }

    /// The whole-log replays after a roster change the daemons logged over the run (each
    /// daemon's output spans its restarts): how many, and the slowest in ms. They run on
    /// each daemon's replay thread, not its core thread.
    pub fn replays(&self) -> (usize, u64) {
        let mut count = 0;
        let mut slowest = 0;
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.output).unwrap_or_default();
            for line in text.lines() {
                let Some((_, rest)) = line.split_once("after a roster change in ") else {
                    continue;
                };
                if let Some(ms) = rest
                    .strip_suffix(" ms")
                    .and_then(|ms| ms.parse::<u64>().ok())
                {
                    count += 1;
                    slowest = slowest.max(ms);
                }
            }
        }
        (count, slowest)
    }

    /// (blocked, lost, duplicated) datagrams at the switch over the whole run.
    pub fn datagram_totals(&self) -> (u64, u64, u64) {
        let (b, l, d) = self.net_counts();
        let total = self.datagrams.lock().unwrap();
        (total.0 + b, total.1 + l, total.2 + d)
    }

    /// (blocked, lost, duplicated) datagram counts at the switch since the last `set_net`.
    fn net_counts(&self) -> (u64, u64, u64) {
        (
            self.sw.counter("bridge", "soak", "blocked"),
            self.sw.counter("bridge", "soak", "lost"),
            self.sw.counter("netdev", "soakdup", "duplicated"),
        )
    }

    /// Delays every datagram leaving the switch towards each node by `ms` ± `jitter` ms
    /// with tc netem (only when [`Cluster::netem`]); 0 removes it.
    pub fn set_netem_delay(&self, ms: u32, jitter: u32) {
        for i in 0..self.nodes.len() {
            let port = format!("p{i}");
            let _ = try_run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.sw.name,
                    "tc",
                    "qdisc",
                    "del",
                    "dev",
                    &port,
                    "root",
                ],
            );
            if ms > 0 {
                self.sw.exec(
                    "tc",
                    &[
                        "qdisc",
                        "add",
                        "dev",
                        &port,
                        "root",
                        "netem",
                        "delay",
                        &format!("{ms}ms"),
                        &format!("{jitter}ms"),
                    ],
                );
            }
        }
    }

    /// Node 0's tmpfs state dir (the disk the nemesis fills).
    pub fn tmpfs(&self) -> &Path {
        &self.tmpfs
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            let mut proc = node.proc();
            node.kill_locked(&mut proc);
        }
        if let Err(e) = try_run("umount", &["-l", self.tmpfs.to_str().unwrap()]) {
            eprintln!("warning: {e}");
        }
        // Namespaces (node_ns, sw) are deleted by their own drops, after this.
        let _ = &self.node_ns;
        let _ = &self.sw;
    }
}

/// Whether `CI` is set to a true value (anything but empty, `0`, `false`, `no`, `off`).
pub fn in_ci() -> Option<String> {
    let value = std::env::var("CI").ok()?;
    let v = value.trim().to_ascii_lowercase();
    (!matches!(v.as_str(), "" | "0" | "false" | "no" | "off")).then_some(value)
}

/// What this machine lacks to run the soak (root, `ip`, `nft`, `mount`, libfaketime).
pub fn missing_requirements() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces and a tmpfs mount need it)".to_owned());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("mount", "mount")] {
        if tool_path(tool).is_none() {
            missing.push(format!("`{tool}` (Debian package {package})"));
        }
    }
    if faketime_lib().is_none() {
        missing.push("libfaketime (Debian package faketime)".to_owned());
    }
    missing
}
