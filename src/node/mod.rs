//! Ledger operations shared by the daemon and the offline CLI.
//!
//! An adjust, a points query or a history query does the same thing whether it arrives over
//! the control socket or is run by the CLI directly on the log (no daemon running, which is
//! how an officer edits offline): one code path, so both behave identically.

pub mod progress;

use crate::config::Config;
use crate::control::{AdjustResult, Reply, Request};
use crate::core::ledger::Ledger;
use crate::core::rng::SeededRng;
use crate::core::sync::{Now, Peer, PeerConfig, Tuning};
use crate::proto::entry::{AdjustRequest, EntryError};
use crate::store::{LogStore, OpenReport, StateLock, StoreError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a daemon waits at start-up for the state-directory lock.
pub const DAEMON_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long an offline CLI command waits for the lock (another CLI command may hold it).
pub const OFFLINE_LOCK_WAIT: Duration = Duration::from_millis(500);
use tracing::warn;

/// The wall clock, in Unix milliseconds.
pub fn system_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The sync core's settings, taken from the config.
pub fn peer_config(config: &Config, whisper_port: u16) -> PeerConfig {
    PeerConfig {
        node_name: config.node.clone(),
        group: config.group.name.clone(),
        whisper_port,
        sync_enabled: config.sync.enabled,
        heartbeat_ms: config.sync.heartbeat.as_millis() as u64,
        peer_timeout_ms: config.sync.peer_timeout.as_millis() as u64,
        max_clock_drift_ms: config.sync.max_clock_drift.as_millis() as u64,
        tuning: Tuning::default(),
    }
}

/// Takes the state-directory lock, retrying for up to `wait` while another process holds it
/// (a CLI command holds it only for a moment; a daemon starting meanwhile should not fail).
pub fn acquire_lock(config: &Config, wait: Duration) -> Result<StateLock, StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        match StateLock::acquire(&config.state_dir) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Locks the state directory (waiting up to `lock_wait`), opens and replays the log.
/// Warns about a torn tail.
pub fn open_log(
    config: &Config,
    lock_wait: Duration,
) -> Result<(LogStore, Vec<crate::proto::entry::Entry>, OpenReport), StoreError> {
    open_log_with(config, lock_wait, LogStore::open_with_progress)
}

/// Like [`open_log`], but keeps only the ledger's compact index in memory (entry bodies are
/// read back from the log when needed): what the daemon uses.
pub fn open_log_indexed(
    config: &Config,
    lock_wait: Duration,
) -> Result<(LogStore, Ledger, OpenReport), StoreError> {
    let opened = open_log_with(config, lock_wait, LogStore::open_indexed)?;
    release_freed_memory();
    Ok(opened)
}

/// Hands memory freed after a large replay (the scan's buffers, the index's growth) back
/// to the operating system. glibc keeps freed blocks below its mmap threshold in the heap,
/// so without this a daemon's resident size stays at its start-up peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

type Opener<T> =
    fn(StateLock, &str, &mut dyn FnMut(u64, u64)) -> Result<(LogStore, T, OpenReport), StoreError>;

fn open_log_with<T>(
    config: &Config,
    lock_wait: Duration,
    opener: Opener<T>,
) -> Result<(LogStore, T, OpenReport), StoreError> {
    let lock = acquire_lock(config, lock_wait)?;
    let path = LogStore::log_path(&config.state_dir, &config.group.name);
    let large = std::fs::metadata(&path)
        .is_ok_and(|m| m.len() >= crate::node::progress::STARTUP_BAR_MIN_BYTES);
    let bar = if large {
        crate::node::progress::bytes_bar("replaying log")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let opened = opener(
        lock,
        &config.group.name,
        &mut crate::node::progress::reporter(&bar),
    );
    bar.finish_and_clear();
    let (store, entries, report) = opened?;
    if report.truncated_bytes > 0 {
        warn!(
            "{}: cut a torn final record ({} bytes) left by an interrupted write; {} whole entries kept",
            store.path().display(),
            report.truncated_bytes,
            report.entries
        );
    }
    Ok((store, entries, report))
}

/// Opens the log for a CLI command run without a daemon: a peer with sync off.
pub fn open_offline(config: &Config, unix_ms: u64) -> Result<(Peer, LogStore), StoreError> {
    let (store, entries, _report) = open_log(config, OFFLINE_LOCK_WAIT)?;
    let mut cfg = peer_config(config, 0);
    cfg.sync_enabled = false;
    let now = Now {
        mono_ms: 0,
        unix_ms,
    };
    let mut peer = Peer::new(cfg, entries, SeededRng::from_os(), now);
    // A missing or unreadable officer key only matters to adjust, which then says so.
    let officer_key = config.officer_key().unwrap_or_else(|err| {
        warn!("officer key not loaded: {err}");
        None
    });
    peer.set_roster(config.root_public_key(), officer_key);
    Ok((peer, store))
}

/// Renders an entry error in the words of the adjust command (`player`, not `target`).
fn user_words(err: &EntryError) -> String {
    let rename = |field: &str| {
        match field {
            "target" => "player",
            other => other,
        }
        .to_string()
    };
    match err {
        EntryError::EmptyName { field } => format!("{} must not be empty", rename(field)),
        EntryError::Padded { field } => {
            format!("{} must not start or end with spaces", rename(field))
        }
        EntryError::TooLong { field, len, max } => {
            format!("{} is {len} bytes; the limit is {max}", rename(field))
        }
        EntryError::ControlChars { field } => {
            format!("{} contains control characters", rename(field))
        }
        other => other.to_string(),
    }
}

/// Explains a failed durable append to whoever asked for the adjust: the OS error, the
/// likely cause when it is a full disk, and what state the log is in.
fn write_failure_message(err: &StoreError, store: &LogStore) -> String {
    let mut message = format!("adjustment not recorded: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if let StoreError::Io { source, .. } = err {
        if matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT)
        ) {
            message.push_str(" (the disk is full or a file size limit was reached)");
        }
    }
    if store.rollback_pending() {
        message.push_str(
            "; part of the record could not be removed yet and is cut before the next write \
             or when the log is next opened; every earlier entry is intact",
        );
    } else {
        message.push_str("; the log is unchanged");
    }
    message
}

