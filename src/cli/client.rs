//! The way every command reaches a ledger: the running daemon's control socket, or, when no
//! daemon runs, the log itself opened under the same lock (how an officer edits offline).

use anyhow::{bail, Context, Result};
use loot_sync::config::Config;
use loot_sync::control::{self, Command, ControlError, Request};
use loot_sync::core::sync::Now;
use loot_sync::node::{self as ops, LedgerCommand};
use loot_sync::store::StoreError;
use std::path::PathBuf;
use thiserror::Error;

/// No daemon answers and there is no log to read: most likely the wrong directory or config.
#[derive(Debug, Error)]
#[error(
    "no ledger here: no daemon answers on {} and there is no log at {}; run this where your \
     state directory is, or pass --config FILE",
    socket.display(),
    log.display()
)]
pub struct NoLedger {
    /// The control socket nothing listens on.
    pub socket: PathBuf,
    /// The log that does not exist.
    pub log: PathBuf,
}

/// Sends a request that only a running daemon can answer.
pub fn daemon_request<C: Command>(config: &Config, command: C) -> Result<C::Output> {
    let socket = control::socket_path(&config.state_dir);
    match control::call(&socket, command) {
        Ok(output) => Ok(output),
        Err(ControlError::NotRunning { .. }) => bail!(
            "no daemon is running on {} (nothing listens on {}); start one with `lootsync run`",
            config.state_dir.display(),
            socket.display()
        ),
        Err(err) => Err(err.into()),
    }
}

/// Sends a ledger request to the running daemon, or runs it on the log directly when none
/// runs.
pub fn request<C: LedgerCommand + Clone>(config: &Config, command: C) -> Result<C::Output> {
    let socket = control::socket_path(&config.state_dir);
    match control::call(&socket, command.clone()) {
        Ok(output) => return Ok(output),
        Err(ControlError::NotRunning { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let log = loot_sync::store::LogStore::log_path(&config.state_dir, &config.group.name);
    let log = std::path::absolute(&log).unwrap_or(log);
    let kind: Request = command.clone().into();
    // Entries this machine signs (none in a dry run).
    let signs = match &kind {
        Request::Adjust(_) | Request::Revert(_) => true,
        Request::Award(award) => !award.dry_run,
        Request::Decay(decay) => !decay.dry_run,
        Request::Import(import) => !import.dry_run,
        _ => false,
    };
    let writes = signs || matches!(kind, Request::Append(_));
    // Writes that name their players may start a ledger (a group's first `officer add` or
    // `import` happens before any daemon ran); reads, decay and revert may not.
    let may_start = writes && !matches!(kind, Request::Decay(_) | Request::Revert(_));
    // A dry run of an import or award may look at an empty ledger (what would an import
    // into a new group write?); the ledger opened for it is removed again.
    let looks_only = matches!(&kind, Request::Award(a) if a.dry_run)
        || matches!(&kind, Request::Import(i) if i.dry_run);
    let new_ledger = !log.exists();
    if new_ledger && !may_start && !looks_only {
        // Reading an empty ledger into existence would hide a wrong directory or config.
        return Err(NoLedger { socket, log }.into());
    }
    if signs {
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
    let outcome = ops::apply(&mut peer, &mut store, &config.node, now, command);
    if new_ledger && (outcome.is_err() || !writes) {
        // A refused first write, or a dry run, must not leave an empty ledger behind: the
        // next read would then not say "no ledger here", and a wrong directory would go
        // unnoticed.
        drop(store);
        let _ = std::fs::remove_file(loot_sync::store::synced_mark_path(&log));
        let _ = std::fs::remove_file(&log);
    }
    match outcome {
        Ok(output) => {
            if writes {
                // Say where it went: an officer in the wrong directory must not split the
                // ledger unnoticed.
                eprintln!(
                    "no daemon running: recorded directly in {}{}",
                    log.display(),
                    if new_ledger { " (a new ledger)" } else { "" }
                );
            }
            Ok(output)
        }
        Err(err) => Err(err.into()),
    }
}
