//! Reload (`systemctl reload`, SIGHUP): the config file is read again and what can change
//! in a running daemon changes, without dropping the ledger, the log or the sockets.
//!
//! What changes: the group key and the previous keys (`[security]` key files), this
//! machine's officer key, the roster's root key (`root_public_key`; the ledger is judged
//! again under it) and the log filter (`[log] level`). Everything else (the node name, the
//! state directory, the sockets' addresses, the peers, timing, storage, the control group)
//! is fixed for the daemon's life: a reload that changes any of it applies the rest and
//! names those keys with "restart the daemon to apply". A reload that fails (a bad config,
//! a key file that cannot be read) changes nothing and says why.
//!
//! Under the shipped unit the key files in `/etc/lootsync/keys` reach the daemon as systemd
//! credentials, which systemd copies when the service starts: a reload reads those copies
//! again, so a key file changed on disk needs a restart, and the reload says so.

use super::driver::{warn_if_no_valid_roster, Driver};
use super::event::Event;
use super::running::RunningDaemon;
use super::start::security;
use crate::config::{Config, ConfigError};
use crate::proto::seal::Sealer;
use crate::proto::signature::SecretKey;
use crate::store::keyfile::{in_service_key_dir, KeyFileError, CREDENTIALS_ENV};
use crate::store::keys::{random_bytes, GroupKeyError};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// The config sections a running daemon takes on reload; any other change needs a restart.
const RELOADABLE: [&str; 2] = ["security", "log"];

