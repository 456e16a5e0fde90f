//! What `lootsync status` shows: the peer's view plus the daemon's own counters.

use super::resolve::ListedUpdate;
use crate::config::Config;
use crate::control::{
    HttpStatus, ListedStatus, OfficerStatus, PeerReach, PeerStatus, StatusResult,
};
use crate::core::sync::{Now, Peer, Reach};
use crate::store::LogStore;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters the daemon keeps beside the peer's own.
#[derive(Debug, Default)]
pub(super) struct DriverCounters {
    /// Batches of entries merged from peers appended to the log.
    pub remote_appends: u64,
    /// Appends of merged entries that failed (the entries wait in memory for the next).
    pub append_failures: u64,
    /// Datagrams dropped on purpose by the test hook.
    pub hook_drops: u64,
    /// Replays of the whole log handed out after a roster change or a new root key (run on
    /// the replay thread, or here if it is gone).
    pub replays: u64,
    /// Replay results not used: overtaken by another roster change or a new root key.
    pub replays_stale: u64,
    /// Replays that panicked on the replay thread (a bug; replays then run on the core
    /// thread).
    pub replay_failures: u64,
    /// Datagrams the send task could not send (it counts them; the core only reads).
    pub send_errors: Arc<AtomicU64>,
}

/// The status reply.
#[allow(clippy::too_many_arguments)]
pub(super) fn status(
    config: &Config,
    peer: &Peer,
    store: &LogStore,
    daemon: &DriverCounters,
    whisper: SocketAddr,
    listed: &ListedUpdate,
    http: Option<&HttpStatus>,
    now: Now,
) -> StatusResult {
    let ours = peer.ledger().fingerprint();
    let stats = peer.stats();
    let mut counters = BTreeMap::new();
    counters.insert("datagrams_sent".to_string(), stats.datagrams_sent);
    counters.insert("bytes_sent".to_string(), stats.bytes_sent);
    counters.insert("datagrams_received".to_string(), stats.datagrams_received);
    counters.insert("bytes_received".to_string(), stats.bytes_received);
    counters.insert("entries_merged".to_string(), stats.entries_merged);
    counters.insert("entries_pushed".to_string(), stats.entries_pushed);
    counters.insert("sessions_started".to_string(), stats.sessions_started);
    counters.insert("sessions_completed".to_string(), stats.sessions_completed);
    counters.insert("sessions_aborted".to_string(), stats.sessions_aborted);
    counters.insert(
        "send_errors".to_string(),
        daemon.send_errors.load(Ordering::Relaxed),
    );
    counters.insert("log_fsyncs".to_string(), store.fsyncs());
    counters.insert(
        "checkpoint_entries".to_string(),
        store.checkpoint_entries().unwrap_or(0),
    );
    counters.insert("log_remote_appends".to_string(), daemon.remote_appends);
    if daemon.append_failures > 0 {
        counters.insert("log_append_failures".to_string(), daemon.append_failures);
    }
    counters.insert(
        "log_unstored".to_string(),
        peer.ledger().resident_len() as u64,
    );
    counters.insert("encode_failures".to_string(), stats.encode_failures);
    counters.insert("entries_rejected".to_string(), peer.ledger().rejected());
    counters.insert("replays".to_string(), daemon.replays);
    counters.insert("replays_stale".to_string(), daemon.replays_stale);
    if daemon.replay_failures > 0 {
        counters.insert("replay_failures".to_string(), daemon.replay_failures);
    }
    counters.insert(
        "replay_pending".to_string(),
        u64::from(peer.ledger().replay_pending()),
    );
    counters.insert("peers_evicted".to_string(), stats.peers_evicted);
    counters.insert("answers_limited".to_string(), stats.answers_limited);
    if daemon.hook_drops > 0 {
        // Only a test hook drops on purpose; keep the counter out of normal status.
        counters.insert("dropped_by_test_hook".to_string(), daemon.hook_drops);
    }
    for (reason, count) in &stats.dropped {
        counters.insert(format!("dropped_{reason}"), *count);
    }
    counters.insert("log_bytes".to_string(), store.len_bytes());
    counters.insert("players".to_string(), peer.ledger().totals().len() as u64);
    if let Some(age) = checkpoint_age_ms(store) {
        counters.insert("checkpoint_age_ms".to_string(), age);
    }
    let histograms = BTreeMap::from([
        ("catch_up".to_string(), stats.catch_up.clone()),
        ("fsync".to_string(), store.fsync_latency().clone()),
    ]);
    let officers = peer
        .ledger()
        .officers()
        .into_iter()
        .map(|(name, key)| OfficerStatus {
            name,
            key: key.to_string(),
        })
        .collect();
    StatusResult {
        node: config.node.clone(),
        group: config.group.name.clone(),
        sync_enabled: peer.sync_enabled(),
        multicast: config
            .group
            .multicast()
            .map(|group| format!("{group} on {}", config.group.interface)),
        whisper: Some(whisper.to_string()),
        entries: peer.ledger().len(),
        fingerprint: ours.short(),
        peers: peers(peer, now),
        listed: listed
            .names
            .iter()
            .map(|name| ListedStatus {
                address: name.target.clone(),
                resolved: name.resolved.iter().map(ToString::to_string).collect(),
                error: name.error.clone(),
                failures: name.failures,
            })
            .collect(),
        counters,
        group_key_id: peer.group_key_id().map(|id| id.to_string()),
        roster_size: peer.ledger().root().map(|_| peer.ledger().officers().len()),
        histograms,
        officers,
        http: http.cloned(),
    }
}

/// How long ago the log's checkpoint was written (its file's modification time), if there
/// is one.
fn checkpoint_age_ms(store: &LogStore) -> Option<u64> {
    let path = crate::store::checkpoint_path(store.path());
    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let age = std::time::SystemTime::now().duration_since(written).ok()?;
    Some(age.as_millis() as u64)
}

/// The peers heard recently, then each listed address that no peer in that list answers
/// from (never heard, or silent for longer than the peer timeout).
fn peers(peer: &Peer, now: Now) -> Vec<PeerStatus> {
    let ours = peer.ledger().fingerprint();
    let ago = |at: u64| now.mono_ms.saturating_sub(at);
    let mut rows: Vec<PeerStatus> = peer
        .peers()
        .map(|p| PeerStatus {
            name: p.name.clone(),
            node: Some(format!("{:016x}", p.node)),
            address: p.whisper.to_string(),
            reached: reach(p.reached),
            last_heard_ms_ago: Some(ago(p.last_heard_ms)),
            in_sync: p.fingerprint == Some(ours),
        })
        .collect();
    let known: BTreeSet<_> = peer.peers().map(|p| p.node).collect();
    for listed in peer.listed() {
        if listed.node.is_some_and(|node| known.contains(&node)) {
            continue;
        }
        rows.push(PeerStatus {
            name: None,
            node: listed.node.map(|node| format!("{node:016x}")),
            address: listed.address.to_string(),
            reached: PeerReach::Listed,
            last_heard_ms_ago: listed.last_heard_ms.map(ago),
            in_sync: false,
        });
    }
    rows
}

/// The core's answer in the control protocol's terms (which stay stable if the core's
/// change).
fn reach(reached: Reach) -> PeerReach {
    match reached {
        Reach::Multicast => PeerReach::Multicast,
        Reach::Listed => PeerReach::Listed,
        Reach::Learned => PeerReach::Learned,
    }
}
