//! Opening the log: the state-directory lock, the replay (with a progress bar for a big
//! log) and the torn-tail warning, for the daemon and for offline commands.

use super::{peer_config, progress};
use crate::config::Config;
use crate::core::ledger::Ledger;
use crate::core::rng::SeededRng;
use crate::core::sync::{Now, Peer};
use crate::proto::entry::Entry;
use crate::store::keys::rng_seed_from_os;
use crate::store::{LogStore, OpenReport, StateLock, StoreError};
use std::time::{Duration, Instant};
use tracing::warn;

/// How long a daemon waits at start-up for the state-directory lock.
pub const DAEMON_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long an offline CLI command waits for the lock (another CLI command may hold it).
pub const OFFLINE_LOCK_WAIT: Duration = Duration::from_millis(500);
/// An offline command writes a checkpoint once this many records lie past the last one (or
/// there is no usable one for a ledger this large): replaying that many costs about a
/// millisecond, while a checkpoint of a million entries takes tens of milliseconds to write,
/// so most offline adjusts only append.
pub const OFFLINE_CHECKPOINT_RECORDS: u64 = 1024;

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
) -> Result<(LogStore, Vec<Entry>, OpenReport), StoreError> {
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

/// Hands memory freed after a large replay (the scan's buffers, the index's growth) or a
/// large reply back to the operating system. glibc keeps freed blocks below its mmap
/// threshold in the heap, so without this a daemon's resident size stays at such peaks.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // libc, not nix: malloc_trim is a glibc extension nix does not wrap.
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
    let large = std::fs::metadata(&path).is_ok_and(|m| m.len() >= progress::STARTUP_BAR_MIN_BYTES);
    let bar = if large {
        progress::bytes_bar("replaying log")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let opened = opener(lock, &config.group.name, &mut progress::reporter(&bar));
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

/// Opens the log for a CLI command run without a daemon: a peer with sync off, over the
/// same index-only ledger the daemon keeps (loaded from the checkpoint when there is a
/// usable one, so only the log past it is read). Entry bodies are read back only for what
/// the command prints. The store writes a checkpoint after appends once
/// [`OFFLINE_CHECKPOINT_RECORDS`] records lie past the last one, and right away when
/// opening found that many uncovered.
pub fn open_offline(config: &Config, unix_ms: u64) -> Result<(Peer, LogStore), StoreError> {
    let (mut store, ledger, _report) =
        open_log_with(config, OFFLINE_LOCK_WAIT, LogStore::open_indexed)?;
    let mut cfg = peer_config(config, 0);
    cfg.sync_enabled = false;
    let now = Now {
        mono_ms: 0,
        unix_ms,
    };
    let mut peer = Peer::with_ledger(cfg, ledger, SeededRng::new(rng_seed_from_os()), now);
    // A missing or unreadable officer key only matters to adjust, which then says so.
    let officer_key = config.officer_key().unwrap_or_else(|err| {
        warn!("officer key not loaded: {err}");
        None
    });
    peer.set_roster(config.root_public_key(), officer_key);
    store.checkpoint_after_appends(Some(OFFLINE_CHECKPOINT_RECORDS));
    store.checkpoint_if_due(peer.ledger());
    Ok((peer, store))
}
