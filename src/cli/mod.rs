//! The `lootsync` command line: argument parsing, dispatch, and human or JSON output.
//!
//! `run` starts the daemon. The other commands talk to a running daemon over its control
//! socket; when none is running, `adjust`, `points` and `history` open the log directly
//! under the same lock (that is how an officer edits offline).

pub mod demo;
pub mod docs;
pub mod export;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use docs as cli_docs;
use export::ExportFormat;
use loot_sync::config::starter as init;
use loot_sync::config::Config;
use loot_sync::control::{self, AdjustResult, ControlError, PeerStatus, Request, StatusResult};
use loot_sync::core::ledger::HistoryRow;
use loot_sync::core::sync::Now;
use loot_sync::daemon::{self, DaemonOptions, LogControl};
use loot_sync::node as ops;
use loot_sync::node::progress;
use loot_sync::store::verify::{self, RepairOutcome, VerifyReport};
use loot_sync::store::StoreError;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
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

/// Which kind of key `keygen` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyKind {
    /// The 32-byte group key that seals every datagram (`security.group_key_file`). Copy it
    /// to every member over a trusted channel.
    Group,
    /// An officer's signing key (`security.officer_key_file`).
    Officer,
    /// The group's root key, which signs roster changes (`security.root_key_file`).
    Root,
}

