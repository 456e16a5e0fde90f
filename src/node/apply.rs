//! The requests a ledger answers by itself, with or without a daemon: adjust, append, points
//! and history. The daemon serves them on its core thread; the offline CLI on the log it
//! opened. Status and the sync and debug switches need a running daemon and are not here.

use crate::control::Adjust;
use crate::control::{AdjustResult, Append, Command, History, HistoryResult, Points, PointsResult};
use crate::core::roster::Roster;
use crate::core::sync::{Now, Peer};
use crate::proto::entry::{AdjustRequest, Entry, EntryError, EntryKind};
use crate::proto::signature::{self, SignatureError};
use crate::store::{LogStore, StoreError};
use thiserror::Error;

/// A request the ledger answers by itself.
pub trait LedgerCommand: Command {
    /// Runs the request against `peer` (the ledger in memory) and `store` (its log). `node`
    /// is the actor of an adjust that names none.
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<Self::Output, ApplyError>;
}

/// Runs a ledger request (adjust, append, points, history).
pub fn apply<C: LedgerCommand>(
    peer: &mut Peer,
    store: &mut LogStore,
    node: &str,
    now: Now,
    command: C,
) -> Result<C::Output, ApplyError> {
    command.apply(peer, store, node, now)
}

/// A ledger request was refused; nothing was recorded (see [`ApplyError::NotRecorded`] for
/// what a failed write leaves behind).
#[derive(Debug, Error)]
pub enum ApplyError {
    /// An adjust without a reason.
    #[error("invalid adjustment: the reason must not be empty (it is the audit trail)")]
    EmptyReason,
    /// An adjust the entry rules refuse (names, lengths, a revoked officer key, ...).
    #[error("invalid adjustment: {}", user_words(.0))]
    InvalidAdjustment(EntryError),
    /// An appended entry that is not a valid entry.
    #[error("invalid entry: {0}")]
    InvalidEntry(EntryError),
    /// An appended entry whose signature does not hold.
    #[error("entry not accepted: {0}")]
    BadSignature(SignatureError),
    /// An append to a peer that has no roster to change (often a daemon started before
    /// the root key was put in its config).
    #[error(
        "this daemon runs without security.root_public_key, and roster changes count only \
         in a group with a root key: if the config file sets it now, reload the daemon \
         (`systemctl reload lootsync`, or SIGHUP) and try again"
    )]
    NoRootKey,
    /// A roster change signed by another root key than the daemon runs with.
    #[error(
        "entry not accepted: it is signed by key {signer}, not by root key {root} this \
         daemon runs with: if {signer} is the group's root key and the config file names \
         it now, reload the daemon (`systemctl reload lootsync`, or SIGHUP) and try again"
    )]
    OtherRootKey {
        /// The key that signed the change.
        signer: crate::proto::keys::PublicKey,
        /// The daemon's root key.
        root: crate::proto::keys::PublicKey,
    },
    /// An appended entry that is not a roster change signed by the root key.
    #[error(
        "entry not accepted: only roster changes signed by the group's root key can be \
         appended (use `adjust` for points)"
    )]
    NotARosterChange,
    /// The durable append failed.
    #[error("{}", not_recorded(.error, *.rollback_pending))]
    NotRecorded {
        /// Why.
        error: StoreError,
        /// Part of the record is still in the log, to be cut before the next write.
        rollback_pending: bool,
    },
}

impl LedgerCommand for Adjust {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<AdjustResult, ApplyError> {
        let reason = self.reason.trim().to_string();
        if reason.is_empty() {
            return Err(ApplyError::EmptyReason);
        }
        let adjust = AdjustRequest {
            actor: self
                .actor
                .unwrap_or_else(|| node.to_string())
                .trim()
                .to_string(),
            target: self.player.trim().to_string(),
            delta: self.delta,
            reason,
        };
        let entry = peer
            .prepare_adjust(now, &adjust)
            .map_err(ApplyError::InvalidAdjustment)?;
        record(peer, store, now, &entry)?;
        let total = peer.ledger().total(&entry.target);
        Ok(AdjustResult { entry, total })
    }
}

impl LedgerCommand for Append {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        _node: &str,
        now: Now,
    ) -> Result<Entry, ApplyError> {
        let entry = *self.entry;
        entry.validate().map_err(ApplyError::InvalidEntry)?;
        signature::verify(&entry).map_err(ApplyError::BadSignature)?;
        // Append exists for roster changes signed elsewhere (by the root key holder);
        // anything else would be stored and count for nothing, so say so instead.
        let Some(root) = peer.ledger().root() else {
            return Err(ApplyError::NoRootKey);
        };
        if let Some(signer) = entry.seal.map(|seal| seal.signer) {
            if entry.kind != EntryKind::Points && signer != root {
                return Err(ApplyError::OtherRootKey { signer, root });
            }
        }
        let root = Some(root);
        if entry.kind == EntryKind::Points || !Roster::is_valid_roster_change(root, &entry) {
            return Err(ApplyError::NotARosterChange);
        }
        if !peer.ledger().contains(&entry.key().digest) {
            record(peer, store, now, &entry)?;
        }
        Ok(entry)
    }
}

impl LedgerCommand for Points {
    fn apply(
        self,
        peer: &mut Peer,
        _store: &mut LogStore,
        _node: &str,
        _now: Now,
    ) -> Result<PointsResult, ApplyError> {
        Ok(peer.ledger().totals().clone())
    }
}

impl LedgerCommand for History {
    fn apply(
        self,
        peer: &mut Peer,
        _store: &mut LogStore,
        _node: &str,
        _now: Now,
    ) -> Result<HistoryResult, ApplyError> {
        Ok(peer.ledger().history(self.player.as_deref()))
    }
}

/// Durable before success is reported: append, then fdatasync, then apply.
fn record(
    peer: &mut Peer,
    store: &mut LogStore,
    now: Now,
    entry: &Entry,
) -> Result<(), ApplyError> {
    let offsets = store
        .append_durable(std::slice::from_ref(entry))
        .map_err(|error| ApplyError::NotRecorded {
            rollback_pending: store.rollback_pending(),
            error,
        })?;
    peer.commit_local(now, entry.clone());
    let key = entry.key();
    for offset in offsets {
        peer.mark_stored(&key, offset);
    }
    // Offline commands keep the next one's replay short; the daemon has its own schedule
    // (this does nothing there).
    store.checkpoint_if_due(peer.ledger());
    Ok(())
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

/// Explains a failed durable append to whoever asked for it: the OS error, the likely cause
/// when it is a full disk, and what state the log is in.
fn not_recorded(err: &StoreError, rollback_pending: bool) -> String {
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
    if rollback_pending {
        message.push_str(
            "; part of the record could not be removed yet and is cut before the next write \
             or when the log is next opened; every earlier entry is intact",
        );
    } else {
        message.push_str("; the log is unchanged");
    }
    message
}
