//! A small internet in network namespaces: a hub with a public address and two homes, each
//! behind a router that does source NAT with the port remapped and drops unsolicited inbound.
//!
//! ```text
//!                         "internet" 203.0.113.0/24 (bridge br0 in namespace `inet`)
//!                 ┌──────────────────────┬──────────────────────────┐
//!          hub 203.0.113.10       router 1 wan 203.0.113.21   router 2 wan 203.0.113.22
//!                                 (NAT)  lan 192.0.2.1/24     (NAT)  lan 198.51.100.1/24
//!                                   ├─ host 1a 192.0.2.11       └─ host 2a 198.51.100.11
//!                                   └─ host 1b 192.0.2.12
//! ```
//!
//! Safety: every command runs inside a namespace this module created (`ip -n NS`, `ip netns
//! exec NS`), never in the default namespace, and only TEST-NET addresses are used. Veth
//! pairs are created directly between two of our namespaces, so no interface ever appears in
//! the default namespace. Namespace names carry this process's id and a counter
//! (`lsnat-PID-N-role`), so two checkouts (or two tests of one run) never collide, and each
//! namespace is deleted when its [`Ns`] is dropped, also when a test fails. Namespaces left by
//! a run that was killed (its process id no longer exists) are deleted by the next run.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long any one `ip`/`nft` command may take before the test gives up on it.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);
/// Prefix of every namespace these tests create.
pub const PREFIX: &str = "lsnat";

/// The hub's public address.
pub const HUB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The routers' public (WAN) addresses, home 1 then home 2.
pub const WAN: [Ipv4Addr; 2] = [
    Ipv4Addr::new(203, 0, 113, 21),
    Ipv4Addr::new(203, 0, 113, 22),
];
/// The first three octets of each home's LAN: 192.0.2.0/24 and 198.51.100.0/24.
const LAN: [[u8; 3]; 2] = [[192, 0, 2], [198, 51, 100]];
/// The ports the routers map outgoing connections to (never the inside port, 47684).
pub const NAT_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;

/// Runs `program args` with a time limit; panics with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    match try_run(program, args) {
        Ok(stdout) => stdout,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `program args` with a time limit; its stdout, or an error naming the command and
/// what it printed.
pub fn try_run(program: &str, args: &[&str]) -> Result<String, String> {
    try_run_limited(program, args, COMMAND_LIMIT)
}

/// [`try_run`] with a time limit of `limit` instead of the usual one.
pub fn try_run_limited(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    let line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(tool_path(program).unwrap_or_else(|| program.into()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("`{line}`: {e}"))? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`{line}` took longer than {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("`{line}` failed ({status}): {stdout}{stderr}"))
    }
}

