//! Real daemons behind real NAT (issue 12, "Beyond one LAN"), in network namespaces this test
//! builds itself: a hub with a public address and two homes behind routers that remap source
//! ports and drop unsolicited inbound. The topology, its addresses and firewall rules are in
//! `tests/nat/net.rs`; how the daemons run and are controlled is in `tests/nat/daemon.rs`.
//!
//! Needs root (network namespaces) and `ip` and `nft` (`scripts/test` installs them). Without
//! them each test prints a SKIP line and passes, unless `CI` is set to a true value: then it
//! fails, so CI can never pass without having run them.

#[path = "nat/daemon.rs"]
mod daemon;
#[path = "nat/net.rs"]
mod net;

use daemon::{group_key, wait_until, Daemon, WHISPER_PORT};
use net::{tool_path, Net, HUB, NAT_PORTS, WAN};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Whether `CI` is set to a true value (anything but empty, `0`, `false`, `no`, `off`).
fn in_ci() -> Option<String> {
    let value = std::env::var("CI").ok()?;
    let v = value.trim().to_ascii_lowercase();
    (!matches!(v.as_str(), "" | "0" | "false" | "no" | "off")).then_some(value)
}

/// True when this test can build namespaces (root, `ip`, `nft`). Otherwise: under CI a
/// failure naming what is missing; elsewhere a SKIP line, and the test returns.
fn can_run(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (creating network namespaces needs it)".to_owned());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if tool_path(tool).is_none() {
            missing.push(format!("`{tool}` (Debian package {package})"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let what = format!("nat::{test} needs {}", missing.join(" and "));
    if let Some(ci) = in_ci() {
        panic!(
            "{what}. CI={ci}, so this is a failure, not a skip: run the tests as root through \
             `scripts/test`, which installs the tools"
        );
    }
    // Straight to stderr, past the test harness's output capture, so the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {what}; run `scripts/test --test nat` as root to run it (with CI=true it fails)"
    );
    false
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// The harness itself, before any daemon: a datagram from a home host reaches the hub from
/// the router's public address with the port remapped, the hub's reply gets back in, and
/// anything from the internet that answers nothing is dropped at the router.
#[test]
fn nat_harness_remaps_ports_and_drops_unsolicited_inbound() {
    if !can_run("nat_harness_remaps_ports_and_drops_unsolicited_inbound") {
        return;
    }
    let started = Instant::now();
    let net = Net::new([2, 1]);
    let home1 = &net.homes[0];
    let home2 = &net.homes[1];
    let wait = Duration::from_secs(5);
    let hub = net.hub.udp_socket(sock(HUB, WHISPER_PORT), wait);
    let hub_other = net.hub.udp_socket(sock(HUB, WHISPER_PORT + 1), wait);
    let h1a = home1.hosts[0].udp_socket(sock(home1.host_addr(0), WHISPER_PORT), wait);
    let h1b = home1.hosts[1].udp_socket(sock(home1.host_addr(1), WHISPER_PORT), wait);
    let h2a = home2.hosts[0].udp_socket(sock(home2.host_addr(0), WHISPER_PORT), wait);
    let mut buf = [0u8; 64];

    // Out through NAT: the hub sees the router's WAN address and a remapped port.
    h1a.send_to(b"from 1a", sock(HUB, WHISPER_PORT)).unwrap();
    let (n, seen_1a) = hub
        .recv_from(&mut buf)
        .expect("1a's datagram reaches the hub");
    assert_eq!(&buf[..n], b"from 1a");
    assert_eq!(
        seen_1a.ip(),
        home1.wan,
        "source NAT to home 1's WAN address"
    );
    assert!(
        NAT_PORTS.contains(&seen_1a.port()),
        "source port remapped into {NAT_PORTS:?}: {seen_1a}"
    );
    // Two hosts behind one address, same inside port: two different outside ports.
    h1b.send_to(b"from 1b", sock(HUB, WHISPER_PORT)).unwrap();
    let (n, seen_1b) = hub
        .recv_from(&mut buf)
        .expect("1b's datagram reaches the hub");
    assert_eq!(&buf[..n], b"from 1b");
    assert_eq!(seen_1b.ip(), home1.wan);
    assert!(NAT_PORTS.contains(&seen_1b.port()), "{seen_1b}");
    assert_ne!(
        seen_1a.port(),
        seen_1b.port(),
        "one mapping per inside socket"
    );
    h2a.send_to(b"from 2a", sock(HUB, WHISPER_PORT)).unwrap();
    let (n, seen_2a) = hub
        .recv_from(&mut buf)
        .expect("2a's datagram reaches the hub");
    assert_eq!(&buf[..n], b"from 2a");
    assert_eq!(
        seen_2a.ip(),
        home2.wan,
        "source NAT to home 2's WAN address"
    );
    assert!(NAT_PORTS.contains(&seen_2a.port()), "{seen_2a}");

    // The reply to the address seen gets back in, to the right host.
    hub.send_to(b"reply 1a", seen_1a).unwrap();
    let (n, from) = h1a.recv_from(&mut buf).expect("the hub's reply reaches 1a");
    assert_eq!(
        (&buf[..n], from),
        (&b"reply 1a"[..], sock(HUB, WHISPER_PORT))
    );
    hub.send_to(b"reply 2a", seen_2a).unwrap();
    let (n, _) = h2a.recv_from(&mut buf).expect("the hub's reply reaches 2a");
    assert_eq!(&buf[..n], b"reply 2a");

    // Unsolicited: to the mapped port from another hub port, to the inside port (what a
    // peer would try with the port advertised in a HELLO), and from the other home's router
    // address. Each is dropped and counted at home 1's router; none reaches a host.
    let before = home1.unsolicited_dropped();
    hub_other.send_to(b"unsolicited 1", seen_1a).unwrap();
    hub.send_to(b"unsolicited 2", sock(home1.wan, WHISPER_PORT))
        .unwrap();
    h2a.send_to(b"unsolicited 3", seen_1a).unwrap();
    wait_until(
        wait,
        "home 1's router to drop 3 unsolicited datagrams",
        || home1.unsolicited_dropped() >= before + 3,
    );
    for host in [&h1a, &h1b] {
        host.set_nonblocking(true).unwrap();
        let got = host.recv_from(&mut buf);
        assert!(
            matches!(&got, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "nothing unsolicited gets in: {got:?}"
        );
    }
    // And the homes' LANs cannot be addressed from the internet at all.
    let direct = hub.send_to(b"direct", sock(home1.host_addr(0), WHISPER_PORT));
    assert!(
        direct.is_err(),
        "the hub has no route into a home: {direct:?}"
    );

    // Loss: with 100 % every datagram over the internet is dropped and counted.
    net.set_loss(100);
    h1a.send_to(b"lost", sock(HUB, WHISPER_PORT)).unwrap();
    wait_until(wait, "the internet to drop a datagram", || {
        net.loss_counts().0 >= 1
    });
    net.set_loss(0);
    eprintln!("nat harness: {:?}", started.elapsed());
}

/// A hub (listing nobody) and one daemon in each home (listing the hub), no multicast.
struct Scenario {
    hub: Daemon,
    homes: [Daemon; 2],
    // Dropped after the daemons (fields drop in order), and the directory last.
    net: Net,
    _dir: tempfile::TempDir,
    started: Instant,
}

impl Scenario {
    /// None (after a SKIP line) when this machine cannot run it.
    fn new(test: &str) -> Option<Scenario> {
        if !can_run(test) {
            return None;
        }
        let started = Instant::now();
        let net = Net::new([1, 1]);
        let dir = tempfile::tempdir().unwrap();
        let key = group_key(dir.path());
        let hub_addr = sock(HUB, WHISPER_PORT).to_string();
        let hub = Daemon::new(dir.path(), &net.hub, "hub", &[], &key);
        let homes = [0, 1].map(|i| {
            let ns = &net.homes[i].hosts[0];
            Daemon::new(
                dir.path(),
                ns,
                &format!("home{}", i + 1),
                std::slice::from_ref(&hub_addr),
                &key,
            )
        });
        Some(Scenario {
            hub,
            homes,
            net,
            _dir: dir,
            started,
        })
    }

    fn all(&self) -> [&Daemon; 3] {
        [&self.hub, &self.homes[0], &self.homes[1]]
    }

    fn start_all(&mut self) {
        self.hub.start();
        self.homes[0].start();
        self.homes[1].start();
    }
}

/// Waits until `daemons` all have exactly `expected` as totals and one fingerprint; returns
/// the time it took. On timeout the panic shows what each daemon had last.
fn wait_converged(
    daemons: &[&Daemon],
    expected: &BTreeMap<String, i64>,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let seen: Vec<(BTreeMap<String, i64>, serde_json::Value)> = daemons
            .iter()
            .map(|d| (d.points(), d.status()["fingerprint"].clone()))
            .collect();
        let prints: std::collections::BTreeSet<String> =
            seen.iter().map(|(_, print)| print.to_string()).collect();
        if seen.iter().all(|(points, _)| points == expected) && prints.len() == 1 {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let report: Vec<String> = daemons
                .iter()
                .zip(&seen)
                .map(|(d, (points, print))| format!("{}: {points:?} fingerprint {print}", d.name))
                .collect();
            panic!(
                "timed out after {limit:?} waiting for the totals {expected:?} with one \
                 fingerprint; last seen:\n{}",
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Adjusts `player` by each delta on `daemon`; the sum of what was acknowledged is added to
/// `totals`.
fn adjust_all(daemon: &Daemon, player: &str, deltas: &[i64], totals: &mut BTreeMap<String, i64>) {
    for &delta in deltas {
        daemon
            .adjust(player, delta)
            .unwrap_or_else(|e| panic!("{}: adjust: {e}", daemon.name));
        *totals.entry(player.to_owned()).or_default() += delta;
    }
}

/// The peers in a `status` reply.
fn peers(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["peers"].as_array().cloned().unwrap_or_default()
}

/// Waits until `daemon`'s `status --json` satisfies `check`; on timeout the panic shows the
/// last status seen.
fn wait_for_status(daemon: &Daemon, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let limit = Duration::from_secs(10);
    let start = Instant::now();
    loop {
        let last = daemon.status();
        if check(&last) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {}: {what}; last status: {last:#}",
            daemon.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `peer` (from `status --json`) is named `name`, is reached `how`, and its address
/// satisfies `addr`.
fn is_peer(
    peer: &serde_json::Value,
    name: &str,
    how: &str,
    addr: impl Fn(SocketAddr) -> bool,
) -> bool {
    peer["name"] == name
        && peer["reached"] == how
        && peer["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .is_some_and(addr)
}

/// Two homes behind two NATs meet only through the hub: an adjust in either home reaches the
/// other. The hub sees each home at its router's address and a remapped port (learned);
/// each home sees only the hub (listed), never the other home.
#[test]
fn two_homes_behind_two_nats_reach_each_other_through_the_hub() {
    let Some(mut s) = Scenario::new("two_homes_behind_two_nats_reach_each_other_through_the_hub")
    else {
        return;
    };
    s.start_all();
    let mut totals = BTreeMap::new();
    adjust_all(&s.homes[0], "Aria", &[30], &mut totals);
    let t1 = wait_converged(&s.all(), &totals, Duration::from_secs(15));
    adjust_all(&s.homes[1], "Bryn", &[-5, 12], &mut totals);
    let t2 = wait_converged(&s.all(), &totals, Duration::from_secs(15));

    // How each side sees the other: the hub sees each home at its router's address with a
    // remapped port; each home sees the hub alone, at its listed address.
    wait_for_status(
        &s.hub,
        "both homes learned at their routers' addresses",
        |st| {
            let peers = peers(st);
            peers.len() == 2
                && (0..2).all(|i| {
                    peers.iter().any(|p| {
                        is_peer(p, &format!("home{}", i + 1), "learned", |a| {
                            a.ip() == WAN[i] && NAT_PORTS.contains(&a.port())
                        })
                    })
                })
        },
    );
    for home in &s.homes {
        wait_for_status(home, "exactly one peer: the hub, listed, in sync", |st| {
            let peers = peers(st);
            peers.len() == 1
                && is_peer(&peers[0], "hub", "listed", |a| a == sock(HUB, WHISPER_PORT))
                && peers[0]["in_sync"] == true
        });
    }
    // The real CLI, inside home 2's namespace, prints the same totals.
    let printed: BTreeMap<String, i64> =
        serde_json::from_str(&s.homes[1].cli(&["points", "--json"])).unwrap();
    assert_eq!(printed, totals);
    eprintln!(
        "two homes: home 1 -> home 2 in {t1:?}, home 2 -> home 1 in {t2:?}, test {:?}",
        s.started.elapsed()
    );
}

/// Officers never online together converge through the hub: home 1 adjusts and goes away,
/// home 2 comes, gets home 1's entries from the hub, adjusts and goes away, and home 1 comes
/// back and gets home 2's.
#[test]
fn store_and_forward_between_homes_never_online_together() {
    let Some(mut s) = Scenario::new("store_and_forward_between_homes_never_online_together") else {
        return;
    };
    let mut totals = BTreeMap::new();
    s.hub.start();
    s.homes[0].start();
    adjust_all(&s.homes[0], "Aria", &[1, 2, 3, 4, 5], &mut totals);
    adjust_all(&s.homes[0], "Cato", &[-7], &mut totals);
    wait_converged(&[&s.hub, &s.homes[0]], &totals, Duration::from_secs(15));
    s.homes[0].stop();

    s.homes[1].start();
    let t1 = wait_converged(&[&s.hub, &s.homes[1]], &totals, Duration::from_secs(15));
    adjust_all(&s.homes[1], "Bryn", &[10, 20], &mut totals);
    adjust_all(&s.homes[1], "Aria", &[-1], &mut totals);
    wait_converged(&[&s.hub, &s.homes[1]], &totals, Duration::from_secs(15));
    s.homes[1].stop();

    s.homes[0].start();
    let t2 = wait_converged(&[&s.hub, &s.homes[0]], &totals, Duration::from_secs(15));
    assert_eq!(s.hub.status()["entries"], 9, "every entry once");
    // Home 2 is offline: its log, read directly by the CLI in its namespace, has it all too.
    let offline: BTreeMap<String, i64> =
        serde_json::from_str(&s.homes[1].cli(&["points", "--json"])).unwrap();
    assert_eq!(offline, totals);
    eprintln!(
        "store and forward: home 2 caught up in {t1:?}, home 1 in {t2:?}, test {:?}",
        s.started.elapsed()
    );
}

/// A hub that lost its state (restarted on an empty state directory) refills from the homes,
/// and carries new entries between them again.
#[test]
fn hub_restarted_with_empty_state_refills_from_the_homes() {
    let Some(mut s) = Scenario::new("hub_restarted_with_empty_state_refills_from_the_homes") else {
        return;
    };
    s.start_all();
    let mut totals = BTreeMap::new();
    adjust_all(&s.homes[0], "Aria", &[5, 6, 7], &mut totals);
    adjust_all(&s.homes[1], "Bryn", &[-3, 4], &mut totals);
    wait_converged(&s.all(), &totals, Duration::from_secs(15));

    s.hub.stop();
    std::fs::remove_dir_all(&s.hub.state).unwrap();
    s.hub.start();
    let refill = wait_converged(&s.all(), &totals, Duration::from_secs(20));
    assert_eq!(s.hub.status()["entries"], 5);

    adjust_all(&s.homes[1], "Cato", &[9], &mut totals);
    let after = wait_converged(&s.all(), &totals, Duration::from_secs(15));
    eprintln!(
        "hub restart: refilled in {refill:?}, next entry across in {after:?}, test {:?}",
        s.started.elapsed()
    );
}

/// 20 % of the datagrams on the internet lost while officers in both homes adjust at once:
/// all three daemons end with identical totals, the sum of every acknowledged delta.
#[test]
fn lossy_internet_two_officers_adjusting_at_once_converge() {
    let Some(mut s) = Scenario::new("lossy_internet_two_officers_adjusting_at_once_converge")
    else {
        return;
    };
    s.start_all();
    s.net.set_loss(20);
    const ADJUSTS: i64 = 50;
    let made: Vec<BTreeMap<String, i64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = s
            .homes
            .iter()
            .enumerate()
            .map(|(h, home)| {
                scope.spawn(move || {
                    let mut totals = BTreeMap::new();
                    for i in 0..ADJUSTS {
                        // Both homes touch the same players.
                        let player = ["Aria", "Bryn", "Cato"][i as usize % 3];
                        let delta = if h == 0 { i + 1 } else { -(2 * i) - 1 };
                        adjust_all(home, player, &[delta], &mut totals);
                    }
                    totals
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut totals = BTreeMap::new();
    for per_home in made {
        for (player, sum) in per_home {
            *totals.entry(player).or_default() += sum;
        }
    }
    let took = wait_converged(&s.all(), &totals, Duration::from_secs(30));
    for d in s.all() {
        assert_eq!(d.status()["entries"], 2 * ADJUSTS, "{}", d.name);
    }
    let (lost, passed) = s.net.loss_counts();
    assert!(lost > 0, "the internet lost nothing ({passed} passed)");
    eprintln!(
        "20 % loss: converged {took:?} after the last adjust; {lost} datagrams lost, {passed} \
         passed ({:.0} %); test {:?}",
        100.0 * lost as f64 / (lost + passed).max(1) as f64,
        s.started.elapsed()
    );
}

/// Multicast keeps working beside unicast: two daemons on home 1's LAN find each other on
/// the multicast group (one peer each, though each also hears the other's whisper socket)
/// and reach home 2 through the hub, which sees all three homes' daemons as learned.
#[test]
fn multicast_on_a_home_lan_beside_the_hub() {
    if !can_run("multicast_on_a_home_lan_beside_the_hub") {
        return;
    }
    let started = Instant::now();
    let net = Net::new([2, 1]);
    let dir = tempfile::tempdir().unwrap();
    let key = group_key(dir.path());
    let hub_addr = [sock(HUB, WHISPER_PORT).to_string()];
    let home1 = &net.homes[0];
    let mut lan: Vec<Daemon> = (0..2)
        .map(|h| {
            let name = format!("home1{}", (b'a' + h as u8) as char);
            let ns = &home1.hosts[h];
            Daemon::with_multicast(dir.path(), ns, &name, &hub_addr, &key, home1.host_addr(h))
        })
        .collect();
    let mut far = Daemon::new(dir.path(), &net.homes[1].hosts[0], "home2", &hub_addr, &key);
    let mut hub = Daemon::new(dir.path(), &net.hub, "hub", &[], &key);
    hub.start();
    for d in lan.iter_mut() {
        d.start();
    }
    far.start();

    let mut totals = BTreeMap::new();
    adjust_all(&far, "Aria", &[4], &mut totals);
    adjust_all(&lan[1], "Bryn", &[-2], &mut totals);
    let all = [&hub, &lan[0], &lan[1], &far];
    let took = wait_converged(&all, &totals, Duration::from_secs(15));
    for (me, other) in [(0, 1), (1, 0)] {
        let other_name = lan[other].name.clone();
        let other_ip = home1.host_addr(other);
        wait_for_status(
            &lan[me],
            "the LAN neighbour by multicast and the hub, once each",
            |st| {
                let peers = peers(st);
                peers.len() == 2
                    && peers
                        .iter()
                        .any(|p| is_peer(p, &other_name, "multicast", |a| a.ip() == other_ip))
                    && peers
                        .iter()
                        .any(|p| is_peer(p, "hub", "listed", |a| a == sock(HUB, WHISPER_PORT)))
            },
        );
    }
    wait_for_status(&hub, "three learned peers behind two NATs", |st| {
        let peers = peers(st);
        peers.len() == 3
            && ["home1a", "home1b", "home2"].iter().all(|name| {
                peers.iter().any(|p| {
                    is_peer(p, name, "learned", |a| {
                        WAN.iter().any(|&wan| a.ip() == wan) && NAT_PORTS.contains(&a.port())
                    })
                })
            })
    });
    eprintln!(
        "multicast beside the hub: converged in {took:?}, test {:?}",
        started.elapsed()
    );
}
