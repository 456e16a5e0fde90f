//! Officer roster changes as entries: what `officer add` and `officer remove` append.
//!
//! Planning is a pure function of the ledger's judgement ([`RosterView`]), the root key
//! that signs the changes, and the clock stamp and randomness the caller supplies, so the
//! rules (which keys a change revokes, which of their entries keep counting, how a long
//! keep list is cut into parts) are tested here without a log, a daemon or a clock.

use crate::core::rng::SeededRng;
use crate::proto::digest::Digest;
use crate::proto::entry::{new_entry_id, Entry, EntryError, EntryKind, MAX_KEEP, MAX_REVOKE_PARTS};
use crate::proto::hlc::Hlc;
use crate::proto::keys::PublicKey;
use crate::proto::signature::SecretKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// The entries' author as shown in history: roster changes are the root key's, not a
/// person's.
const ROOT_ACTOR: &str = "root";

/// What the planner needs to know of the ledger about one officer name, judged under the
/// root key that will sign the change (a peer without that root configured would judge
/// differently). Small whatever the log's size, so a daemon can answer it over the control
/// socket instead of shipping its whole history to the command line
/// ([`crate::core::ledger::Ledger::roster_view`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterView {
    /// The officers at the end of the log, by name.
    pub officers: BTreeMap<String, PublicKey>,
    /// Every key a complete revocation has revoked for good.
    pub revoked: BTreeSet<PublicKey>,
    /// Every key a roster change that counts made the name (in any letter case) an officer
    /// with and that is not revoked yet, sorted by key, each once.
    pub keys: Vec<NameKey>,
}

/// One key of the officer name a [`RosterView`] is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameKey {
    /// The officer key.
    pub key: PublicKey,
    /// The digests of the point entries it signed that count, in replay order: what a
    /// revocation of the key keeps.
    pub counted: Vec<Digest>,
}

impl RosterView {
    /// The view about officer `name` by its definition: from every entry that counts, in
    /// replay order (a whole judged history), the officers at the end of the log and the
    /// revoked keys. [`crate::core::ledger::Ledger::roster_view`] answers the same without
    /// reading every entry back; tests hold the two to each other.
    pub fn from_counted<'a>(
        name: &str,
        counted: impl IntoIterator<Item = &'a Entry>,
        officers: BTreeMap<String, PublicKey>,
        revoked: BTreeSet<PublicKey>,
    ) -> RosterView {
        let counted: Vec<&Entry> = counted.into_iter().collect();
        let mut keys: Vec<PublicKey> = keys_added(counted.iter().copied(), name)
            .filter(|key| !revoked.contains(key))
            .collect();
        keys.sort();
        keys.dedup();
        let keys = keys
            .into_iter()
            .map(|key| NameKey {
                key,
                counted: counted
                    .iter()
                    .filter(|entry| {
                        entry.kind == EntryKind::Points
                            && entry.seal.is_some_and(|seal| seal.signer == key)
                    })
                    .map(|entry| entry.digest())
                    .collect(),
            })
            .collect();
        RosterView {
            officers,
            revoked,
            keys,
        }
    }

    /// Whether a complete revocation has revoked `key` for good.
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.contains(key)
    }
}

/// What to do to one officer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfficerChange {
    /// Make the officer sign with `public_key`, revoking any earlier key of theirs.
    Add {
        /// The officer's new key.
        public_key: PublicKey,
    },
    /// Remove the officer by revoking every key of theirs.
    Remove {
        /// Keep none of their entries (for a stolen key), instead of every entry that
        /// counts now.
        revoke_all: bool,
    },
}

/// Why a change was not planned. Nothing is to be appended in any of these cases.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanRefusal {
    /// The key to add is the root key itself.
    #[error("{key} is the group's root key, not an officer key (an officer's key comes from `lootsync keygen officer` on their machine)")]
    RootKeyAsOfficer {
        /// The offered key.
        key: PublicKey,
    },
    /// The key to add was revoked, and a revoked key never signs again.
    #[error("key {key} is revoked for good; make a new one with `lootsync keygen officer`")]
    RevokedKey {
        /// The offered key.
        key: PublicKey,
    },
    /// The officer already signs with this key: the change would change nothing.
    #[error("{officer} is already an officer with this key; nothing to do")]
    AlreadyOfficer {
        /// The officer's name as the roster spells it.
        officer: String,
    },
    /// No key of this name is an officer key that is not revoked yet.
    #[error("{name} is not an officer in this peer's log (see `lootsync history`)")]
    NotAnOfficer {
        /// The name asked for.
        name: String,
    },
    /// The key's entries that count do not fit in the largest revocation.
    #[error("{name}'s key signed {kept} entries that count; one revocation keeps at most {max}")]
    TooManyToKeep {
        /// The officer's name.
        name: String,
        /// How many entries would be kept.
        kept: usize,
        /// The most one revocation can keep.
        max: usize,
    },
    /// The officer's name cannot be an entry's target.
    #[error("invalid officer name: {0}")]
    InvalidName(#[source] EntryError),
}

