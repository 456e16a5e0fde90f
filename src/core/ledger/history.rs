//! History views: every entry (or one player's) in replay order with the running total and
//! the verdict at its place, from the ledger or from a snapshot detached from it.

use super::index::DetachedIndex;
use super::targets::NO_TARGET;
use crate::core::roster::plan::{keys_added, NameKey, RosterView};
use crate::core::roster::{Revocations, Roster, Verdict};
use crate::proto::digest::{Digest, Key};
use crate::proto::entry::{Entry, EntryKind};
use crate::proto::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// One line of a player's (or the whole log's) history: the entry plus the total that
/// replaying the log gives right after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// The entry itself.
    pub entry: Entry,
    /// The target's replayed total after this entry (may differ from `entry.new_total`,
    /// which is what the author saw when offline edits had not yet merged).
    pub total: i64,
    /// Why the entry counts for nothing (e.g. "rejected: signer not an officer"), or `None`
    /// when it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The roster name of the officer whose key signed the entry, at its place in the
    /// order: who really wrote it, whatever its free-text `actor` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The digest (32 hex digits) of the entry this one reverts, when it is a revert that
    /// counts (see [`super::revert`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverts: Option<String>,
    /// The digest of the revert that undoes this entry, if one counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_by: Option<String>,
}

/// A snapshot of what a history needs ([`super::Ledger::history_source`]); `Send`, so it can
/// go to another thread. The log only grows while the daemon holds it, so its offsets stay
/// valid.
pub struct HistorySource {
    root: Option<PublicKey>,
    revocations: Arc<Revocations>,
    /// The valid roster changes, by key: they judge every entry after them, and their
    /// bodies are at hand without a read.
    roster: BTreeMap<Key, Entry>,
    index: DetachedIndex,
}

impl HistorySource {
    /// A snapshot judged under `root`, `revocations` and the valid roster changes `roster`,
    /// reading the entries of `index`.
    pub(super) fn new(
        root: Option<PublicKey>,
        revocations: Arc<Revocations>,
        roster: BTreeMap<Key, Entry>,
        index: DetachedIndex,
    ) -> HistorySource {
        HistorySource {
            root,
            revocations,
            roster,
            index,
        }
    }

    /// The history, exactly as [`super::Ledger::history`] gives it.
    ///
    /// One player's history reads back only that player's entries: a row depends on the
    /// entries of its own target (the running total) and on the valid roster changes before
    /// it (the verdict and the signer's name), and on nothing else, since judging a point
    /// entry changes no roster. The index knows every entry's target, so the others are
    /// skipped without reading them.
    pub fn history(self, player: Option<&str>) -> Vec<HistoryRow> {
        let HistorySource {
            root,
            revocations,
            roster,
            index,
        } = self;
        let reader = index.reader.clone();
        // `None`: every entry; `Some(None)`: a name no entry targets.
        let wanted: Option<Option<u32>> = player.map(|name| index.targets.id(name));
        let entries = index.walk().filter_map(move |(key, body, target)| {
            if let Some(change) = roster.get(&key) {
                return Some(change.clone());
            }
            let read = match wanted {
                None => true,
                Some(id) => Some(target) == id || target == NO_TARGET,
            };
            if !read {
                return None;
            }
            body.read(reader.as_deref(), &key)
        });
        history_rows(root, revocations, entries, player)
    }
}

impl HistorySource {
    /// The totals and the rejected count of every entry, judged in replay order, for a
    /// replay run off the ledger's thread ([`super::ReplayJob`]); `None` once `stop` is
    /// set. The same sum [`super::Ledger`] makes when it replays at once
    /// ([`super::replay::sum_replay`]).
    pub(super) fn totals(self, stop: &AtomicBool) -> Option<(BTreeMap<String, i64>, u64)> {
        let entries = self.index.walk_lazily();
        super::replay::sum_replay(self.root, self.revocations, &self.roster, entries, stop)
    }
}

