//! Many real daemons on loopback, for the figures that need more than a handful: a LAN of N
//! daemons on one multicast group (127.0.0.1, TTL 1), or a hub with N spokes that talk by
//! unicast only (no `[group] address`; each spoke lists the hub and nobody else, so spokes
//! never hear each other). Every daemon seals with one group key, as a deployment would,
//! and runs in this process on the bench's runtime (the daemon is a library: the same code
//! `lootsync run` runs). Counters are what each daemon's `status --json` shows.

use loot_sync::config::Config;
use loot_sync::control::{Adjust, Status, StatusResult};
use loot_sync::daemon::{self, DaemonOptions, LedgerObserver, RunningDaemon};
use loot_sync::proto::entry::{Entry, EntryId};
use loot_sync::store::keys::create_group_key_file;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which daemon of a fleet is the hub (hub fleets only).
pub const HUB: usize = 0;

/// Real daemons started together; stopped with [`Fleet::stop`].
pub struct Fleet {
    /// The daemons, in the order their configs were made (the hub first in a hub fleet);
    /// shared, so requests can run at once from spawned tasks.
    pub daemons: Vec<Arc<RunningDaemon>>,
    /// Whether this is a hub fleet (daemon [`HUB`] is the hub, the others its spokes).
    pub hub: bool,
    /// The daemons' heartbeat (the config default).
    pub heartbeat: Duration,
    // Kept for the daemons' state directories and the key file.
    _dir: tempfile::TempDir,
}

/// What one daemon (or a sum of daemons) sent and received, from its status counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams sent (every copy of a unicast fan-out counts).
    pub datagrams_sent: u64,
    /// Bytes of those datagrams.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes of those datagrams.
    pub bytes_received: u64,
    /// Reconciliation sessions this daemon started.
    pub sessions_started: u64,
    /// Datagrams the loss hook dropped on receipt ([`DaemonOptions::receive_drop_rate`]).
    pub hook_drops: u64,
}

impl Traffic {
    fn of(status: &StatusResult) -> Traffic {
        let counter = |name: &str| status.counters.get(name).copied().unwrap_or(0);
        Traffic {
            datagrams_sent: counter("datagrams_sent"),
            bytes_sent: counter("bytes_sent"),
            datagrams_received: counter("datagrams_received"),
            bytes_received: counter("bytes_received"),
            sessions_started: counter("sessions_started"),
            hook_drops: counter("dropped_by_test_hook"),
        }
    }

    /// What happened between `before` and `self`.
    pub fn since(self, before: Traffic) -> Traffic {
        Traffic {
            datagrams_sent: self.datagrams_sent - before.datagrams_sent,
            bytes_sent: self.bytes_sent - before.bytes_sent,
            datagrams_received: self.datagrams_received - before.datagrams_received,
            bytes_received: self.bytes_received - before.bytes_received,
            sessions_started: self.sessions_started - before.sessions_started,
            hook_drops: self.hook_drops - before.hook_drops,
        }
    }

    /// The sum of `all`.
    pub fn sum(all: &[Traffic]) -> Traffic {
        all.iter().fold(Traffic::default(), |a, t| Traffic {
            datagrams_sent: a.datagrams_sent + t.datagrams_sent,
            bytes_sent: a.bytes_sent + t.bytes_sent,
            datagrams_received: a.datagrams_received + t.datagrams_received,
            bytes_received: a.bytes_received + t.bytes_received,
            sessions_started: a.sessions_started + t.sessions_started,
            hook_drops: a.hook_drops + t.hook_drops,
        })
    }
}

/// The name of daemon `i` of the fleet whose group is `group`.
pub fn node_name(group: &str, i: usize) -> String {
    format!("{group}{i}")
}

/// A fleet daemon's config: `bench_config` on loopback, sealed with the fleet's key.
fn fleet_config(dir: &Path, node: &str, group: &str, port: u16) -> Config {
    let mut config = super::bench_config(dir, node, group, port);
    config.security.group_key_file = Some(dir.join("group.key"));
    config
}