/// The entries that carry out `change` for officer `name`, in the order to append them,
/// signed by `root`; `view` is the ledger's judgement about `name`. The first is stamped `first_at`, each later one a tick after, so they
/// replay in order; entry ids and revocation batch ids are drawn from `rng`.
///
/// A new key for an officer revokes every earlier key of the name, or their holders could
/// still sign entries dated while those keys were valid; the entries those keys signed that
/// count now keep counting.
pub fn officer_change(
    view: &RosterView,
    name: &str,
    change: OfficerChange,
    root: &SecretKey,
    first_at: Hlc,
    rng: &mut SeededRng,
) -> Result<Vec<Entry>, PlanRefusal> {
    let mut changes: Vec<(EntryKind, String)> = Vec::new();
    match change {
        OfficerChange::Add { public_key } => {
            if public_key == root.public() {
                return Err(PlanRefusal::RootKeyAsOfficer { key: public_key });
            }
            if view.is_revoked(&public_key) {
                return Err(PlanRefusal::RevokedKey { key: public_key });
            }
            if let Some((officer, _)) = view
                .officers
                .iter()
                .find(|(officer, key)| same_name(officer, name) && **key == public_key)
            {
                return Err(PlanRefusal::AlreadyOfficer {
                    officer: officer.clone(),
                });
            }
            for old in &view.keys {
                if old.key != public_key {
                    changes.extend(revocation(name, old, false, "key replaced", rng)?);
                }
            }
            changes.push((EntryKind::OfficerAdd { public_key }, "officer added".into()));
        }
        OfficerChange::Remove { revoke_all } => {
            if view.keys.is_empty() {
                return Err(PlanRefusal::NotAnOfficer { name: name.into() });
            }
            for key in &view.keys {
                changes.extend(revocation(name, key, revoke_all, "officer removed", rng)?);
            }
        }
    }
    changes
        .into_iter()
        .enumerate()
        .map(|(n, (kind, reason))| {
            let at = Hlc(first_at.0.saturating_add(n as u64));
            let mut entry = Entry {
                id: new_entry_id(at.unix_ms(), rng.bytes()),
                at,
                actor: ROOT_ACTOR.into(),
                target: name.into(),
                delta: 0,
                new_total: 0,
                reason,
                kind,
                seal: None,
            };
            entry.validate().map_err(PlanRefusal::InvalidName)?;
            root.sign(&mut entry);
            Ok(entry)
        })
        .collect()
}

/// Officer names compare in any letter case, as the impersonation rule compares them.
fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// The keys the officer adds among `entries` give officer `name` (in any letter case), in
/// their order, repeats included.
pub(crate) fn keys_added<'a>(
    entries: impl Iterator<Item = &'a Entry> + 'a,
    name: &'a str,
) -> impl Iterator<Item = PublicKey> + 'a {
    entries.filter_map(move |entry| match entry.kind {
        EntryKind::OfficerAdd { public_key } if same_name(&entry.target, name) => Some(public_key),
        _ => None,
    })
}

/// The parts of a revocation of `key` (officer `name`), each with its history reason: the
/// digests of the key's entries that count now (none with `revoke_all`), [`MAX_KEEP`] per
/// part. Nothing takes effect until every part is in the log, so an interrupted run can
/// simply be repeated.
fn revocation(
    name: &str,
    key: &NameKey,
    revoke_all: bool,
    why: &str,
    rng: &mut SeededRng,
) -> Result<Vec<(EntryKind, String)>, PlanRefusal> {
    let counted = &key.counted;
    let kept: &[Digest] = if revoke_all { &[] } else { counted };
    let chunks = keep_parts(kept).ok_or_else(|| PlanRefusal::TooManyToKeep {
        name: name.into(),
        kept: kept.len(),
        max: MAX_KEEP * usize::from(MAX_REVOKE_PARTS),
    })?;
    let parts = chunks.len() as u16;
    let batch = rng.bytes();
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(part, keep)| {
            let kind = EntryKind::OfficerRevoke {
                public_key: key.key,
                batch,
                part: part as u16,
                parts,
                keep: keep.to_vec(),
            };
            let reason = format!(
                "{why}, key revoked (part {}/{parts}: {} of {} entries kept)",
                part + 1,
                keep.len(),
                counted.len()
            );
            (kind, reason)
        })
        .collect())
}