impl HistorySource {
    /// What the officer planner needs to know about officer `name`
    /// ([`RosterView::from_counted`], judged as the history is), reading back only the
    /// entries that sort after the first roster change adding one of the name's keys:
    /// before it none of them was an officer, so none of their entries counts. The keys
    /// and the roster come from the valid roster changes, which are at hand unread.
    pub fn roster_view(self, name: &str) -> RosterView {
        let HistorySource {
            root,
            revocations,
            roster,
            index,
        } = self;
        let mut end = Roster::with_revocations(root, revocations.clone());
        for change in roster.values() {
            end.judge(change);
        }
        let revoked: BTreeSet<PublicKey> = revocations.keys().copied().collect();
        // Every valid roster change counts, so these are the name's keys as the whole
        // history's counted entries give them.
        let mut counted: BTreeMap<PublicKey, Vec<Digest>> = keys_added(roster.values(), name)
            .filter(|key| !revoked.contains(key))
            .map(|key| (key, Vec::new()))
            .collect();
        // The first add of any of them, under whatever name.
        let first_add = roster.iter().find_map(|(key, change)| match change.kind {
            EntryKind::OfficerAdd { public_key } if counted.contains_key(&public_key) => Some(*key),
            _ => None,
        });
        if let Some(first_add) = first_add {
            let reader = index.reader.clone();
            let mut judge = Roster::with_revocations(root, revocations);
            for (key, body, _) in index.walk() {
                if let Some(change) = roster.get(&key) {
                    judge.judge(change);
                    continue;
                }
                if key < first_add {
                    continue;
                }
                let entry = body.read(reader.as_deref(), &key);
                let Some(entry) = entry.filter(|entry| entry.kind == EntryKind::Points) else {
                    continue;
                };
                let Some(signed) = entry.seal.and_then(|seal| counted.get_mut(&seal.signer)) else {
                    continue;
                };
                if judge.judge_points(&entry) == Verdict::Counts {
                    signed.push(key.digest);
                }
            }
        }
        RosterView {
            officers: end.officers(),
            revoked,
            keys: counted
                .into_iter()
                .map(|(key, counted)| NameKey { key, counted })
                .collect(),
        }
    }
}

/// History rows for `entries` (in key order), judged by a roster replayed along the way.
pub(super) fn history_rows(
    root: Option<PublicKey>,
    revocations: Arc<Revocations>,
    entries: impl Iterator<Item = Entry>,
    player: Option<&str>,
) -> Vec<HistoryRow> {
    let mut running: HashMap<String, i64> = HashMap::new();
    let mut roster = Roster::with_revocations(root, revocations);
    let mut rows = Vec::new();
    for e in entries {
        let verdict = roster.judge(&e);
        let total = match running.get_mut(&e.target) {
            Some(total) => total,
            None => running.entry(e.target.clone()).or_insert(0),
        };
        if verdict == Verdict::Counts && e.kind == EntryKind::Points {
            *total = total.wrapping_add(e.delta);
        }
        if player.is_none_or(|p| p == e.target) {
            let total = *total;
            let signed_by = match e.kind {
                EntryKind::Points => e
                    .seal
                    .and_then(|seal| roster.name_of(&seal.signer).map(str::to_string)),
                _ => None,
            };
            rows.push(HistoryRow {
                entry: e,
                total,
                rejected: verdict.rejection().map(str::to_string),
                signed_by,
                reverts: None,
                reverted_by: None,
            });
        }
    }
    super::revert::link_reverts(&mut rows);
    rows
}

#[cfg(test)]
mod tests {
    use crate::core::ledger::test_support::{entry, MemoryReader};
    use crate::core::ledger::{Ledger, LedgerBuilder};
    use crate::proto::entry::Entry;
    use std::sync::Arc;

    #[test]
    fn history_has_running_totals_in_key_order() {
        let (ledger, _) = Ledger::from_entries(vec![
            entry(3, 1, "Bob", 5),
            entry(1, 2, "Bob", 30),
            entry(2, 3, "Alice", 7),
        ]);
        let rows = ledger.history(Some("Bob"));
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].entry.delta, rows[0].total), (30, 30));
        assert_eq!((rows[1].entry.delta, rows[1].total), (5, 35));
        assert_eq!(ledger.history(None).len(), 3);
    }

    /// The detached history source (what the daemon builds history from off its event
    /// loop) gives exactly the ledger's history, stored and resident bodies alike.
    #[test]
    fn history_source_matches_the_ledger_history() {
        let reader = Arc::new(MemoryReader::default());
        let mut builder = LedgerBuilder::new();
        let stored: Vec<Entry> = (0..20).map(|i| entry(i * 3, i as u8, "Ann", 1)).collect();
        for (i, e) in stored.iter().enumerate() {
            reader.put(100 + i as u64, e.clone());
            builder.push(e, 100 + i as u64);
        }
        let (mut ledger, _) = builder.finish(reader);
        ledger.insert(entry(7, 99, "Bo", 5));
        ledger.insert(entry(70, 98, "Ann", -2));
        assert_eq!(ledger.resident_len(), 2);
        for player in [None, Some("Ann"), Some("Bo"), Some("nobody")] {
            assert_eq!(
                ledger.history_source().history(player),
                ledger.history(player),
                "{player:?}"
            );
        }
        assert_eq!(ledger.history(None).len(), 22);
    }
}
