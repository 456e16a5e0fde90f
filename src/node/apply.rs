//! The requests a ledger answers by itself, with or without a daemon: adjust, append, points,
//! history and the roster query of `officer add`/`officer remove`. The daemon serves them on
//! its core thread (history and the roster query from a snapshot, on a thread of their own);
//! the offline CLI on the log it opened. Status and the sync and debug switches need a
//! running daemon and are not here.

use crate::control::{Adjust, Award, BatchChange, BatchResult, Decay, Import, Revert, RosterQuery};
use crate::control::{AdjustResult, Append, Command, History, HistoryResult, Points, PointsResult};
use crate::core::batch::{self, BatchError, Plan, PlannedChange, RevertRefusal};
use crate::core::ledger::Ledger;
use crate::core::roster::plan::RosterView;
use crate::core::roster::Roster;
use crate::core::sync::{Now, Peer};
use crate::proto::entry::{AdjustRequest, Entry, EntryError, EntryKind};
use crate::proto::entry::{MAX_NAME_BYTES, MAX_REASON_BYTES};
use crate::proto::keys::PublicKey;
use crate::proto::signature::{self, SignatureError};
use crate::proto::text::clean_new_text;
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
    /// A batch (award, decay, import) with a bad item; nothing was written.
    #[error("refused, nothing written: {0}")]
    Batch(BatchError),
    /// A revert that cannot be made; nothing was written.
    #[error("revert refused: {0}")]
    Revert(RevertRefusal),
    /// A batch bigger than one request may carry.
    #[error("refused, nothing written: {given} players; at most {max} in one batch")]
    TooManyPlayers {
        /// How many were given.
        given: usize,
        /// The limit.
        max: usize,
    },
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
    /// A roster query for changes signed by another root key than the ledger is judged
    /// under: the planner would judge the roster differently from this peer.
    #[error(
        "this daemon judges the roster under root key {root}, not under {asked}, the key \
         signing this change: if {asked} is the group's root key and the config file names \
         it now, reload the daemon (`systemctl reload lootsync`, or SIGHUP) and try again"
    )]
    OtherRootJudges {
        /// The key the change is to be signed by.
        asked: crate::proto::keys::PublicKey,
        /// The root key the ledger is judged under.
        root: crate::proto::keys::PublicKey,
    },
    /// A decay or import (a dry run too) while the totals wait for a replay after a late
    /// roster change or a new root key: its deltas would be computed from stale totals
    /// and signed for good.
    #[error(
        "refused, nothing written: the totals are being recomputed after a roster change \
         or a new root key (seconds on a large log; `lootsync status` shows replay_pending \
         1 until then): try again shortly"
    )]
    TotalsBeingRecomputed,
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

// By hand rather than `#[from]`, which would also make the inner error the `source` and
// print its words twice in a `{:#}` chain.
impl From<BatchError> for ApplyError {
    fn from(err: BatchError) -> ApplyError {
        ApplyError::Batch(err)
    }
}

impl From<RevertRefusal> for ApplyError {
    fn from(err: RevertRefusal) -> ApplyError {
        ApplyError::Revert(err)
    }
}

/// Refuses a command that computes its deltas from the totals while they wait for a
/// replay (an adjust's recorded `new_total` is informational and may lag, as it may
/// anyway before a merge).
fn require_current_totals(peer: &Peer) -> Result<(), ApplyError> {
    match peer.ledger().replay_pending() {
        true => Err(ApplyError::TotalsBeingRecomputed),
        false => Ok(()),
    }
}

impl LedgerCommand for Adjust {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<AdjustResult, ApplyError> {
        if self.reason.trim().is_empty() {
            return Err(ApplyError::EmptyReason);
        }
        let reason = clean_new_text("reason", &self.reason, MAX_REASON_BYTES, true)
            .map_err(ApplyError::InvalidAdjustment)?;
        let player = clean_new_text("player", &self.player, MAX_NAME_BYTES, true)
            .map_err(ApplyError::InvalidAdjustment)?;
        let (player, warning) = batch::resolve_one(peer.ledger(), player);
        let plan = Plan {
            changes: vec![PlannedChange {
                before: peer.ledger().total(&player),
                player,
                delta: self.delta,
            }],
            warnings: warning.into_iter().collect(),
        };
        let entries = prepare(peer, now, node, self.actor, &plan, &reason)
            .map_err(ApplyError::InvalidAdjustment)?;
        record(peer, store, now, &entries)?;
        let entry = entries.into_iter().next().expect("one entry planned");
        let total = peer.ledger().total(&entry.target);
        Ok(AdjustResult {
            entry,
            total,
            warnings: plan.warnings,
        })
    }
}

impl LedgerCommand for Award {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<BatchResult, ApplyError> {
        check_batch_size(self.players.len())?;
        let reason = batch::clean_reason(&self.reason, MAX_REASON_BYTES)?;
        let plan = batch::plan_award(peer.ledger(), &self.players, self.delta)?;
        write_batch(
            peer,
            store,
            node,
            now,
            self.actor,
            plan,
            self.dry_run,
            &reason,
        )
    }
}