/// Where `program` is: on `PATH`, or in `/usr/sbin` or `/sbin` (where `ip` and `nft` live,
/// which not every user has on `PATH`). A path with a `/` is taken as it is.
pub fn tool_path(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Some(program.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// One network namespace of ours, deleted on drop (after killing whatever still runs in it:
/// only processes a test started there can be inside).
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// Creates namespace `name` with its loopback up (`name` should start with
    /// `lsnat-PID-`, so a killed run's leftovers are found by [`remove_stale_namespaces`]).
    pub fn create(name: String) -> Ns {
        run("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec NS program args`.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Loads an nftables ruleset into this namespace.
    pub fn nft(&self, ruleset: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), ruleset).unwrap();
        self.exec("nft", &["-f", file.path().to_str().unwrap()]);
    }

    /// Packets counted so far by the named nftables counter `family table name`.
    pub fn counter(&self, family: &str, table: &str, name: &str) -> u64 {
        let text = self.exec("nft", &["list", "counter", family, table, name]);
        let after = text
            .split("packets ")
            .nth(1)
            .unwrap_or_else(|| panic!("no packet count in {text:?}"));
        after
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {text:?}"))
    }

    /// Sets an IPv4 sysctl of this namespace (`/proc/sys/net/...` is per namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec("sh", &["-c", &format!("echo {value} > {path}")]);
    }

    /// A UDP socket bound to `addr` inside this namespace (a socket stays in the namespace
    /// it was created in, whichever thread uses it later). Reads time out after `timeout`.
    pub fn udp_socket(&self, addr: SocketAddr, timeout: Duration) -> UdpSocket {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            // setns changes the namespace of this thread only, which then ends.
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid namespace fd and flag; affects only the calling thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            socket.set_read_timeout(Some(timeout)).unwrap();
            socket
        })
        .join()
        .expect("socket in namespace")
    }

    /// Ids of the processes running in this namespace.
    pub fn pids(&self) -> Vec<i32> {
        try_run("ip", &["netns", "pids", &self.name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // A namespace lives on while a process is inside: kill any daemon a failed test left.
        for pid in self.pids() {
            // SAFETY: plain kill(2) of a process inside our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Err(e) = try_run("ip", &["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

/// A home: a NAT router and the hosts behind it.
pub struct Home {
    /// The router: `wan` on the internet, bridge `lan` for the hosts.
    pub router: Ns,
    /// The hosts on the LAN, `.11`, `.12`, …
    pub hosts: Vec<Ns>,
    /// The router's public address.
    pub wan: Ipv4Addr,
    lan: [u8; 3],
}

impl Home {
    /// The LAN address of host `i` (0-based): `.11`, `.12`, …
    pub fn host_addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.lan;
        Ipv4Addr::new(a, b, c, 11 + i as u8)
    }

    /// Unsolicited datagrams from the internet the router dropped so far.
    pub fn unsolicited_dropped(&self) -> u64 {
        self.router.counter("ip", "lootsync_nat", "unsolicited")
    }
}

/// The whole topology. Fields drop in order: homes (hosts, then routers), hub, internet.
pub struct Net {
    pub homes: [Home; 2],
    pub hub: Ns,
    pub inet: Ns,
}

impl Net {
    /// Builds the internet, the hub and two homes with `hosts[i]` hosts behind router i.
    pub fn new(hosts: [usize; 2]) -> Net {
        static NETS: AtomicU32 = AtomicU32::new(0);
        // One topology at a time: the first `ip netns add` on a machine sets up /run/netns,
        // and two doing that at once can race.
        static BUILDING: Mutex<()> = Mutex::new(());
        let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale_namespaces();
        let run_id = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            NETS.fetch_add(1, Ordering::Relaxed)
        );
        let ns = |role: &str| Ns::create(format!("{run_id}-{role}"));

        // The internet: one bridge, every public address on one /24.
        let inet = ns("inet");
        inet.ip(&["link", "add", "br0", "type", "bridge"]);
        inet.ip(&["link", "set", "br0", "up"]);
        let hub = ns("hub");
        plug(&inet, "hub", &hub, "eth0", HUB, 24);

        let homes = [0, 1].map(|i| {
            let router = ns(&format!("r{}", i + 1));
            plug(&inet, &format!("r{}", i + 1), &router, "wan", WAN[i], 24);
            router.ip(&["link", "add", "lan", "type", "bridge"]);
            let [a, b, c] = LAN[i];
            let gateway = Ipv4Addr::new(a, b, c, 1);
            router.ip(&["addr", "add", &format!("{gateway}/24"), "dev", "lan"]);
            router.ip(&["link", "set", "lan", "up"]);
            router.sysctl("net.ipv4.ip_forward", "1");
            router.nft(&nat_ruleset());
            let mut home = Home {
                router,
                hosts: Vec::new(),
                wan: WAN[i],
                lan: LAN[i],
            };
            for h in 0..hosts[i] {
                let host = ns(&format!("h{}{}", i + 1, (b'a' + h as u8) as char));
                let port = format!("h{h}");
                home.router.ip(&[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                    &host.name,
                ]);
                home.router.ip(&["link", "set", &port, "master", "lan"]);
                home.router.ip(&["link", "set", &port, "up"]);
                host.ip(&[
                    "addr",
                    "add",
                    &format!("{}/24", home.host_addr(h)),
                    "dev",
                    "eth0",
                ]);
                host.ip(&["link", "set", "eth0", "up"]);
                host.ip(&["route", "add", "default", "via", &gateway.to_string()]);
                home.hosts.push(host);
            }
            home
        });
        Net { homes, hub, inet }
    }

    /// Drops `percent` % of the UDP datagrams crossing the internet, at random. Every
    /// datagram between a home and the hub crosses the internet's bridge exactly once, so
    /// each is lost with exactly this probability. (nftables `numgen random` rather than tc
    /// netem: kernels built without `sch_netem`, like CI's, have no netem at all.)
    pub fn set_loss(&self, percent: u32) {
        let _ = try_run(
            "ip",
            &[
                "netns",
                "exec",
                &self.inet.name,
                "nft",
                "delete",
                "table",
                "bridge",
                "lootsync_loss",
            ],
        );
        if percent > 0 {
            // numgen yields 0..=99; 100 % is every datagram.
            let chance = if percent >= 100 {
                String::new()
            } else {
                format!("numgen random mod 100 < {percent} ")
            };
            self.inet.nft(&format!(
                r#"table bridge lootsync_loss {{
    counter lost {{ }}
    counter passed {{ }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        meta l4proto udp {chance}counter name "lost" drop
        meta l4proto udp counter name "passed"
    }}
}}
"#
            ));
        }
    }

    /// (lost, passed) UDP datagrams on the internet since [`Net::set_loss`].
    pub fn loss_counts(&self) -> (u64, u64) {
        (
            self.inet.counter("bridge", "lootsync_loss", "lost"),
            self.inet.counter("bridge", "lootsync_loss", "passed"),
        )
    }
}

/// A veth pair from `a` (named `a_if`, a port of a's bridge `br0`) to `b` (named `b_if`,
/// with address `addr/prefix`), created directly between the two namespaces.
fn plug(a: &Ns, a_if: &str, b: &Ns, b_if: &str, addr: Ipv4Addr, prefix: u8) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["link", "set", a_if, "master", "br0"]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", b_if]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// A home router's firewall: source NAT to the WAN address with the source port remapped
/// into [`NAT_PORTS`] at random, forwarding out of the LAN, and from the internet only what
/// answers a connection from inside (`ct state established,related`). Everything else from
/// the internet, to the router or to the LAN, is dropped and counted (`unsolicited`).
pub fn nat_ruleset() -> String {
    format!(
        r#"table ip lootsync_nat {{
    counter unsolicited {{ }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" meta l4proto {{ tcp, udp }} masquerade to :{}-{} random
        oifname "wan" masquerade
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" counter name "unsolicited" drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        iifname "lan" oifname "lan" accept
        iifname "lan" oifname "wan" accept
        iifname "wan" oifname "lan" ct state established,related accept
        iifname "wan" counter name "unsolicited" drop
    }}
}}
"#,
        NAT_PORTS.start(),
        NAT_PORTS.end()
    )
}

/// Deletes namespaces of ours whose creating process no longer exists (a run that was
/// SIGKILLed before its drops ran). Namespaces of live processes are left alone.
pub fn remove_stale_namespaces() {
    let Ok(list) = try_run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.split('-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            drop(Ns {
                name: name.to_owned(),
            });
        }
    }
}