impl Fleet {
    /// `n` daemons on one multicast group (`group` on `port`), each holding `entries`,
    /// sealing with a group key if `sealed`; `options(i)` gives daemon `i` its hooks, and
    /// `node` its name. Returns once every daemon hears the others and agrees with them.
    pub async fn lan(
        n: usize,
        group: &str,
        port: u16,
        entries: &[Entry],
        sealed: bool,
        options: impl Fn(usize) -> DaemonOptions,
    ) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        create_group_key_file(&dir.path().join("group.key")).unwrap();
        let mut configs = Vec::new();
        for i in 0..n {
            let mut config = fleet_config(dir.path(), &node_name(group, i), group, port);
            if !sealed {
                config.security.group_key_file = None;
            }
            super::seed_log(&config, entries);
            configs.push(config);
        }
        let heartbeat = configs[0].sync.heartbeat;
        let mut daemons = Vec::new();
        for (i, config) in configs.into_iter().enumerate() {
            daemons.push(Arc::new(daemon::start(config, options(i)).await.unwrap()));
        }
        let fleet = Fleet {
            daemons,
            hub: false,
            heartbeat,
            _dir: dir,
        };
        fleet.wait_in_sync(Duration::from_secs(120)).await;
        fleet
    }

    /// A hub (daemon [`HUB`]) and `spokes` spokes, unicast only: no multicast anywhere, each
    /// spoke lists the hub's whisper address and nothing else. Everyone holds `entries`.
    /// Returns once the hub hears every spoke in sync and every spoke hears the hub.
    pub async fn hub(
        spokes: usize,
        group: &str,
        entries: &[Entry],
        options: impl Fn(usize) -> DaemonOptions,
    ) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        create_group_key_file(&dir.path().join("group.key")).unwrap();
        // The port is ignored without a group address.
        let mut hub = fleet_config(dir.path(), &format!("{group}-hub"), group, 1);
        hub.group.address = None;
        super::seed_log(&hub, entries);
        let heartbeat = hub.sync.heartbeat;
        let hub = daemon::start(hub, options(HUB)).await.unwrap();
        let listed = hub.whisper_addr.to_string();
        let mut daemons = vec![Arc::new(hub)];
        for i in 1..=spokes {
            let mut spoke = fleet_config(dir.path(), &node_name(group, i), group, 1);
            spoke.group.address = None;
            spoke.peers.addresses = vec![listed.clone()];
            spoke.validate().expect("spoke config is valid");
            super::seed_log(&spoke, entries);
            daemons.push(Arc::new(daemon::start(spoke, options(i)).await.unwrap()));
        }
        let fleet = Fleet {
            daemons,
            hub: true,
            heartbeat,
            _dir: dir,
        };
        fleet.wait_in_sync(Duration::from_secs(120)).await;
        fleet
    }

    /// Polls status until every daemon hears the peers it should (all others on a LAN; the
    /// hub all spokes, a spoke the hub), all in sync with it (set-up, not measured).
    pub async fn wait_in_sync(&self, limit: Duration) {
        let started = Instant::now();
        let n = self.daemons.len();
        loop {
            let mut all = true;
            for (i, d) in self.daemons.iter().enumerate() {
                let status = d.request(Status {}).await.unwrap();
                let expected = match (self.hub, i) {
                    (false, _) => n - 1,
                    (true, HUB) => n - 1,
                    (true, _) => 1,
                };
                all &= status.peers.len() == expected && status.peers.iter().all(|p| p.in_sync);
            }
            if all {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the fleet did not come together within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each daemon's counters now.
    pub async fn traffic(&self) -> Vec<Traffic> {
        let mut all = Vec::new();
        for d in &self.daemons {
            all.push(Traffic::of(&d.request(Status {}).await.unwrap()));
        }
        all
    }

    /// How many entries each daemon holds now.
    pub async fn entries(&self) -> Vec<usize> {
        let mut all = Vec::new();
        for d in &self.daemons {
            all.push(d.request(Status {}).await.unwrap().entries);
        }
        all
    }

    /// Stops every daemon (no request may still be running).
    pub async fn stop(self) {
        for d in self.daemons {
            match Arc::try_unwrap(d) {
                Ok(d) => d.stop().await,
                Err(_) => panic!("a request to the daemon is still running"),
            }
        }
    }
}

/// What the observers saw: an adjust acknowledged on its daemon, or entries merged on one.
pub enum Seen {
    /// An adjust was acknowledged on its daemon.
    Acknowledged(EntryId, Instant),
    /// Daemon `.0` merged an entry from a peer.
    Merged(usize, EntryId, Instant),
}

/// Forwards every acknowledged or merged entry id on daemon `.1`, with the instant, to the
/// bench.
pub struct Reporter(pub tokio::sync::mpsc::UnboundedSender<Seen>, pub usize);

impl LedgerObserver for Reporter {
    fn acknowledged(&self, entry: &Entry) {
        let _ = self.0.send(Seen::Acknowledged(entry.id, Instant::now()));
    }
    fn merged(&self, entries: &[Entry]) {
        let at = Instant::now();
        for entry in entries {
            let _ = self.0.send(Seen::Merged(self.1, entry.id, at));
        }
    }
}

/// Daemon `i`'s options: a [`Reporter`] on `tx`, its RNG seeded with `i`.
pub fn reporting(tx: &tokio::sync::mpsc::UnboundedSender<Seen>, i: usize) -> DaemonOptions {
    DaemonOptions {
        observer: Some(Arc::new(Reporter(tx.clone(), i))),
        seed: Some(i as u64),
        ..DaemonOptions::default()
    }
}

/// Real-time propagation: `warmup + adjusts` adjusts, each on the next of `origins` in
/// turn, one at a time; for each, the time from the origin acknowledging it until the last
/// of `receivers` (other than the origin) has merged it, both instants taken inside the
/// daemons by their [`Reporter`]s on `rx`. Returns the samples after the warm-up (ms) and
/// how many took over a second (repaired by reconciliation after a lost datagram).
pub async fn propagation(
    fleet: &Fleet,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    origins: &[usize],
    receivers: &[usize],
    adjusts: usize,
    warmup: usize,
) -> (Vec<f64>, usize) {
    let mut samples = Vec::new();
    let mut slow = 0;
    for i in 0..warmup + adjusts {
        let origin = origins[i % origins.len()];
        let reply = fleet.daemons[origin]
            .request(Adjust {
                player: format!("player{}", i % 40),
                delta: 1,
                reason: "propagation bench".into(),
                actor: None,
            })
            .await
            .unwrap();
        let id: EntryId = reply.entry.id;
        let waiting: HashSet<usize> = receivers.iter().copied().filter(|r| *r != origin).collect();
        let (mut acknowledged, mut merged, mut last) = (None, HashSet::new(), None);
        while acknowledged.is_none() || merged.len() < waiting.len() {
            let seen = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("every daemon applies the adjust within 30 s")
                .unwrap();
            match seen {
                Seen::Acknowledged(seen, at) if seen == id => acknowledged = Some(at),
                Seen::Merged(node, seen, at) if seen == id && waiting.contains(&node) => {
                    merged.insert(node);
                    last = Some(last.map_or(at, |l: Instant| l.max(at)));
                }
                _ => {}
            }
        }
        let latency = super::ms(
            last.unwrap()
                .saturating_duration_since(acknowledged.unwrap()),
        );
        if latency > 1000.0 {
            slow += 1;
        }
        if i >= warmup {
            samples.push(latency);
        }
    }
    (samples, slow)
}
