//! Real `lootsync run` processes inside the test's namespaces.
//!
//! Each daemon runs as `ip netns exec NS lootsync --config FILE run` (`ip netns exec` execs the
//! binary, so the child's id is the daemon's), with its own config and state directory in the
//! test's temporary directory and its log in `DIR/NAME.log`.
//!
//! Control: the control socket is a Unix socket at a file path, and Unix sockets belong to the
//! file system, not to a network namespace, so the test talks to each daemon from its own
//! (default) namespace through `loot_sync::control::call` on `STATE/control.sock`: no process
//! per request, which keeps 100 adjusts fast. [`Daemon::cli`] runs the real CLI inside the
//! daemon's namespace (`ip netns exec NS lootsync -c FILE …`) to show that path works too.

use super::net::{tool_path, try_run, Ns};
use loot_sync::control::{self, Adjust, AdjustResult, ControlError, Points, Status};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lootsync");
/// The whisper port every daemon binds, inside its own namespace.
pub const WHISPER_PORT: u16 = 47684;
/// How long a daemon may take to answer on its control socket after starting.
const START_LIMIT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// One daemon's files and, while it runs, its process.
pub struct Daemon {
    pub name: String,
    ns: String,
    pub config: PathBuf,
    pub state: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Writes the config of daemon `name`, to run in `ns`: no multicast (`[group] address`
    /// omitted), whisper on 0.0.0.0:47684, the listed `peers`, the shared group key, a 200 ms
    /// heartbeat and SYNC debug lines in its log.
    pub fn new(dir: &Path, ns: &Ns, name: &str, peers: &[String], group_key: &Path) -> Daemon {
        Daemon::with_group(dir, ns, name, peers, group_key, "")
    }

    /// Like [`Daemon::new`], and also on the multicast group (the default address and port)
    /// on the LAN interface with address `interface`, TTL 1.
    pub fn with_multicast(
        dir: &Path,
        ns: &Ns,
        name: &str,
        peers: &[String],
        group_key: &Path,
        interface: Ipv4Addr,
    ) -> Daemon {
        let group = format!("address = \"239.255.76.83\"\ninterface = \"{interface}\"\nttl = 1\n");
        Daemon::with_group(dir, ns, name, peers, group_key, &group)
    }

    fn with_group(
        dir: &Path,
        ns: &Ns,
        name: &str,
        peers: &[String],
        group_key: &Path,
        group: &str,
    ) -> Daemon {
        let config = dir.join(format!("{name}.toml"));
        let state = dir.join(name).join("state");
        let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
        let text = format!(
            r#"node = "{name}"
state_dir = "{}"
[group]
name = "natgroup"
{group}[whisper]
bind = "0.0.0.0:{WHISPER_PORT}"
[peers]
addresses = [{}]
[sync]
heartbeat = "200ms"
peer_timeout = "2s"
[log]
level = "info,sync=debug"
[security]
group_key_file = "{}"
"#,
            state.display(),
            peers.join(", "),
            group_key.display()
        );
        std::fs::write(&config, text).unwrap();
        Daemon {
            name: name.to_owned(),
            ns: ns.name.clone(),
            config,
            state,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts the daemon and waits until its control socket answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(tool_path("ip").expect("ip (iproute2)"))
            .args(["netns", "exec", &self.ns, BIN, "--config"])
            .arg(&self.config)
            .arg("run")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn lootsync run");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            match control::call(&self.socket(), Status {}) {
                Ok(_) => return,
                Err(ControlError::NotRunning { .. }) => {}
                Err(e) => panic!("{}: status: {e}", self.name),
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "{} exited at start ({status}); its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < START_LIMIT,
                "{} did not answer within {START_LIMIT:?}; its log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon with SIGTERM (SIGKILL if it takes longer than the limit).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the id of a child we spawned and have not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > STOP_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} ignored SIGTERM for {STOP_LIMIT:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn socket(&self) -> PathBuf {
        control::socket_path(&self.state)
    }

    /// Records an adjustment; the result once the daemon has it on disk.
    pub fn adjust(&self, player: &str, delta: i64) -> Result<AdjustResult, ControlError> {
        control::call(
            &self.socket(),
            Adjust {
                player: player.into(),
                delta,
                reason: format!("by {}", self.name),
                actor: None,
            },
        )
    }

    /// Totals, from the running daemon.
    pub fn points(&self) -> BTreeMap<String, i64> {
        control::call(&self.socket(), Points {})
            .unwrap_or_else(|e| panic!("{}: points: {e}", self.name))
    }

    /// `status` as JSON (what `lootsync status --json` prints), so fields the test reads
    /// need not exist in this crate's types at compile time.
    pub fn status(&self) -> serde_json::Value {
        let status = control::call(&self.socket(), Status {})
            .unwrap_or_else(|e| panic!("{}: status: {e}", self.name));
        serde_json::to_value(status).unwrap()
    }

    /// Runs `lootsync --config FILE args` inside the daemon's namespace; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let config = self.config.to_str().unwrap();
        let mut all = vec!["netns", "exec", &self.ns, BIN, "--config", config];
        all.extend_from_slice(args);
        try_run("ip", &all).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {}'s log ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}

/// Polls `check` every 50 ms until it returns true; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a new group key with the real binary (`lootsync keygen group FILE`).
pub fn group_key(dir: &Path) -> PathBuf {
    let path = dir.join("group.key");
    try_run(BIN, &["keygen", "group", path.to_str().unwrap()]).expect("keygen group");
    path
}
