//! The `lootsync` command line: argument parsing, dispatch, and human or JSON output.
//!
//! `run` starts the daemon. The other commands talk to a running daemon over its control
//! socket; when none is running, `adjust`, `points` and `history` open the log directly
//! under the same lock (that is how an officer edits offline).

use crate::config::Config;
use crate::control::{self, AdjustResult, ControlError, PeerStatus, Request, StatusResult};
use crate::daemon::{self, DaemonOptions, LogControl};
use crate::ledger::HistoryRow;
use crate::ops;
use crate::store::StoreError;
use crate::sync::Now;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Command-line interface of `lootsync`.
#[derive(Debug, Parser)]
#[command(
    name = "lootsync",
    version,
    about = "Peer-to-peer loot-point ledger: every officer's adjustment, on every raider's machine",
    long_about = "Loot Sync keeps a raid group's loot-point adjustments identical on every member's \
machine with no server. `lootsync run` is the peer daemon: it joins a UDP multicast group channel, \
broadcasts new log entries and reconciles missing ones with its peers. The other commands talk to \
the running daemon over its control socket, or, when no daemon is running, open the log directly \
(that is how an officer adjusts points while offline; the change spreads when the daemon next \
runs with its group).\n\nWithout --config, the embedded defaults are used: loopback interface \
127.0.0.1, group 239.255.76.83:47683, state in ./lootsync-data."
)]
pub struct Cli {
    /// TOML config file (default: built-in loopback defaults, state in ./lootsync-data).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the peer daemon in the foreground (systemd runs this).
    Run,
    /// Record a point adjustment (durable on disk before it reports success).
    #[command(allow_negative_numbers = true)]
    Adjust {
        /// Player whose points change.
        #[arg(long, value_name = "NAME")]
        player: String,
        /// Points to add; negative to remove (e.g. --delta -5). Non-zero, at most
        /// 1,000,000,000 either way.
        #[arg(long, value_name = "N", value_parser = parse_delta)]
        delta: i64,
        /// Why (shown in history; at most 256 bytes).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Who makes the change (default: this node's name from the config).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Show every player's current total.
    Points {
        /// Print one JSON object mapping player to total, e.g. {"Alice":30,"Bob":-5}.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail in replay order, with running totals.
    History {
        /// Only this player's entries.
        #[arg(long, value_name = "NAME")]
        player: Option<String>,
        /// Print a JSON array of entries.
        #[arg(long)]
        json: bool,
    },
    /// Show the running daemon's node, sync state, peers and counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the peers the running daemon hears.
    Peers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch the running daemon's SYNC debug lines on or off, without a restart.
    Debug {
        /// on or off.
        state: OnOff,
    },
    /// Switch the running daemon's sync on or off (off: no group traffic at all; local
    /// adjusts are still recorded and spread once sync is back on).
    Sync {
        /// on or off.
        state: OnOff,
    },
    /// Make a new key file.
    Keygen {
        /// Which key.
        #[command(subcommand)]
        key: KeygenCommand,
    },
}

/// The keys `lootsync keygen` makes.
#[derive(Debug, Subcommand)]
pub enum KeygenCommand {
    /// A 32-byte random group key (mode 0600; never overwrites). Copy it to every member
    /// over a trusted channel and name it in `[security] group_key_file`.
    Group {
        /// Where to write the key.
        file: PathBuf,
    },
}

fn parse_delta(text: &str) -> Result<i64, String> {
    let max = crate::entry::MAX_ABS_DELTA;
    let out_of_range = || format!("must be a non-zero whole number from -{max} to {max}");
    let delta: i64 = text.trim().parse().map_err(|_| out_of_range())?;
    if delta == 0 || delta.abs() > max {
        return Err(out_of_range());
    }
    Ok(delta)
}

/// A switch position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Switch on.
    On,
    /// Switch off.
    Off,
}

/// Parses arguments, runs the command, and maps errors to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lootsync: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    let config = match path {
        Some(path) => Config::load(path)?,
        None => {
            let config = Config::default();
            config.validate().context("embedded default config")?;
            config
        }
    };
    Ok(config)
}

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Switches `sync=debug` on and off on top of the configured filter.
struct ReloadLogControl {
    base: String,
    handle: FilterHandle,
}

