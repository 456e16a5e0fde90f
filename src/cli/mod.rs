//! The `lootsync` command line: parsing, dispatch to one module per command group, and exit
//! codes.
//!
//! `run` starts the daemon. The other commands talk to a running daemon over its control
//! socket; when none is running, `adjust`, `points` and `history` open the log directly
//! under the same lock (that is how an officer edits offline).
//!
//! - `args`: every argument, subcommand and value parser (clap), and nothing that runs them.
//! - `client`: reaching a ledger: the daemon's control socket, or the log itself offline.
//! - `run`: `lootsync run` and the logging every command sets up.
//! - `ledger`: `adjust`, `points`, `history` and `export`.
//! - `export`: the CSV and JSON forms of standings and the audit trail.
//! - `officer`: `officer add`/`remove` and `keygen`.
//! - `daemon_cmd`: `status`, `peers` and the `sync` and `debug` switches.
//! - `config_cmd`: `config check` and `init`.
//! - `maintenance`: `verify` and `repair`.
//! - `demo`: three peers in one process playing the seed's scenarios.
//! - `docs`: shell completions and man pages generated from `args`.
//! - `output`: the human-readable tables and summaries.
//! - this file: dispatch and exit codes.

mod args;
mod client;
mod config_cmd;
mod daemon_cmd;
mod demo;
mod docs;
mod export;
mod ledger;
mod maintenance;
mod officer;
mod output;
mod run;

use anyhow::{bail, Context, Result};
use args::{Cli, Command, ConfigCommand};
use clap::Parser;
use loot_sync::config::Config;

/// Parses arguments, runs the command, and maps errors to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run | Command::Demo { .. }) {
        stop_quietly_when_stdout_closes();
    }
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", run::error_lines(&format!("lootsync: error: {err:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Restores the default SIGPIPE action, so `lootsync export | head` ends quietly like any
/// Unix tool instead of panicking in `println!` (Rust ignores SIGPIPE). Not for `run` and
/// `demo`: a daemon must survive a client that hangs up. The control client sends with
/// MSG_NOSIGNAL, so a daemon vanishing mid-request is still an error message.
fn stop_quietly_when_stdout_closes() {
    // libc directly: nix's `signal` is just as unsafe and would add its `signal` feature.
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler code; this runs
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs one parsed command line.
fn dispatch(cli: Cli) -> Result<()> {
    // Loaded before anything runs, so even a command that does not use the file (demo,
    // init, ...) never hides a broken `--config`.
    let loaded = match &cli.config {
        Some(path) if !matches!(cli.command, Command::Config(_)) => Some(Config::load(path)?),
        _ => None,
    };
    let config_file = cli.config.clone();
    let Some(command) = run_standalone(cli.command)? else {
        return Ok(());
    };
    let config = match loaded {
        Some(config) => config,
        None => default_config()?,
    };
    if let Command::Run = command {
        return run::daemon(config, config_file);
    }
    // The one-shot commands log only warnings: their output is what they print.
    run::init_logging("warn");
    match command {
        Command::Adjust {
            player,
            delta,
            reason,
            actor,
        } => ledger::adjust(&config, player, delta, reason, actor),
        Command::Points { json } => ledger::points(&config, json),
        Command::History { player, json } => ledger::history(&config, player, json),
        Command::Export { format, history } => ledger::export(&config, format, history),
        Command::Officer(command) => officer::change(&config, command),
        Command::Status { json } => daemon_cmd::status(&config, json),
        Command::Peers { json } => daemon_cmd::peers(&config, json),
        Command::Debug { state } => daemon_cmd::debug(&config, state),
        Command::Sync { state } => daemon_cmd::sync(&config, state),
        Command::Verify => maintenance::verify(&config),
        Command::Repair => maintenance::repair(&config),
        Command::Run
        | Command::Demo { .. }
        | Command::Config(_)
        | Command::Init { .. }
        | Command::Keygen { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled above"),
    }
}

/// Runs the commands that need no config file; gives the others back.
fn run_standalone(command: Command) -> Result<Option<Command>> {
    match command {
        Command::Demo { port, verbose } => {
            if !demo::run(&demo::DemoOptions { port, verbose })? {
                bail!("the three peers ended with different standings")
            }
        }
        Command::Config(ConfigCommand::Check { file, user, quiet }) => {
            config_cmd::check(&file, user.as_deref(), quiet)?
        }
        Command::Init { dir } => config_cmd::init(&dir)?,
        Command::Keygen { kind, file } => officer::keygen(kind, &file)?,
        Command::Completions { shell } => docs::completions(shell, &mut std::io::stdout()),
        Command::Man { dir } => docs::print_man_pages(dir.as_deref())?,
        other => return Ok(Some(other)),
    }
    Ok(None)
}

/// The embedded defaults (the shipped example, multicast on loopback), used when no
/// `--config` is given.
fn default_config() -> Result<Config> {
    loot_sync::config::starter::embedded().context("embedded default config")
}
