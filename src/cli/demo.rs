//! `lootsync demo`: three peers in one process play the seed's scenarios on loopback.
//!
//! Alice, Bob and Carol are real daemons ([`daemon::start`]) with their own temporary state
//! directories, on the multicast group 239.255.76.83 at `--port`, interface 127.0.0.1, TTL 1:
//! nothing leaves this machine. Their SYNC lines are printed as they happen (HELLO
//! heartbeats only with `--verbose`), then each peer's final standings side by side. The
//! demo succeeds only if the three standings are identical.

use anyhow::{bail, Context, Result};
use loot_sync::config::Config;
use loot_sync::control::{Adjust, Points, Status, StatusResult, SwitchSync};
use loot_sync::core::sync::Now;
use loot_sync::daemon::{self, DaemonOptions, RunningDaemon};
use loot_sync::node;
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The demo's ledger name, so it never merges with a real `raid` ledger on the same port.
pub const DEMO_GROUP: &str = "demo";
/// The three peers.
pub const PEERS: [&str; 3] = ["alice", "bob", "carol"];
/// How long any one step may take to converge before the demo gives up.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// What `lootsync demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Multicast group port on loopback.
    pub port: u16,
    /// Also show HELLO heartbeat lines.
    pub verbose: bool,
}

/// Runs the demo. `Ok(true)` when all three peers end with identical standings.
pub fn run(options: &DemoOptions) -> Result<bool> {
    init_logging(options.verbose);
    // Removed when the demo ends, however it ends.
    let root = tempfile::Builder::new()
        .prefix("lootsync-demo-")
        .tempdir()
        .with_context(|| {
            format!(
                "cannot create a demo directory in {}",
                std::env::temp_dir().display()
            )
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(play(root.path(), options.port))
}

/// A loopback config for one demo peer: fast heartbeats so the demo takes seconds.
pub fn peer_config(root: &Path, node: &str, port: u16) -> Config {
    let mut config = Config {
        node: node.to_string(),
        state_dir: root.join(node),
        ..Config::default()
    };
    config.group.name = DEMO_GROUP.to_string();
    config.group.address = Some(loot_sync::config::EXAMPLE_GROUP_ADDRESS);
    config.group.port = port;
    config.group.interface = Ipv4Addr::LOCALHOST;
    config.group.ttl = 1;
    config.whisper.bind = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    config.sync.heartbeat = Duration::from_millis(200);
    config.sync.peer_timeout = Duration::from_millis(1500);
    // Three peers on one machine: the web page would be the first one's alone.
    config.http.enabled = false;
    config
}

async fn play(root: &Path, port: u16) -> Result<bool> {
    let configs: Vec<Config> = PEERS.iter().map(|n| peer_config(root, n, port)).collect();
    for config in &configs {
        config.validate().context("demo config")?;
    }
    println!(
        "Three peers on multicast group 239.255.76.83:{port}, interface 127.0.0.1, TTL 1; \
         state under {}",
        root.display()
    );

    banner("1. Late joiner: alice records adjustments alone, then bob and carol join");
    let alice = start(&configs[0]).await?;
    let players = ["Aria", "Brann", "Cyra", "Dax"];
    for (i, delta) in [30, 25, 20, 15, 10, -5, 5, 12].into_iter().enumerate() {
        let player = players[i % players.len()];
        adjust(&alice, player, delta, "raid attendance", None).await?;
    }
    let bob = start(&configs[1]).await?;
    converge(&[&alice, &bob], "bob catches up with alice").await?;
    let carol = start(&configs[2]).await?;
    converge(&[&alice, &bob, &carol], "carol catches up").await?;

    banner("2. Offline officer: bob stops, adjusts with no daemon running, then rejoins");
    bob.stop().await;
    println!("   bob's daemon stopped; recording an adjustment directly in his log");
    offline_adjust(&configs[1], "Dax", -10, "correction from last raid")?;
    let bob = start(&configs[1]).await?;
    converge(
        &[&alice, &bob, &carol],
        "bob's offline entry reaches everyone",
    )
    .await?;

    banner("3. Two officers, one player: alice and carol adjust Cyra with sync off");
    let before = points(&alice).await?.get("Cyra").copied().unwrap_or(0);
    for peer in [&alice, &carol] {
        peer.request(SwitchSync { enabled: false }).await?;
    }
    println!("   alice and carol: sync off");
    adjust(&alice, "Cyra", 15, "boss kill", Some("alice")).await?;
    adjust(&carol, "Cyra", 20, "first clear", Some("carol")).await?;
    println!("   alice: Cyra +15, carol: Cyra +20 (each recorded locally, nothing sent)");
    for peer in [&alice, &carol] {
        peer.request(SwitchSync { enabled: true }).await?;
    }
    println!("   alice and carol: sync on");
    converge(&[&alice, &bob, &carol], "both of Cyra's changes everywhere").await?;

    let daemons = [alice, bob, carol];
    let mut standings = Vec::new();
    for daemon in &daemons {
        standings.push(points(daemon).await?);
    }
    for daemon in daemons {
        daemon.stop().await;
    }

    banner("Final standings");
    print!("{}", side_by_side(&PEERS, &standings));
    let identical = standings.windows(2).all(|w| w[0] == w[1]);
    let cyra = standings[0].get("Cyra").copied().unwrap_or(0);
    if identical && cyra == before + 35 {
        println!(
            "standings identical on all three peers; Cyra got both officers' changes (+15 and +20)"
        );
        Ok(true)
    } else {
        println!("standings DIFFER between peers (or Cyra lost a change)");
        Ok(false)
    }
}

/// Renders one column per peer, one row per player (highest first by the first peer).
pub fn side_by_side(names: &[&str], standings: &[BTreeMap<String, i64>]) -> String {
    let players: BTreeSet<&String> = standings.iter().flat_map(|s| s.keys()).collect();
    let mut players: Vec<&String> = players.into_iter().collect();
    let first = standings.first();
    let total = |p: &String| first.and_then(|s| s.get(p)).copied().unwrap_or(0);
    players.sort_by(|a, b| total(b).cmp(&total(a)).then(a.cmp(b)));
    let width = players
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!("{:<width$}", "player");
    for name in names {
        out.push_str(&format!("  {name:>8}"));
    }
    out.push('\n');
    for player in players {
        out.push_str(&format!("{player:<width$}"));
        for standing in standings {
            match standing.get(player) {
                Some(total) => out.push_str(&format!("  {total:>8}")),
                None => out.push_str(&format!("  {:>8}", "-")),
            }
        }
        out.push('\n');
    }
    out
}

fn banner(title: &str) {
    println!("\n== {title} ==");
}

async fn start(config: &Config) -> Result<RunningDaemon> {
    daemon::start(config.clone(), DaemonOptions::default())
        .await
        .with_context(|| format!("cannot start peer {}", config.node))
}

async fn adjust(
    daemon: &RunningDaemon,
    player: &str,
    delta: i64,
    reason: &str,
    actor: Option<&str>,
) -> Result<()> {
    daemon
        .request(Adjust {
            player: player.into(),
            delta,
            reason: reason.into(),
            actor: actor.map(str::to_string),
        })
        .await?;
    Ok(())
}

/// Records an adjustment the way `lootsync adjust` does with no daemon running.
fn offline_adjust(config: &Config, player: &str, delta: i64, reason: &str) -> Result<()> {
    let unix_ms = node::system_unix_ms();
    let (mut peer, mut store) = node::open_offline(config, unix_ms)?;
    let now = Now {
        mono_ms: 0,
        unix_ms,
    };
    let adjust = Adjust {
        player: player.into(),
        delta,
        reason: reason.into(),
        actor: None,
    };
    node::apply(&mut peer, &mut store, &config.node, now, adjust)?;
    println!("   bob (offline): {player} {delta:+} \"{reason}\" is on disk");
    Ok(())
}

async fn points(daemon: &RunningDaemon) -> Result<BTreeMap<String, i64>> {
    Ok(daemon.request(Points {}).await?)
}

async fn status(daemon: &RunningDaemon) -> Result<StatusResult> {
    Ok(daemon.request(Status {}).await?)
}

/// Waits until every daemon holds the same entry set (same fingerprint).
async fn converge(daemons: &[&RunningDaemon], what: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut fingerprints = BTreeSet::new();
        for daemon in daemons {
            fingerprints.insert(status(daemon).await?.fingerprint);
        }
        if fingerprints.len() == 1 {
            let entries = fingerprints.first().cloned().unwrap_or_default();
            println!(
                "   converged in {} ms: {what} (entries:fingerprint {entries})",
                started.elapsed().as_millis()
            );
            return Ok(());
        }
        if started.elapsed() > STEP_LIMIT {
            bail!("peers did not converge within {STEP_LIMIT:?}: {what} ({fingerprints:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shows the daemons' own lines and every SYNC line on stdout, interleaved with the
/// demo's narration.
fn init_logging(verbose: bool) {
    let filter = EnvFilter::new("warn,loot_sync=info,sync=debug");
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(HideHeartbeats { verbose })
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(std::io::stdout().is_terminal())
                .without_time()
                .with_target(false),
        )
        .try_init();
}

/// Drops the HELLO heartbeat lines (five a second per peer in the demo) unless verbose, so
/// the lines that tell the story stay readable.
struct HideHeartbeats {
    verbose: bool,
}

impl<S: tracing::Subscriber> Layer<S> for HideHeartbeats {
    fn event_enabled(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) -> bool {
        if self.verbose {
            return true;
        }
        struct Message(bool);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").contains(" HELLO ") {
                    self.0 = true;
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        !message.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_shows_every_player_and_gaps() {
        let a = BTreeMap::from([("Aria".to_string(), 30), ("Dax".to_string(), -5)]);
        let b = BTreeMap::from([("Aria".to_string(), 30)]);
        let table = side_by_side(&["alice", "bob"], &[a, b]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].contains("alice") && lines[0].contains("bob"));
        assert!(lines[1].starts_with("Aria") && lines[1].matches("30").count() == 2);
        assert!(
            lines[2].starts_with("Dax") && lines[2].ends_with('-'),
            "{table}"
        );
    }

    #[test]
    fn demo_config_stays_on_loopback() {
        let config = peer_config(
            Path::new("/tmp/x"),
            "bob",
            crate::cli::args::DEMO_DEFAULT_PORT,
        );
        config.validate().unwrap();
        assert_eq!(config.group.interface, Ipv4Addr::LOCALHOST);
        assert!(config.group.ttl <= 1);
        assert_eq!(config.group.name, DEMO_GROUP);
    }
}
