//! The way every command reaches a ledger: the running daemon's control socket, or, when no
//! daemon runs, the log itself opened under the same lock (how an officer edits offline).

use anyhow::{anyhow, bail, Context, Result};
use loot_sync::config::Config;
use loot_sync::control::{self, ControlError, Request};
use loot_sync::core::sync::Now;
use loot_sync::node as ops;
use loot_sync::store::StoreError;

/// Sends a request to the running daemon, or runs it on the log directly when none runs.
pub fn request(config: &Config, request: Request) -> Result<serde_json::Value> {
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