impl LogControl for ReloadLogControl {
    fn set_sync_debug(&self, enabled: bool) -> Result<(), String> {
        let directives = if enabled {
            format!("{},sync=debug", self.base)
        } else {
            format!("{},sync=info", self.base)
        };
        let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber: plain lines without colour when stderr is not a terminal
/// (journald). Returns a handle that switches SYNC debug lines at run time.
fn init_logging(default_filter: &str) -> Option<Arc<dyn LogControl>> {
    // RUST_LOG, when set, overrides the config so one run can be debugged without editing it.
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| default_filter.to_string());
    let filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init()
        .is_ok();
    installed.then(|| Arc::new(ReloadLogControl { base, handle }) as Arc<dyn LogControl>)
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // Making a key needs no config (the config may name the key that does not exist yet).
    if let Command::Keygen {
        key: KeygenCommand::Group { file },
    } = &cli.command
    {
        let id = crate::seal::generate_key_file(file)?;
        println!(
            "wrote group key {id} to {} (mode 0600); copy it to every member and set \
             [security] group_key_file",
            file.display()
        );
        return Ok(());
    }
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Run => {
            let log_control = init_logging(&config.log.level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime
                .block_on(daemon::run_until_signal(
                    config,
                    DaemonOptions {
                        log_control,
                        ..DaemonOptions::default()
                    },
                ))
                .context("daemon failed")?;
            Ok(())
        }
        Command::Adjust {
            player,
            delta,
            reason,
            actor,
        } => {
            init_logging("warn");
            let value = request(
                &config,
                Request::Adjust {
                    player,
                    delta,
                    reason,
                    actor,
                },
            )?;
            let result: AdjustResult = serde_json::from_value(value)?;
            let e = &result.entry;
            println!(
                "recorded {:+} for {} by {} ({}); {} now has {} points [{}]",
                e.delta, e.target, e.actor, e.reason, e.target, result.total, e.id
            );
            Ok(())
        }
        Command::Points { json } => {
            init_logging("warn");
            let value = request(&config, Request::Points {})?;
            let totals: BTreeMap<String, i64> = serde_json::from_value(value)?;
            if json {
                println!("{}", serde_json::to_string(&totals)?);
            } else {
                print_points(&totals);
            }
            Ok(())
        }
        Command::History { player, json } => {
            init_logging("warn");
            let value = request(&config, Request::History { player })?;
            let rows: Vec<HistoryRow> = serde_json::from_value(value)?;
            if json {
                let flat: Vec<serde_json::Value> = rows.iter().map(history_json).collect();
                println!("{}", serde_json::to_string(&flat)?);
            } else {
                print_history(&rows);
            }
            Ok(())
        }
        Command::Status { json } => {
            init_logging("warn");
            let value = request(&config, Request::Status {})?;
            if json {
                println!("{}", serde_json::to_string(&value)?);
            } else {
                let status: StatusResult = serde_json::from_value(value)?;
                print_status(&status);
            }
            Ok(())
        }
        Command::Peers { json } => {
            init_logging("warn");
            let value = request(&config, Request::Status {})?;
            let status: StatusResult = serde_json::from_value(value)?;
            if json {
                println!("{}", serde_json::to_string(&status.peers)?);
            } else if status.peers.is_empty() {
                println!("no peers heard");
            } else {
                print_peers(&status.peers);
            }
            Ok(())
        }
        Command::Debug { state } => {
            init_logging("warn");
            let enabled = state == OnOff::On;
            request(&config, Request::Debug { enabled })?;
            println!("SYNC debug logging {}", if enabled { "on" } else { "off" });
            Ok(())
        }
        Command::Sync { state } => {
            init_logging("warn");
            let enabled = state == OnOff::On;
            request(&config, Request::Sync { enabled })?;
            println!("sync {}", if enabled { "on" } else { "off" });
            Ok(())
        }
        Command::Keygen { .. } => unreachable!("handled before the config is loaded"),
    }
}

/// Sends a request to the running daemon, or runs it on the log directly when none runs.
fn request(config: &Config, request: Request) -> Result<serde_json::Value> {
    let socket = control::socket_path(&config.state_dir);
    match control::call(&socket, &request) {
        Ok(value) => return Ok(value),
        Err(ControlError::NotRunning { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    if matches!(
        request,
        Request::Status {} | Request::Sync { .. } | Request::Debug { .. }
    ) {
        bail!(
            "no daemon is running on {} (nothing listens on {}); start one with `lootsync run`",
            config.state_dir.display(),
            socket.display()
        );
    }
    let unix_ms = ops::system_unix_ms();
    let (mut peer, mut store) = match ops::open_offline(config, unix_ms) {
        Ok(opened) => opened,
        Err(StoreError::Locked { .. }) => bail!(
            "a lootsync daemon holds {} but its control socket {} does not answer (still starting?)",
            config.state_dir.display(),
            socket.display()
        ),
        Err(err) => return Err(err.into()),
    };
    let now = Now {
        mono_ms: 0,
        unix_ms,
    };
    let reply = ops::apply(&mut peer, &mut store, &config.node, now, request)
        .ok_or_else(|| anyhow!("this command needs a running daemon"))?;
    if reply.ok {
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(anyhow!(reply
            .error
            .unwrap_or_else(|| "request failed".into())))
    }
}

fn print_points(totals: &BTreeMap<String, i64>) {
    if totals.is_empty() {
        println!("no adjustments recorded yet");
        return;
    }
    let mut rows: Vec<(&String, &i64)> = totals.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!("{:<width$}  {:>8}", "player", "points");
    for (name, total) in rows {
        println!("{name:<width$}  {total:>8}");
    }
}

fn history_json(row: &HistoryRow) -> serde_json::Value {
    let e = &row.entry;
    serde_json::json!({
        "id": e.id,
        "at": e.at.0,
        "time": e.at.to_string(),
        "actor": e.actor,
        "player": e.target,
        "delta": e.delta,
        "new_total_as_authored": e.new_total,
        "total": row.total,
        "reason": e.reason,
    })
}

fn print_history(rows: &[HistoryRow]) {
    if rows.is_empty() {
        println!("no adjustments recorded yet");
        return;
    }
    for row in rows {
        let e = &row.entry;
        println!(
            "{}  {:<12} {:<12} {:>+6} -> {:>6}  {}",
            e.at, e.actor, e.target, e.delta, row.total, e.reason
        );
    }
}

fn print_peers(peers: &[PeerStatus]) {
    for peer in peers {
        println!(
            "  {:<16} {:<22} heard {:>6} ms ago  {}",
            peer.name.as_deref().unwrap_or("?"),
            peer.address,
            peer.last_heard_ms_ago,
            if peer.in_sync { "in sync" } else { "differs" }
        );
    }
}

fn print_status(status: &StatusResult) {
    println!("node:        {}", status.node);
    println!("group:       {}", status.group);
    println!(
        "sync:        {}",
        if status.sync_enabled { "on" } else { "off" }
    );
    println!("entries:     {}", status.entries);
    println!("fingerprint: {}", status.fingerprint);
    println!("peers:       {}", status.peers.len());
    print_peers(&status.peers);
    println!("counters:");
    for (name, value) in &status.counters {
        println!("  {name:<24} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn negative_delta_and_global_config_parse() {
        let cli = Cli::try_parse_from([
            "lootsync", "adjust", "--player", "Bob", "--delta", "-5", "--reason", "r", "--config",
            "x.toml",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert!(matches!(cli.command, Command::Adjust { delta: -5, .. }));
        assert!(Cli::try_parse_from(["lootsync", "adjust", "--player", "Bob"]).is_err());
        assert!(Cli::try_parse_from(["lootsync", "sync", "maybe"]).is_err());
        for bad in ["0", "abc", "1.5", "1000000001", "-99999999999999999999"] {
            let err = Cli::try_parse_from([
                "lootsync", "adjust", "--player", "Bob", "--delta", bad, "--reason", "r",
            ])
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("from -1000000000 to 1000000000"),
                "{bad}: {err}"
            );
        }
    }
}