impl LedgerCommand for Decay {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<BatchResult, ApplyError> {
        let reason = batch::clean_reason(&self.reason, MAX_REASON_BYTES)?;
        require_current_totals(peer)?;
        let plan = batch::plan_decay(peer.ledger(), self.percent_hundredths)?;
        write_batch(
            peer,
            store,
            node,
            now,
            self.actor,
            plan,
            self.dry_run,
            &reason,
        )
    }
}

impl LedgerCommand for Import {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<BatchResult, ApplyError> {
        check_batch_size(self.balances.len())?;
        let reason = batch::clean_reason(&self.reason, MAX_REASON_BYTES)?;
        let balances: Vec<(String, i64)> = self
            .balances
            .into_iter()
            .map(|b| (b.player, b.points))
            .collect();
        require_current_totals(peer)?;
        let plan = batch::plan_import(peer.ledger(), &balances)?;
        write_batch(
            peer,
            store,
            node,
            now,
            self.actor,
            plan,
            self.dry_run,
            &reason,
        )
    }
}

impl LedgerCommand for Revert {
    fn apply(
        self,
        peer: &mut Peer,
        store: &mut LogStore,
        node: &str,
        now: Now,
    ) -> Result<BatchResult, ApplyError> {
        let original = batch::find_entry(peer.ledger(), &self.entry)?;
        // Only the player's own entries decide whether it counts and is already reverted.
        let rows = peer.ledger().history(Some(&original.target));
        let plan = batch::plan_revert(original, &rows, &self.reason)?;
        let reason = plan.reason.clone();
        let batch_plan = Plan {
            changes: vec![plan.change],
            warnings: Vec::new(),
        };
        write_batch(
            peer, store, node, now, self.actor, batch_plan, false, &reason,
        )
    }
}

fn check_batch_size(given: usize) -> Result<(), ApplyError> {
    if given > crate::control::MAX_BATCH {
        return Err(ApplyError::TooManyPlayers {
            given,
            max: crate::control::MAX_BATCH,
        });
    }
    Ok(())
}

/// Makes and signs the entries of `plan` (nothing is written): all of them, or none when
/// any is refused (an officer key that cannot sign refuses the first).
fn prepare(
    peer: &mut Peer,
    now: Now,
    node: &str,
    actor: Option<String>,
    plan: &Plan,
    reason: &str,
) -> Result<Vec<Entry>, EntryError> {
    let actor = match actor {
        Some(actor) => clean_new_text("actor", &actor, MAX_NAME_BYTES, true)?,
        None => node.trim().to_string(),
    };
    plan.changes
        .iter()
        .map(|change| {
            peer.prepare_adjust(
                now,
                &AdjustRequest {
                    actor: actor.clone(),
                    target: change.player.clone(),
                    delta: change.delta,
                    reason: reason.to_string(),
                },
            )
        })
        .collect()
}

/// Writes `plan` as one batch (one write, one fdatasync, one broadcast), or with `dry_run`
/// only says what it would write.
#[allow(clippy::too_many_arguments)]
fn write_batch(
    peer: &mut Peer,
    store: &mut LogStore,
    node: &str,
    now: Now,
    actor: Option<String>,
    plan: Plan,
    dry_run: bool,
    reason: &str,
) -> Result<BatchResult, ApplyError> {
    let changes = |entries: Vec<Option<Entry>>| {
        plan.changes
            .iter()
            .zip(entries)
            .map(|(change, entry)| BatchChange {
                player: change.player.clone(),
                before: change.before,
                delta: change.delta,
                after: change.before.wrapping_add(change.delta),
                entry,
            })
            .collect()
    };
    if dry_run {
        return Ok(BatchResult {
            written: false,
            changes: changes(vec![None; plan.changes.len()]),
            warnings: plan.warnings.clone(),
        });
    }
    let entries =
        prepare(peer, now, node, actor, &plan, reason).map_err(ApplyError::InvalidAdjustment)?;
    record(peer, store, now, &entries)?;
    Ok(BatchResult {
        written: true,
        changes: changes(entries.into_iter().map(Some).collect()),
        warnings: plan.warnings.clone(),
    })
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
            record(peer, store, now, std::slice::from_ref(&entry))?;
        }
        Ok(entry)
    }
}

impl LedgerCommand for RosterQuery {
    fn apply(
        self,
        peer: &mut Peer,
        _store: &mut LogStore,
        _node: &str,
        _now: Now,
    ) -> Result<RosterView, ApplyError> {
        judged_under(peer.ledger(), self.root_public_key)?;
        Ok(peer.ledger().roster_view(&self.name))
    }
}

/// Refuses a [`RosterQuery`] unless `ledger` is judged under `root`, the key that signs the
/// change: under another root key (or none) the roster it sees is not the one the change is
/// planned against, and the change itself would be refused.
pub fn judged_under(ledger: &Ledger, root: PublicKey) -> Result<(), ApplyError> {
    match ledger.root() {
        None => Err(ApplyError::NoRootKey),
        Some(own) if own != root => Err(ApplyError::OtherRootJudges {
            asked: root,
            root: own,
        }),
        Some(_) => Ok(()),
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
        // Names match in any case and Unicode form, as they do for adjust.
        let player = self
            .player
            .map(|name| peer.ledger().resolve_player(name.trim()).unwrap_or(name));
        Ok(peer.ledger().history(player.as_deref()))
    }
}

