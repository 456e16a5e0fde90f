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
//! - `raid`: an officer's raid night: `award`, `decay`, `revert` and `import`.
//! - `export`: the CSV and JSON forms of standings and the audit trail.
//! - `officer`: `officer add`/`remove`/`list` and `keygen`.
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
mod raid;
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
            // Errors may quote text from the log or a peer: escaped like every output.
            let text = error_text(&err);
            let safe: Vec<String> = text.split('\n').map(output::terminal_safe).collect();
            eprint!(
                "{}",
                run::error_lines(&format!("lootsync: error: {}", safe.join("\n")))
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, each said once: a cause whose words its parent
/// already ends with (an I/O error a message quotes, then also gives as its source) is not
/// repeated.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let words = cause.to_string();
        if text.is_empty() {
            text = words;
        } else if !text.ends_with(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
    }
    text
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
    if let (Command::Demo { .. }, Some(path)) = (&cli.command, &cli.config) {
        bail!(
            "demo runs three peers of its own on loopback and reads no config file; drop \
             --config {}",
            path.display()
        );
    }
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
        Command::Award {
            delta,
            reason,
            players,
            players_file,
            dry_run,
            actor,
        } => raid::award(
            &config,
            raid::AwardArgs {
                delta,
                reason,
                players,
                players_file,
                actor,
                dry_run,
            },
        ),
        Command::Decay {
            percent,
            reason,
            dry_run,
            actor,
        } => raid::decay(&config, percent, reason, dry_run, actor),
        Command::Revert {
            entry,
            reason,
            actor,
        } => raid::revert(&config, entry, reason, actor),
        Command::Import {
            file,
            reason,
            dry_run,
            actor,
        } => raid::import(&config, &file, reason, dry_run, actor),
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

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn a_cause_the_message_already_quotes_is_said_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let quoted = anyhow::Error::new(std::io::Error::other(format!("cannot open key: {io}")))
            .context("security.group_key_file");
        assert_eq!(
            error_text(&quoted),
            format!("security.group_key_file: cannot open key: {io}")
        );
        #[derive(Debug, thiserror::Error)]
        #[error("cannot access key file k: {source}")]
        struct Access {
            source: std::io::Error,
        }
        let repeated = anyhow::Error::new(Access {
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        });
        let text = error_text(&repeated);
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        let chained = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&chained), "outer: inner");
    }
}