/// `kept` cut into the keep lists of a revocation's parts ([`MAX_KEEP`] each; one empty
/// part when nothing is kept), or `None` when that needs more than [`MAX_REVOKE_PARTS`].
fn keep_parts(kept: &[Digest]) -> Option<Vec<&[Digest]>> {
    let parts: Vec<&[Digest]> = if kept.is_empty() {
        vec![&[]]
    } else {
        kept.chunks(MAX_KEEP).collect()
    };
    (parts.len() <= usize::from(MAX_REVOKE_PARTS)).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::signature::verify;
    use crate::testing::EntryBuilder;
    use std::collections::BTreeSet;

    const ROOT_SEED: [u8; 32] = [100; 32];
    const FIRST_AT: Hlc = Hlc(1_700_000_000_000 << 16);

    /// A ledger's judgement written out by hand: the planner needs nothing more.
    #[derive(Default)]
    struct View {
        counted: Vec<Entry>,
        officers: BTreeMap<String, PublicKey>,
        revoked: BTreeSet<PublicKey>,
    }

    impl View {
        /// What the planner is told about `name`.
        fn about(&self, name: &str) -> RosterView {
            RosterView::from_counted(
                name,
                &self.counted,
                self.officers.clone(),
                self.revoked.clone(),
            )
        }

        /// `name` made an officer with `key` by the root.
        fn with_officer(mut self, name: &str, key: PublicKey) -> View {
            let add = blank(name, EntryKind::OfficerAdd { public_key: key })
                .signed(&SecretKey::from_seed(ROOT_SEED));
            self.counted.push(add);
            self.officers.insert(name.into(), key);
            self
        }

        /// `count` point entries signed by `signer`, all counting.
        fn with_points(mut self, signer: &SecretKey, count: usize) -> View {
            for n in 0..count {
                let entry = blank("Bob", EntryKind::Points)
                    .stamped(Hlc(BLANK_AT.0 + n as u64))
                    .delta(1)
                    .signed(signer);
                self.counted.push(entry);
            }
            self
        }

        fn digests_signed_by(&self, key: PublicKey) -> Vec<Digest> {
            self.counted
                .iter()
                .filter(|e| e.kind == EntryKind::Points && e.seal.unwrap().signer == key)
                .map(Entry::digest)
                .collect()
        }
    }

    /// When [`blank`] entries are stamped (and their ids made).
    const BLANK_AT: Hlc = Hlc(1_600_000_000_000 << 16);

    /// An entry about `target` doing `kind`, delta 0, stamped [`BLANK_AT`].
    fn blank(target: &str, kind: EntryKind) -> EntryBuilder {
        EntryBuilder::at_ms(BLANK_AT.unix_ms())
            .id_random([1; 10])
            .actor("someone")
            .target(target)
            .delta(0)
            .kind(kind)
    }

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32])
    }

    fn plan(view: &View, name: &str, change: OfficerChange) -> Result<Vec<Entry>, PlanRefusal> {
        let root = SecretKey::from_seed(ROOT_SEED);
        let view = view.about(name);
        officer_change(&view, name, change, &root, FIRST_AT, &mut SeededRng::new(7))
    }

    /// Every planned entry is a valid roster change by the root, one tick after the last.
    fn assert_signed_by_root_in_order(entries: &[Entry], name: &str) {
        let root = SecretKey::from_seed(ROOT_SEED).public();
        for (n, entry) in entries.iter().enumerate() {
            assert_eq!(entry.at, Hlc(FIRST_AT.0 + n as u64));
            assert_eq!(
                (entry.actor.as_str(), entry.target.as_str()),
                ("root", name)
            );
            assert_eq!(entry.seal.map(|seal| seal.signer), Some(root));
            assert_eq!(verify(entry), Ok(()));
            assert_eq!(entry.validate(), Ok(()));
        }
        let ids: BTreeSet<_> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), entries.len(), "distinct ids");
    }

    /// One revocation part, as the tests look at it.
    struct Part {
        key: PublicKey,
        batch: [u8; 8],
        part: u16,
        parts: u16,
        keep: Vec<Digest>,
    }

    /// The revocation parts among `entries`.
    fn revocations(entries: &[Entry]) -> Vec<Part> {
        entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::OfficerRevoke {
                    public_key,
                    batch,
                    part,
                    parts,
                    keep,
                } => Some(Part {
                    key: *public_key,
                    batch: *batch,
                    part: *part,
                    parts: *parts,
                    keep: keep.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn add_of_a_new_officer_is_one_signed_entry() {
        let officer = key(1).public();
        let entries = plan(
            &View::default(),
            "Alice",
            OfficerChange::Add {
                public_key: officer,
            },
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].kind,
            EntryKind::OfficerAdd {
                public_key: officer
            }
        );
        assert_eq!(entries[0].reason, "officer added");
        assert_signed_by_root_in_order(&entries, "Alice");
    }

    #[test]
    fn add_of_a_replacement_key_revokes_the_earlier_one_keeping_its_entries() {
        let (old, new) = (key(1), key(2));
        let view = View::default()
            .with_officer("Alice", old.public())
            .with_points(&old, 30)
            .with_points(&key(3), 5);
        let entries = plan(
            &view,
            "alice",
            OfficerChange::Add {
                public_key: new.public(),
            },
        )
        .unwrap();
        assert_signed_by_root_in_order(&entries, "alice");
        let parts = revocations(&entries);
        assert_eq!(parts.len(), 2, "30 kept entries need two parts of 24");
        let kept: Vec<Digest> = parts.iter().flat_map(|p| p.keep.clone()).collect();
        assert_eq!(kept, view.digests_signed_by(old.public()));
        assert!(parts
            .iter()
            .all(|p| p.key == old.public() && p.batch == parts[0].batch && p.parts == 2));
        assert_eq!(
            entries[0].reason,
            "key replaced, key revoked (part 1/2: 24 of 30 entries kept)"
        );
        assert_eq!(
            entries[2].kind,
            EntryKind::OfficerAdd {
                public_key: new.public()
            },
            "the new key comes after the revocation"
        );
    }

    #[test]
    fn remove_keeps_the_counted_entries_in_parts_of_24() {
        let officer = key(1);
        let view = View::default()
            .with_officer("Alice", officer.public())
            .with_points(&officer, 2 * MAX_KEEP + 2);
        let entries = plan(&view, "Alice", OfficerChange::Remove { revoke_all: false }).unwrap();
        assert_signed_by_root_in_order(&entries, "Alice");
        let parts = revocations(&entries);
        let sizes: Vec<(u16, u16, usize)> = parts
            .iter()
            .map(|p| (p.part, p.parts, p.keep.len()))
            .collect();
        assert_eq!(sizes, [(0, 3, 24), (1, 3, 24), (2, 3, 2)]);
        let kept: Vec<Digest> = parts.iter().flat_map(|p| p.keep.clone()).collect();
        assert_eq!(kept, view.digests_signed_by(officer.public()));
        assert_eq!(
            entries[2].reason,
            "officer removed, key revoked (part 3/3: 2 of 50 entries kept)"
        );
    }

    #[test]
    fn remove_with_revoke_all_keeps_nothing_and_revokes_every_key_of_the_name() {
        let (first, second) = (key(1), key(2));
        let mut view = View::default()
            .with_officer("Alice", first.public())
            .with_officer("ALICE", second.public())
            .with_points(&first, 3);
        // A key already revoked needs no second revocation.
        let gone = key(4).public();
        view = view.with_officer("alice", gone);
        view.revoked.insert(gone);
        let entries = plan(&view, "Alice", OfficerChange::Remove { revoke_all: true }).unwrap();
        let parts = revocations(&entries);
        let mut expected = vec![first.public(), second.public()];
        expected.sort();
        assert_eq!(parts.iter().map(|p| p.key).collect::<Vec<_>>(), expected);
        assert!(parts.iter().all(|p| p.parts == 1 && p.keep.is_empty()));
        assert_ne!(
            parts[0].batch, parts[1].batch,
            "one batch id per revocation"
        );
    }

    #[test]
    fn refusals_append_nothing() {
        let officer = key(1).public();
        let root = SecretKey::from_seed(ROOT_SEED).public();
        let add = |public_key| OfficerChange::Add { public_key };
        assert_eq!(
            plan(&View::default(), "Alice", add(root)),
            Err(PlanRefusal::RootKeyAsOfficer { key: root })
        );
        let current = View::default().with_officer("Alice", officer);
        assert_eq!(
            plan(&current, "alice", add(officer)),
            Err(PlanRefusal::AlreadyOfficer {
                officer: "Alice".into()
            })
        );
        let mut revoked = View::default();
        revoked.revoked.insert(officer);
        assert_eq!(
            plan(&revoked, "Alice", add(officer)),
            Err(PlanRefusal::RevokedKey { key: officer })
        );
        assert_eq!(
            plan(&current, "Bob", OfficerChange::Remove { revoke_all: false }),
            Err(PlanRefusal::NotAnOfficer { name: "Bob".into() })
        );
        assert_eq!(
            plan(&View::default(), "", add(officer)),
            Err(PlanRefusal::InvalidName(EntryError::EmptyName {
                field: "target"
            }))
        );
    }

    #[test]
    fn a_keep_list_past_the_last_part_is_refused() {
        let most = MAX_KEEP * usize::from(MAX_REVOKE_PARTS);
        let kept = vec![Digest([0; 16]); most + 1];
        assert_eq!(keep_parts(&kept[..most]).map(|p| p.len()), Some(65_535));
        assert_eq!(keep_parts(&kept), None);
        assert_eq!(keep_parts(&[]), Some(vec![&[][..]]), "one empty part");
    }
}