/// Runs a ledger request (adjust, points, history). Returns `None` for requests that need
/// a running daemon (status, sync).
pub fn apply(
    peer: &mut Peer,
    store: &mut LogStore,
    node: &str,
    now: Now,
    request: Request,
) -> Option<Reply> {
    Some(match request {
        Request::Adjust {
            player,
            delta,
            reason,
            actor,
        } => {
            let reason = reason.trim().to_string();
            if reason.is_empty() {
                return Some(Reply::error(
                    "invalid adjustment: the reason must not be empty (it is the audit trail)",
                ));
            }
            let adjust = AdjustRequest {
                actor: actor.unwrap_or_else(|| node.to_string()).trim().to_string(),
                target: player.trim().to_string(),
                delta,
                reason,
            };
            let entry = match peer.prepare_adjust(now, &adjust) {
                Ok(entry) => entry,
                Err(err) => {
                    return Some(Reply::error(format!(
                        "invalid adjustment: {}",
                        user_words(&err)
                    )))
                }
            };
            // Durable before success is reported: append, then fdatasync, then apply.
            let offsets = match store.append_durable(std::slice::from_ref(&entry)) {
                Ok(offsets) => offsets,
                Err(err) => return Some(Reply::error(write_failure_message(&err, store))),
            };
            peer.commit_local(now, entry.clone());
            for offset in offsets {
                peer.mark_stored(&entry.key(), offset);
            }
            let total = peer.ledger().total(&entry.target);
            Reply::ok(&AdjustResult { entry, total })
        }
        Request::Append { entry } => {
            let entry = *entry;
            if let Err(err) = entry.validate() {
                return Some(Reply::error(format!("invalid entry: {err}")));
            }
            if let Err(err) = crate::proto::signature::verify(&entry) {
                return Some(Reply::error(format!("entry not accepted: {err}")));
            }
            // Append exists for roster changes signed elsewhere (by the root key holder);
            // anything else would be stored and count for nothing, so say so instead.
            let root = peer.ledger().root();
            if root.is_none() {
                return Some(Reply::error(
                    "this peer has no security.root_public_key: roster changes count only in \
                     a group with a root key"
                        .to_string(),
                ));
            }
            if entry.kind == crate::proto::entry::EntryKind::Points
                || !crate::core::roster::Roster::is_valid_roster_change(root, &entry)
            {
                return Some(Reply::error(
                    "entry not accepted: only roster changes signed by the group's root key \
                     can be appended (use `adjust` for points)"
                        .to_string(),
                ));
            }
            let key = entry.key();
            if !peer.ledger().contains(&key.digest) {
                let offsets = match store.append_durable(std::slice::from_ref(&entry)) {
                    Ok(offsets) => offsets,
                    Err(err) => return Some(Reply::error(write_failure_message(&err, store))),
                };
                peer.commit_local(now, entry.clone());
                for offset in offsets {
                    peer.mark_stored(&key, offset);
                }
            }
            Reply::ok(&entry)
        }
        Request::Points {} => Reply::ok(peer.ledger().totals()),
        Request::History { player } => Reply::ok(&peer.ledger().history(player.as_deref())),
        Request::Status {} | Request::Sync { .. } | Request::Debug { .. } => return None,
    })
}