/// A reload the core thread applies: the new config and the keys already read from it.
pub(super) struct Reload {
    config: Config,
    sealer: Sealer,
    cookie_key: [u8; 32],
    officer_key: Option<Arc<SecretKey>>,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// What was applied, in words (e.g. `root key 1f2e…`).
    pub applied: Vec<String>,
    /// Changed config keys that only a restart applies (top-level keys and sections).
    pub restart_needed: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The config file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A group key file could not be read (or no entropy for the new nonce prefix).
    #[error(transparent)]
    GroupKey(#[from] GroupKeyError),
    /// The officer key file could not be read.
    #[error("security.officer_key_file")]
    OfficerKey(#[source] KeyFileError),
    /// The daemon is stopping.
    #[error("the daemon is stopping")]
    Stopped,
}

impl RunningDaemon {
    /// Applies `config` to the running daemon (see the module doc for what changes).
    pub async fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        config.validate()?;
        let sealer = security(&config)?;
        let officer_key = config.officer_key().map_err(ReloadError::OfficerKey)?;
        let cookie_key = random_bytes().map_err(GroupKeyError::Entropy)?;
        let (reply, replied) = oneshot::channel();
        let reload = Reload {
            config,
            sealer,
            cookie_key,
            officer_key,
        };
        self.events
            .send(Event::Reload(Box::new(reload), reply))
            .map_err(|_| ReloadError::Stopped)?;
        replied.await.map_err(|_| ReloadError::Stopped)
    }
}

/// Re-reads `file` and applies it, logging the outcome (SIGHUP's handler).
pub(super) async fn reload_from_file(daemon: &RunningDaemon, file: Option<&Path>) {
    let Some(file) = file else {
        warn!("reload: this daemon runs on the built-in defaults, no config file to re-read");
        return;
    };
    info!("reloading {}", file.display());
    let outcome = match Config::load(file) {
        Ok(config) => daemon.reload(config).await,
        Err(err) => Err(err.into()),
    };
    match outcome {
        Ok(reloaded) => {
            let applied = if reloaded.applied.is_empty() {
                "nothing changed".to_owned()
            } else {
                reloaded.applied.join("; ")
            };
            info!("reloaded {}: {applied}", file.display());
            if !reloaded.restart_needed.is_empty() {
                warn!(
                    "reload: {} changed in {} but only take effect after a restart \
                     (systemctl restart lootsync); running with the old values until then",
                    reloaded.restart_needed.join(", "),
                    file.display()
                );
            }
        }
        Err(err) => error!(
            "reload failed, still running with the previous configuration: {:#}",
            anyhow::Error::new(err)
        ),
    }
}

impl Driver {
    /// Applies a reload on the core thread.
    pub(super) fn reload(&mut self, reload: Reload) -> Reloaded {
        let Reload {
            config,
            sealer,
            cookie_key,
            officer_key,
        } = reload;
        let mut applied = Vec::new();
        let restart_needed = restart_needed(&self.config, &config);

        self.peer.set_group_key(sealer, cookie_key);
        let security = &config.security;
        applied.push(match &security.group_key_file {
            None => "no group key (clear text)".to_owned(),
            Some(file) => format!(
                "group key {} re-read{}",
                file.display(),
                if from_credentials(file) {
                    " (from the systemd credential copied at service start: a key file \
                     changed on disk needs `systemctl restart lootsync`)"
                } else {
                    ""
                }
            ),
        });

        let root = config.root_public_key();
        let root_changed = root != self.peer.ledger().root();
        // Cheap when the root key is the same; a new one judges the roster entries again
        // here and the whole ledger on the replay thread (totals lag until then).
        self.peer.set_roster(root, officer_key);
        if root_changed {
            applied.push(match root {
                None => {
                    warn!(
                        "OPEN ROSTER: the reloaded config has no security.root_public_key, so \
                         ANY peer may write entries that count"
                    );
                    "open roster (no root key)".to_owned()
                }
                Some(root) => {
                    let ledger = self.peer.ledger();
                    let rejected = match ledger.replay_pending() {
                        true => "totals and rejected entries being recounted".to_owned(),
                        false => format!("{} entries rejected", ledger.rejected()),
                    };
                    format!(
                        "root key {root}: {} officers, {rejected}",
                        ledger.officers().len()
                    )
                }
            });
            self.warned_no_valid_roster =
                root.is_some_and(|root| warn_if_no_valid_roster(self.peer.ledger(), root));
        }
        if let Some(file) = &security.officer_key_file {
            applied.push(format!("officer key {} re-read", file.display()));
        }

        if config.log.level != self.config.log.level {
            match self
                .options
                .log_control
                .as_ref()
                .map(|control| control.set_level(&config.log.level))
            {
                Some(Ok(())) => applied.push(format!("log level {:?}", config.log.level)),
                Some(Err(err)) => warn!("reload: log.level not changed: {err}"),
                None => warn!("reload: log.level not changed: this daemon's logging is fixed"),
            }
        }
        self.config.security = config.security;
        self.config.log = config.log;
        Reloaded {
            applied,
            restart_needed,
        }
    }
}

/// Whether the daemon reads `file` from a systemd credential (fixed at service start).
fn from_credentials(file: &Path) -> bool {
    std::env::var_os(CREDENTIALS_ENV).is_some() && in_service_key_dir(file)
}

/// The top-level keys and sections that differ between `old` and `new`, except the ones a
/// reload applies. Compared as TOML, so a section added to [`Config`] later is covered.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let as_table = |config: &Config| match toml::Table::try_from(config) {
        Ok(table) => table,
        // Only a config that fails `validate` cannot be written as TOML.
        Err(_) => toml::Table::new(),
    };
    let (old, new) = (as_table(old), as_table(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| !RELOADABLE.contains(&key.as_str()) && old.get(*key) != new.get(*key))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sections_a_reload_cannot_apply_need_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.log.level = "debug".to_owned();
        new.security.root_public_key = Some("ab".repeat(32));
        assert_eq!(restart_needed(&old, &new), Vec::<String>::new());
        new.node = "another".to_owned();
        new.sync.enabled = !old.sync.enabled;
        new.storage.batch_interval = old.storage.batch_interval * 2;
        assert_eq!(restart_needed(&old, &new), ["node", "storage", "sync"]);
    }
}
