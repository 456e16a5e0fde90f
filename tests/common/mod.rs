//! Helpers for tests that run real daemons on real multicast sockets, on loopback only.
#![allow(dead_code)]

use loot_sync::config::Config;
use loot_sync::control::{Adjust, AdjustResult, History, Points, Status, StatusResult};
use loot_sync::daemon::{self, DaemonOptions, RunningDaemon};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Loopback only: tests never put multicast on a real interface.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The group address tests use (each test has its own port).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 76, 83);

/// Logs to the test output when RUST_LOG is set (e.g. RUST_LOG=sync=debug).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A UDP port that no socket on this machine uses right now (the kernel's pick for an
/// ephemeral port, which it spreads at random), never the same one twice in this process:
/// tests of one run, and two checkouts testing at once, each get group ports of their own.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        // Wildcard and without SO_REUSEADDR, so the port is free on every address.
        let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a free port");
        let port = probe.local_addr().unwrap().port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A group name of this test run's own. Ports keep the tests of one run apart; the name
/// keeps runs apart (two checkouts testing at once on one machine use the same ports, and
/// peers of different group names ignore each other).
pub fn group_name(port: u16) -> String {
    format!("t{port}-{}", std::process::id())
}

/// A fast-heartbeat loopback config for one node of a test group on `port`.
pub fn config(state_dir: &Path, node: &str, port: u16) -> Config {
    let mut config = Config {
        node: node.to_string(),
        state_dir: state_dir.join(node),
        ..Config::default()
    };
    config.group.name = group_name(port);
    config.group.address = Some(GROUP);
    config.group.port = port;
    config.group.interface = LOOPBACK;
    config.group.ttl = 1;
    config.whisper.bind = std::net::SocketAddrV4::new(LOOPBACK, 0);
    config.sync.heartbeat = Duration::from_millis(200);
    config.sync.peer_timeout = Duration::from_millis(1500);
    // No web page unless a test asks for one (on a port of its own).
    config.http.enabled = false;
    config.validate().expect("test config is valid");
    config
}

/// A fast-heartbeat loopback config with NO multicast (no `[group] address`): node `node`
/// with its whisper socket on 127.0.0.1:`whisper_port` (0: any free port), contacting only
/// the `listed` addresses (e.g. `"127.0.0.1:PORT"`) and the peers that contact it. `group`
/// is a free port of the test's own, for a group name no other test or checkout uses.
pub fn unicast_config(
    state_dir: &Path,
    node: &str,
    group: u16,
    whisper_port: u16,
    listed: &[String],
) -> Config {
    let mut config = config(state_dir, node, group);
    config.group.address = None;
    config.whisper.bind = std::net::SocketAddrV4::new(LOOPBACK, whisper_port);
    config.peers.addresses = listed.to_vec();
    config.validate().expect("test config is valid");
    config
}

/// `127.0.0.1:port`, as listed in `[peers] addresses`.
pub fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Writes a loopback config file for the real binary (node `node`, state in `dir/state`)
/// and returns its path.
pub fn write_config_file(dir: &Path, node: &str, port: u16) -> PathBuf {
    let path = dir.join("lootsync.toml");
    let text = format!(
        r#"node = "{node}"
state_dir = "{}"
[group]
name = "{}"
address = "239.255.76.83"
port = {port}
interface = "127.0.0.1"
ttl = 1
[whisper]
bind = "127.0.0.1:0"
[sync]
heartbeat = "200ms"
[http]
enabled = false
"#,
        dir.join("state").display(),
        group_name(port)
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the real `lootsync` binary with `--config config` and `args`; waits for it.
pub fn run_cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lootsync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run lootsync")
}

/// Runs the real `lootsync` binary like [`run_cli`], with the file size limit set so no file
/// can grow past `max_file_bytes`, the way a full disk stops a write part-way. SIGXFSZ is
/// ignored so the write returns EFBIG instead of killing the process.
pub fn run_cli_with_file_size_limit(
    config: &Path,
    max_file_bytes: u64,
    args: &[&str],
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lootsync"));
    command.arg("--config").arg(config).args(args);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: max_file_bytes as libc::rlim_t,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("run lootsync")
}

/// Sends `entries` to each address in `to` as one LOG_ENTRY datagram of test group `port`
/// from a made-up node, sealed with the group key in `key_file` when given: what a
/// modified (or older, or hostile) client of a group member could send (loopback unicast).
pub fn send_log_entries(
    port: u16,
    to: &[std::net::SocketAddr],
    entries: Vec<loot_sync::proto::entry::Entry>,
    key_file: Option<&Path>,
) {
    use loot_sync::proto::seal::{Keyring, NoncePrefix, Sealer};
    use loot_sync::proto::wire::{self, Body, Envelope};
    let clear = wire::encode(&Envelope {
        group: group_name(port),
        from: 0xf0f0,
        whisper_port: 9,
        body: Body::LogEntry(entries),
    })
    .unwrap();
    let datagram = match key_file {
        Some(file) => {
            let key = loot_sync::store::keys::load_group_key(file).unwrap();
            let mut prefix = [0u8; 16];
            getrandom::fill(&mut prefix).unwrap();
            let mut sealer = Sealer::new(Keyring::new(key, vec![]), NoncePrefix(prefix));
            sealer.seal(clear).unwrap()
        }
        None => clear,
    };
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for addr in to {
        socket.send_to(&datagram, addr).unwrap();
    }
}

/// A socket that has joined the test group on `port`, on loopback only, as another member
/// (or an eavesdropper) on the LAN would; reads time out after 100 ms.
pub fn group_listener(port: u16) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.set_multicast_all_v4(false).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((GROUP, port)).into())
        .unwrap();
    socket.join_multicast_v4(&GROUP, &LOOPBACK).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket.into()
}

/// Starts an in-process daemon.
pub async fn start(config: &Config, options: DaemonOptions) -> RunningDaemon {
    daemon::start(config.clone(), options)
        .await
        .expect("daemon starts")
}

/// Records an adjustment through the control socket.
pub async fn adjust(d: &RunningDaemon, player: &str, delta: i64, reason: &str) -> AdjustResult {
    d.request(Adjust {
        player: player.into(),
        delta,
        reason: reason.into(),
        actor: None,
    })
    .await
    .expect("adjust succeeds")
}

/// Current totals, through the control socket.
pub async fn points(d: &RunningDaemon) -> BTreeMap<String, i64> {
    d.request(Points {}).await.expect("points")
}

/// Status, through the control socket.
pub async fn status(d: &RunningDaemon) -> StatusResult {
    d.request(Status {}).await.expect("status")
}

/// Ids of the full history, in replay order.
pub async fn history_ids(d: &RunningDaemon) -> Vec<String> {
    let rows = d.request(History { player: None }).await.expect("history");
    rows.iter().map(|row| row.entry.id.to_string()).collect()
}

/// Polls `check` every 20 ms until it returns true or `limit` passes; returns the time taken.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
