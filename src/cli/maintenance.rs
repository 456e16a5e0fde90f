//! `lootsync verify` and `lootsync repair`: checking and rebuilding the log, which both need
//! it to themselves (no daemon running).

use super::client::NoLedger;
use super::output::print_verify;
use anyhow::{bail, Result};
use loot_sync::config::Config;
use loot_sync::node as ops;
use loot_sync::node::progress;
use loot_sync::store::verify::{self, RepairOutcome};
use loot_sync::store::StoreError;

/// Checks the whole log and prints a summary; an error if the log is damaged.
pub fn verify(config: &Config) -> Result<()> {
    let lock = lock_for_maintenance(config, "verify")?;
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

/// Rewrites a damaged log from its intact records, keeping the damaged file aside.
pub fn repair(config: &Config) -> Result<()> {
    let lock = lock_for_maintenance(config, "repair")?;
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

/// Takes the state-directory lock for verify/repair, which need the log to themselves.
/// With no log there is nothing to check: the same "no ledger here" as every other command,
/// and no lock file or state directory left behind.
fn lock_for_maintenance(config: &Config, command: &str) -> Result<loot_sync::store::StateLock> {
    let log = loot_sync::store::LogStore::log_path(&config.state_dir, &config.group.name);
    if !log.exists() {
        let socket = loot_sync::control::socket_path(&config.state_dir);
        return Err(NoLedger {
            socket: std::path::absolute(&socket).unwrap_or(socket),
            log: std::path::absolute(&log).unwrap_or(log),
        }
        .into());
    }
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