/// Durable before success is reported: append every entry with one write and one
/// fdatasync (all or none: a failed write is cut back off), then apply them and send them
/// together.
fn record(
    peer: &mut Peer,
    store: &mut LogStore,
    now: Now,
    entries: &[Entry],
) -> Result<(), ApplyError> {
    let offsets = store
        .append_durable(entries)
        .map_err(|error| ApplyError::NotRecorded {
            rollback_pending: store.rollback_pending(),
            error,
        })?;
    let keys: Vec<_> = entries.iter().map(Entry::key).collect();
    peer.commit_local_batch(now, entries.to_vec());
    for (key, offset) in keys.iter().zip(offsets) {
        peer.mark_stored(key, offset);
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
            format!(
                "{} contains control or invisible characters (tabs, line breaks, escape \
                 sequences, bidirectional overrides)",
                rename(field)
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::control::Balance;
    use crate::proto::signature::SecretKey;
    use crate::testing::EntryBuilder;
    use std::sync::Arc;

    fn now(unix_ms: u64) -> Now {
        Now {
            mono_ms: 0,
            unix_ms,
        }
    }

    /// While the totals wait for a replay handed out after an early roster change, a
    /// decay or an import (whose deltas come from the totals) is refused and writes
    /// nothing; once the replay's result is in, the same decay is computed from the right
    /// totals.
    #[test]
    fn decay_and_import_wait_for_a_pending_replay() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            node: "box".into(),
            state_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let t0 = crate::node::system_unix_ms() - 60_000;
        let (mut peer, mut store) = crate::node::open_offline(&config, t0).unwrap();
        let root = SecretKey::from_seed([9; 32]);
        let (alice, bob) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let change = |ms: u64, seed: u8, name: &str, kind: EntryKind| {
            let entry = EntryBuilder::roster_change(ms, name, kind)
                .id_random([seed; 10])
                .signed(&root);
            Append {
                entry: Box::new(entry),
            }
        };
        peer.set_roster(
            Some(root.public()),
            Some(Arc::new(SecretKey::from_seed([1; 32]))),
        );
        let add = |key: &SecretKey| EntryKind::OfficerAdd {
            public_key: key.public(),
        };
        apply(
            &mut peer,
            &mut store,
            "box",
            now(t0),
            change(t0, 1, "alice", add(&alice)),
        )
        .unwrap();
        apply(
            &mut peer,
            &mut store,
            "box",
            now(t0),
            change(t0, 2, "bob", add(&bob)),
        )
        .unwrap();
        let adjust = |player: &str, delta| Adjust {
            player: player.into(),
            delta,
            reason: "raid".into(),
            actor: Some("alice".into()),
        };
        apply(
            &mut peer,
            &mut store,
            "box",
            now(t0 + 10),
            adjust("Ann", 100),
        )
        .unwrap();
        // Bob's entry, as a peer would have sent it.
        peer.set_roster(
            Some(root.public()),
            Some(Arc::new(SecretKey::from_seed([2; 32]))),
        );
        let mut by_bob = adjust("Ann", 50);
        by_bob.actor = Some("bob".into());
        apply(&mut peer, &mut store, "box", now(t0 + 20), by_bob).unwrap();
        assert_eq!(peer.ledger().total("Ann"), 150);

        // Alice removed before both entries, merged late: her 100 no longer counts.
        peer.defer_replays(true);
        apply(
            &mut peer,
            &mut store,
            "box",
            now(t0 + 30),
            change(t0 + 5, 3, "alice", EntryKind::OfficerRemove),
        )
        .unwrap();
        assert!(peer.ledger().replay_pending());
        let decay = || Decay {
            percent_hundredths: 1_000,
            reason: "weekly".into(),
            actor: None,
            dry_run: false,
        };
        let import = Import {
            balances: vec![Balance {
                player: "Ann".into(),
                points: 10,
            }],
            reason: "carry over".into(),
            actor: None,
            dry_run: false,
        };
        let entries = peer.ledger().len();
        assert!(matches!(
            apply(&mut peer, &mut store, "box", now(t0 + 40), decay()),
            Err(ApplyError::TotalsBeingRecomputed)
        ));
        assert!(matches!(
            apply(&mut peer, &mut store, "box", now(t0 + 40), import),
            Err(ApplyError::TotalsBeingRecomputed)
        ));
        assert_eq!(peer.ledger().len(), entries, "nothing written");

        let job = peer.poll_replay().expect("a replay handed out");
        assert!(peer.handle_replay(job.run()));
        assert_eq!(peer.ledger().total("Ann"), 50);
        let decayed = apply(&mut peer, &mut store, "box", now(t0 + 50), decay()).unwrap();
        let deltas: Vec<i64> = decayed.changes.iter().map(|c| c.delta).collect();
        assert_eq!(deltas, [-5], "10 % of the replayed 50, not of 150");
    }
}