/// `lootsync officer ...`
#[derive(Debug, Subcommand)]
pub enum OfficerCommand {
    /// Make NAME an officer whose entries are signed by PUBKEY.
    Add {
        /// The officer's name.
        name: String,
        /// The officer's public key, as printed by `lootsync keygen officer`.
        #[arg(value_name = "PUBKEY")]
        public_key: String,
        /// The root secret key file (default: security.root_key_file).
        #[arg(long, value_name = "FILE")]
        root_key: Option<PathBuf>,
    },
    /// Remove the officer NAME and revoke their key for good. Their entries that count on
    /// this peer now keep counting (they are listed in the revocation); any other entry
    /// signed by the key never counts, whatever date it carries. Sync first, so this peer
    /// has heard of every entry of theirs you mean to keep.
    Remove {
        /// The officer's name.
        name: String,
        /// Keep none of their entries (for a stolen key: everything it signed stops
        /// counting).
        #[arg(long)]
        revoke_all: bool,
        /// The root secret key file (default: security.root_key_file).
        #[arg(long, value_name = "FILE")]
        root_key: Option<PathBuf>,
    },
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
    /// Check the whole log (framing, checksums, entries and their bounds, duplicate ids)
    /// and print a summary. Exits non-zero if the log is damaged. Needs the log to itself:
    /// stop the daemon first.
    Verify,
    /// Rewrite a damaged log with every intact record. The damaged file is kept as
    /// <group>.lootlog.damaged-<unix ms>, never deleted; sync refills lost entries from
    /// peers. Needs the log to itself: stop the daemon first.
    Repair,
    /// Switch the running daemon's sync on or off (off: no group traffic at all; local
    /// adjusts are still recorded and spread once sync is back on).
    Sync {
        /// on or off.
        state: OnOff,
    },
    /// Export the standings, or with --history the full audit trail, to stdout.
    Export {
        /// csv (RFC 4180, header line) or json (one array).
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// The full audit trail in replay order with running totals, instead of standings.
        #[arg(long)]
        history: bool,
    },
    /// Play the seed's scenarios with three peers in this process, on loopback, and print
    /// their final standings side by side (exit status 0 only if they are identical).
    Demo {
        /// Multicast group port (on 127.0.0.1, TTL 1).
        #[arg(long, default_value_t = demo::DEFAULT_PORT, value_name = "PORT")]
        port: u16,
        /// Also show the HELLO heartbeat lines.
        #[arg(long)]
        verbose: bool,
    },
    /// Configuration file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a new secret key to FILE (mode 0600, never overwriting) and print its public
    /// key (officer, root). The group key (`keygen group`) seals every datagram; an officer
    /// key signs adjusts; the root key (`keygen root`) signs roster changes.
    Keygen {
        /// Which key: `group`, `officer` or `root` (the last two are ed25519 keypairs).
        kind: KeyKind,
        /// Where to write the secret key.
        file: PathBuf,
    },
    /// Change the officer roster (appends an entry signed by the group's root key).
    #[command(subcommand)]
    Officer(OfficerCommand),
    /// Write a commented starter config (lootsync.toml) into DIR; never overwrites.
    Init {
        /// Directory to write into (created if missing).
        #[arg(default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the shell completion script for SHELL.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the lootsync(1) man page (roff), or write every page into a directory.
    Man {
        /// Write lootsync.1 and one page per subcommand into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `lootsync config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE and print the effective configuration (defaults filled in); errors
    /// name the key, and syntax errors the line and column.
    Check {
        /// The config file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn parse_delta(text: &str) -> Result<i64, String> {
    let max = loot_sync::proto::entry::MAX_ABS_DELTA;
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
    if !matches!(cli.command, Command::Run | Command::Demo { .. }) {
        stop_quietly_when_stdout_closes();
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lootsync: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Restores the default SIGPIPE action, so `lootsync export | head` ends quietly like any
/// Unix tool instead of panicking in `println!` (Rust ignores SIGPIPE). Not for `run` and
/// `demo`: a daemon must survive a client that hangs up. The control client sends with
/// MSG_NOSIGNAL, so a daemon vanishing mid-request is still an error message.
fn stop_quietly_when_stdout_closes() {
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler code; this runs
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The embedded defaults, used when no `--config` is given.
fn default_config() -> Result<Config> {
    let config = Config::default();
    config.validate().context("embedded default config")?;
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

/// Runs the commands that need no config file; gives the others back.
fn run_standalone(command: Command) -> Result<Option<Command>> {
    match command {
        Command::Demo { port, verbose } => {
            if demo::run(&demo::DemoOptions { port, verbose })? {
                Ok(None)
            } else {
                bail!("the three peers ended with different standings")
            }
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let config = Config::load(&file)?;
            if let Some(group) = &config.control.group {
                // Valid syntax is not enough: the daemon needs the group on this machine.
                control::group_id(group)?;
            }
            eprintln!("{}: valid", file.display());
            print!("{}", config.to_toml_string());
            Ok(None)
        }
        Command::Keygen {
            kind: KeyKind::Group,
            file,
        } => {
            let id = loot_sync::proto::seal::generate_key_file(&file)?;
            println!(
                "wrote group key {id} to {} (mode 0600); copy it to every member and set \
                 [security] group_key_file",
                file.display()
            );
            Ok(None)
        }
        Command::Keygen { kind, file } => {
            let stored_as = match kind {
                KeyKind::Root => loot_sync::store::keyfile::KeyKind::Root,
                _ => loot_sync::store::keyfile::KeyKind::Officer,
            };
            let key = loot_sync::proto::signature::SecretKey::create_file(&file, stored_as)?;
            eprintln!(
                "wrote {} key {} (mode 0600); its public key:",
                match kind {
                    KeyKind::Root => "root",
                    _ => "officer",
                },
                file.display()
            );
            println!("{}", key.public());
            Ok(None)
        }
        Command::Init { dir } => {
            let path = init::write_starter(&dir)?;
            println!("wrote {}", path.display());
            println!(
                "edit node, state_dir, [group] interface and [whisper] bind, then check it with \
                 `lootsync config check {}`",
                path.display()
            );
            Ok(None)
        }
        Command::Completions { shell } => {
            cli_docs::completions(shell, &mut std::io::stdout());
            Ok(None)
        }
        Command::Man { dir } => {
            match dir {
                Some(dir) => {
                    for path in cli_docs::write_man_pages(&dir)
                        .with_context(|| format!("cannot write man pages to {}", dir.display()))?
                    {
                        println!("{}", path.display());
                    }
                }
                None => cli_docs::man_page(&mut std::io::stdout())?,
            }
            Ok(None)
        }
        other => Ok(Some(other)),
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // Loaded before anything runs, so even a command that does not use the file (demo,
    // init, ...) never hides a broken `--config`.
    let loaded = match &cli.config {
        Some(path) if !matches!(cli.command, Command::Config(_)) => Some(Config::load(path)?),
        _ => None,
    };
    let Some(command) = run_standalone(cli.command)? else {
        return Ok(());
    };
    let config = match loaded {
        Some(config) => config,
        None => default_config()?,
    };
    match command {
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
                "recorded {:+} for {} by {} ({}); {} now has {} point{} [{}]",
                e.delta,
                e.target,
                e.actor,
                e.reason,
                e.target,
                result.total,
                if result.total.abs() == 1 { "" } else { "s" },
                e.id
            );
            Ok(())
        }
        Command::Officer(command) => {
            init_logging("warn");
            officer_change(&config, command)
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
            let value = request(
                &config,
                Request::History {
                    player: player.clone(),
                },
            )?;
            let rows: Vec<HistoryRow> = serde_json::from_value(value)?;
            if json {
                let flat: Vec<serde_json::Value> = rows.iter().map(export::history_json).collect();
                println!("{}", serde_json::to_string(&flat)?);
            } else {
                print_history(&rows, player.as_deref());
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
        Command::Verify => {
            init_logging("warn");
            let lock = lock_for_maintenance(&config, "verify")?;
            let bar = progress::bytes_bar("verifying");
            let report = verify::verify(&lock, &config.group.name, &mut progress::reporter(&bar));
            bar.finish_and_clear();
            let report = report?;
            print_verify(&report);
            if !report.is_clean() {
                bail!(
                    "{} is damaged; stop here and keep a copy, or run `lootsync repair` to \
                     rebuild it from its intact records (the damaged file is kept)",
                    report.path.display()
                );
            }
            Ok(())
        }
        Command::Repair => {
            init_logging("warn");
            let lock = lock_for_maintenance(&config, "repair")?;
            let bar = progress::bytes_bar("repairing");
            let outcome = verify::repair(
                &lock,
                &config.group.name,
                ops::system_unix_ms(),
                &mut progress::reporter(&bar),
            );
            bar.finish_and_clear();
            match outcome? {
                RepairOutcome::AlreadyClean(report) => {
                    print_verify(&report);
                    println!("nothing to repair; the log was not touched");
                }
                RepairOutcome::Repaired {
                    report,
                    kept_aside,
                    new_bytes,
                } => {
                    print_verify(&report);
                    println!(
                        "repaired: {} now holds the {} intact entries ({new_bytes} bytes)",
                        report.path.display(),
                        report.entries
                    );
                    println!("the damaged file is kept as {}", kept_aside.display());
                    println!(
                        "entries lost in the damaged regions come back from peers when the \
                         daemon next syncs"
                    );
                }
            }
            Ok(())
        }
        Command::Sync { state } => {
            init_logging("warn");
            let enabled = state == OnOff::On;
            request(&config, Request::Sync { enabled })?;
            println!("sync {}", if enabled { "on" } else { "off" });
            Ok(())
        }
        Command::Export { format, history } => {
            init_logging("warn");
            let text = if history {
                let value = request(&config, Request::History { player: None })?;
                let rows: Vec<HistoryRow> = serde_json::from_value(value)?;
                export::history(&rows, format)
            } else {
                let value = request(&config, Request::Points {})?;
                let totals: BTreeMap<String, i64> = serde_json::from_value(value)?;
                export::standings(&totals, format)
            };
            print!("{text}");
            Ok(())
        }
        Command::Demo { .. }
        | Command::Config(_)
        | Command::Init { .. }
        | Command::Keygen { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled by run_standalone"),
    }
}

/// Builds roster changes signed by the root key (from `--root-key` or
/// `security.root_key_file`) and appends them through the daemon, or offline. A removal, and
/// an add that replaces an officer's key, revoke the old key: see [`revocation`].
fn officer_change(config: &Config, command: OfficerCommand) -> Result<()> {
    use loot_sync::proto::entry::EntryKind;
    let (root_key, name) = match &command {
        OfficerCommand::Add { name, root_key, .. }
        | OfficerCommand::Remove { name, root_key, .. } => {
            (root_key.clone(), name.trim().to_string())
        }
    };
    let Some(root_path) = root_key.or_else(|| config.security.root_key_file.clone()) else {
        bail!("officer changes are signed by the group's root key: pass --root-key FILE or set security.root_key_file");
    };
    let root = loot_sync::proto::signature::SecretKey::load(
        &root_path,
        loot_sync::store::keyfile::KeyKind::Root,
    )
    .context("cannot load the root key")?;
    if config
        .root_public_key()
        .is_some_and(|configured| configured != root.public())
    {
        bail!(
            "{} is not the root key configured in security.root_public_key; peers would ignore this change",
            root_path.display()
        );
    }
    let (ledger, rows) = roster_ledger(config, root.public())?;
    let mut changes: Vec<(EntryKind, String)> = Vec::new();
    match command {
        OfficerCommand::Add { public_key, .. } => {
            let public_key: loot_sync::proto::signature::PublicKey = public_key
                .parse()
                .with_context(|| format!("PUBKEY {public_key:?}"))?;
            if public_key == root.public() {
                bail!("{public_key} is the group's root key, not an officer key (an officer's key comes from `lootsync keygen officer` on their machine)");
            }
            if ledger.is_revoked(&public_key) {
                bail!(
                    "key {public_key} is revoked for good; make a new one with `lootsync keygen officer`"
                );
            }
            let same_name = |officer: &String| officer.to_lowercase() == name.to_lowercase();
            if let Some((officer, _)) = ledger
                .officers()
                .into_iter()
                .find(|(officer, key)| same_name(officer) && *key == public_key)
            {
                println!("{officer} is already an officer with this key; nothing to do");
                return Ok(());
            }
            // Replacing a key revokes every earlier one of the name, or their holders could
            // still sign entries dated while those keys were valid.
            for old in keys_of(&ledger, &rows, &name) {
                if old != public_key {
                    changes.extend(revocation(&rows, &name, old, false, "key replaced")?);
                }
            }
            changes.push((EntryKind::OfficerAdd { public_key }, "officer added".into()));
        }
        OfficerCommand::Remove { revoke_all, .. } => {
            let keys = keys_of(&ledger, &rows, &name);
            if keys.is_empty() {
                bail!("{name} is not an officer in this peer's log (see `lootsync history`)");
            }
            for key in keys {
                changes.extend(revocation(
                    &rows,
                    &name,
                    key,
                    revoke_all,
                    "officer removed",
                )?);
            }
        }
    }
    let first = loot_sync::proto::entry::Hlc::new(ops::system_unix_ms(), 0);
    for (n, (kind, reason)) in changes.into_iter().enumerate() {
        let mut random = [0u8; 10];
        getrandom::fill(&mut random).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
        let at = loot_sync::proto::entry::Hlc(first.0.saturating_add(n as u64));
        let mut entry = loot_sync::proto::entry::Entry {
            id: loot_sync::proto::entry::new_entry_id(at.unix_ms(), random),
            at,
            actor: "root".into(),
            target: name.clone(),
            delta: 0,
            new_total: 0,
            reason,
            kind,
            seal: None,
        };
        entry.validate().map_err(|e| {
            anyhow!(
                "invalid officer name: {}",
                e.to_string().replace("target", "NAME")
            )
        })?;
        root.sign(&mut entry);
        request(
            config,
            Request::Append {
                entry: Box::new(entry.clone()),
            },
        )?;
        println!("{}: {} [{}]", entry.reason, entry.target, entry.id);
    }
    Ok(())
}

/// The whole log, judged under `root`, as this peer holds it (through the daemon, or from
/// the log offline), and its history rows (judged once, for every question asked of them).
fn roster_ledger(
    config: &Config,
    root: loot_sync::proto::signature::PublicKey,
) -> Result<(
    loot_sync::core::ledger::Ledger,
    Vec<loot_sync::core::ledger::HistoryRow>,
)> {
    let rows: Vec<loot_sync::core::ledger::HistoryRow> =
        match request(config, Request::History { player: None }) {
            Ok(value) => serde_json::from_value(value)
                .context("cannot read the history to find the officer's entries")?,
            // No log yet (the first `officer add` of a new group): nothing to revoke.
            Err(err) if err.to_string().starts_with("no ledger here") => Vec::new(),
            Err(err) => return Err(err),
        };
    let (mut ledger, _) =
        loot_sync::core::ledger::Ledger::from_entries(rows.into_iter().map(|row| row.entry));
    ledger.set_root(Some(root));
    let rows = ledger.history(None);
    Ok((ledger, rows))
}

/// Every key `name` (in any letter case, as the impersonation rule compares names) was ever
/// made an officer with and that is not revoked yet.
fn keys_of(
    ledger: &loot_sync::core::ledger::Ledger,
    rows: &[loot_sync::core::ledger::HistoryRow],
    name: &str,
) -> Vec<loot_sync::proto::signature::PublicKey> {
    let name = name.to_lowercase();
    let mut keys: Vec<loot_sync::proto::signature::PublicKey> = rows
        .iter()
        .filter_map(|row| match row.entry.kind {
            loot_sync::proto::entry::EntryKind::OfficerAdd { public_key }
                if row.entry.target.to_lowercase() == name && row.rejected.is_none() =>
            {
                Some(public_key)
            }
            _ => None,
        })
        .filter(|key| !ledger.is_revoked(key))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The parts of a revocation of `key` (officer `name`): the digests of its entries that
/// count on this peer now (none with `revoke_all`), [`MAX_KEEP`] per part. Nothing takes
/// effect until every part is in the log, so an interrupted run can simply be repeated.
///
/// [`MAX_KEEP`]: loot_sync::proto::entry::MAX_KEEP
fn revocation(
    rows: &[loot_sync::core::ledger::HistoryRow],
    name: &str,
    key: loot_sync::proto::signature::PublicKey,
    revoke_all: bool,
    why: &str,
) -> Result<Vec<(loot_sync::proto::entry::EntryKind, String)>> {
    use loot_sync::proto::entry::{EntryKind, MAX_KEEP, MAX_REVOKE_PARTS};
    let counted: Vec<loot_sync::proto::entry::Digest> = rows
        .iter()
        .filter(|row| {
            row.rejected.is_none()
                && row.entry.kind == EntryKind::Points
                && row.entry.seal.is_some_and(|seal| seal.signer == key)
        })
        .map(|row| row.entry.digest())
        .collect();
    let kept = match revoke_all {
        true => Vec::new(),
        false => counted.clone(),
    };
    let chunks: Vec<&[loot_sync::proto::entry::Digest]> = match kept.is_empty() {
        true => vec![&[]],
        false => kept.chunks(MAX_KEEP).collect(),
    };
    let parts = u16::try_from(chunks.len()).ok().ok_or_else(|| {
        anyhow!(
            "{name}'s key signed {} entries that count; one revocation keeps at most {}",
            kept.len(),
            MAX_KEEP * usize::from(MAX_REVOKE_PARTS)
        )
    })?;
    let mut batch = [0u8; 8];
    getrandom::fill(&mut batch).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(part, keep)| {
            let kind = EntryKind::OfficerRevoke {
                public_key: key,
                batch,
                part: part as u16,
                parts,
                keep: keep.to_vec(),
            };
            let reason = format!(
                "{why}, key revoked (part {}/{parts}: {} of {} entries kept)",
                part + 1,
                keep.len(),
                counted.len()
            );
            (kind, reason)
        })
        .collect())
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
    let log = loot_sync::store::LogStore::log_path(&config.state_dir, &config.group.name);
    let log = std::path::absolute(&log).unwrap_or(log);
    let is_adjust = matches!(request, Request::Adjust { .. });
    // Writes may start a ledger (a group's first `officer add` happens before any daemon
    // ran); reads may not.
    let writes = is_adjust || matches!(request, Request::Append { .. });
    let new_ledger = !log.exists();
    if new_ledger && !writes {
        // Reading an empty ledger into existence would hide a wrong directory or config.
        bail!(
            "no ledger here: no daemon answers on {} and there is no log at {}; run this \
             where your state directory is, or pass --config FILE",
            socket.display(),
            log.display()
        );
    }
    if is_adjust {
        // Offline the officer key is only loaded with a warning (reads need none), so an
        // adjust says why the key cannot be used instead of "no officer key".
        config.officer_key().context("security.officer_key_file")?;
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
    if !reply.ok && new_ledger {
        // A refused first write must not leave an empty ledger behind: the next read would
        // then not say "no ledger here", and a wrong directory would go unnoticed.
        drop(store);
        let _ = std::fs::remove_file(loot_sync::store::synced_mark_path(&log));
        let _ = std::fs::remove_file(&log);
    }
    if reply.ok {
        if writes {
            // Say where it went: an officer in the wrong directory must not split the ledger
            // unnoticed.
            eprintln!(
                "no daemon running: recorded directly in {}{}",
                log.display(),
                if new_ledger { " (a new ledger)" } else { "" }
            );
        }
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(anyhow!(reply
            .error
            .unwrap_or_else(|| "request failed".into())))
    }
}

/// Takes the state-directory lock for verify/repair, which need the log to themselves.
fn lock_for_maintenance(config: &Config, command: &str) -> Result<loot_sync::store::StateLock> {
    match ops::acquire_lock(config, ops::OFFLINE_LOCK_WAIT) {
        Ok(lock) => Ok(lock),
        Err(StoreError::Locked { path }) => bail!(
            "{} is locked by a running lootsync daemon (or another command); stop the daemon \
             before `lootsync {command}`",
            path.display()
        ),
        Err(err) => Err(err.into()),
    }
}

fn print_verify(report: &VerifyReport) {
    let time =
        |at: Option<loot_sync::proto::entry::Hlc>| at.map_or("-".to_string(), |at| at.to_string());
    println!("log:      {}", report.path.display());
    println!("bytes:    {}", report.file_bytes);
    println!("entries:  {}", report.entries);
    println!("players:  {}", report.players);
    println!("first:    {}", time(report.first_at));
    println!("last:     {}", time(report.last_at));
    if report.identical_duplicates > 0 {
        println!(
            "note:     {} records repeat an earlier entry exactly (harmless; skipped on replay)",
            report.identical_duplicates
        );
    }
    if let Some(tail) = &report.torn_tail {
        println!(
            "note:     torn tail of {} bytes at offset {} ({}): an interrupted append, cut \
             automatically when the log is next opened",
            tail.bytes, tail.offset, tail.reason
        );
    }
    for region in &report.damaged {
        println!(
            "DAMAGE:   {} bytes at offset {}: {}",
            region.bytes, region.offset, region.reason
        );
    }
    println!(
        "status:   {}",
        if report.is_clean() { "ok" } else { "DAMAGED" }
    );
}

fn print_points(totals: &BTreeMap<String, i64>) {
    if totals.is_empty() {
        println!(
            "no adjustments count yet (entries that count for nothing are marked in `lootsync history`)"
        );
        return;
    }
    let rows = export::ranked(totals);
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

fn print_history(rows: &[HistoryRow], player: Option<&str>) {
    if rows.is_empty() {
        match player {
            Some(player) => println!("no adjustments recorded for {player}"),
            None => println!("no adjustments recorded yet"),
        }
        return;
    }
    for row in rows {
        let e = &row.entry;
        let what = match &e.kind {
            loot_sync::proto::entry::EntryKind::Points => {
                format!("{:>+6} -> {:>6}", e.delta, row.total)
            }
            // The reason says what the roster change did.
            _ => format!("{:<16}", "roster change"),
        };
        let rejected = row
            .rejected
            .as_deref()
            .map(|why| format!("  [{why}]"))
            .unwrap_or_default();
        // Who really wrote it: the signer's roster name, when the free-text actor differs.
        let author = match row.signed_by.as_deref() {
            Some(officer) if officer != e.actor => format!("{} (key of {officer})", e.actor),
            _ => e.actor.clone(),
        };
        println!(
            "{}  {:<12} {:<12} {what}  {}{rejected}",
            e.at, author, e.target, e.reason
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
