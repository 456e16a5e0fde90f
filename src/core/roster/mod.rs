//! Which signed entries count: the officer roster and officer revocations.
//!
//! Which signed entries *count* is a pure function of the set of entries: replay them in
//! (at, digest) order; a roster change counts only if signed by the group's root key, and a
//! point entry only if its signer is an officer at that point of the order
//! ([`Roster::judge`]). Every peer holding the same set therefore computes the same totals,
//! whatever order the entries arrived in.
//!
//! - this file: the [`Roster`] and its judgement of each entry in replay order.
//! - [`listing`]: the roster as `officer list` shows it.
//! - [`plan`]: planning roster changes (add, remove, revocation parts) as signed entries.

pub mod listing;
pub mod plan;

use crate::proto::digest::Digest;
use crate::proto::entry::{Entry, EntryKind};
use crate::proto::keys::PublicKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Whether an entry counts, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The entry counts (a point entry adds its delta; a roster entry changes the roster).
    Counts,
    /// The entry is kept in the log (so every peer holds the same set) but counts for
    /// nothing; the text says why, for history.
    Rejected(&'static str),
}

impl Verdict {
    /// The reason, when rejected.
    pub fn rejection(self) -> Option<&'static str> {
        match self {
            Verdict::Counts => None,
            Verdict::Rejected(why) => Some(why),
        }
    }
}

/// Every key revoked by a complete, valid revocation ([`EntryKind::OfficerRevoke`], all its
/// parts present and signed by the root key), with the union of the entry digests they keep.
/// Unlike the roster it does not depend on the replay position: a revocation judges the key's
/// entries wherever they sort.
pub type Revocations = BTreeMap<PublicKey, BTreeSet<Digest>>;

/// Which revocation a part belongs to: the revoked key, the batch id and the part count.
type RevocationId = (PublicKey, [u8; 8], u16);

/// Collects revocation parts as they arrive, in any order, and knows which revocations are
/// complete. Parts are unioned: a repeated part index adds its digests, so the result never
/// depends on which copy came first.
#[derive(Clone, Debug, Default)]
pub struct RevocationTracker {
    /// Per (key, batch, part count): the part indices present and the digests they keep.
    groups: BTreeMap<RevocationId, (BTreeSet<u16>, BTreeSet<Digest>)>,
    complete: Revocations,
}

impl RevocationTracker {
    /// Every complete revocation among `changes` (roster entries, any order) signed by
    /// `root`.
    pub fn from_changes<'a>(
        root: Option<PublicKey>,
        changes: impl IntoIterator<Item = &'a Entry>,
    ) -> RevocationTracker {
        let mut tracker = RevocationTracker::default();
        for change in changes {
            tracker.add(root, change);
        }
        tracker
    }

    /// Notes `entry` if it is a revocation part signed by `root`; returns true when that
    /// changed the complete revocations (its revocation is, or already was, complete).
    pub fn add(&mut self, root: Option<PublicKey>, entry: &Entry) -> bool {
        let EntryKind::OfficerRevoke {
            public_key,
            batch,
            part,
            parts,
            keep,
        } = &entry.kind
        else {
            return false;
        };
        if !Roster::is_valid_roster_change(root, entry) {
            return false;
        }
        let (present, kept) = self
            .groups
            .entry((*public_key, *batch, *parts))
            .or_default();
        present.insert(*part);
        kept.extend(keep.iter().copied());
        if present.len() < usize::from(*parts) {
            return false;
        }
        let revoked = self.complete.entry(*public_key).or_default();
        let before = revoked.len();
        revoked.extend(kept.iter().copied());
        // Completing (even with nothing kept) revokes the key; a part repeated after that
        // matters only if it keeps more.
        present.len() == usize::from(*parts) && (before == 0 || revoked.len() > before)
    }

    /// The complete revocations: revoked keys and the digests they keep.
    pub fn complete(&self) -> &Revocations {
        &self.complete
    }
}

/// The officer roster during a replay in (at, digest) order. With no root key the roster is
/// open: every point entry counts and roster entries change nothing.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    root: Option<PublicKey>,
    officers: BTreeMap<String, PublicKey>,
    revoked: Arc<Revocations>,
}

impl Roster {
    /// An empty roster for the group with this root key (`None`: open roster), and no key
    /// revoked.
    pub fn new(root: Option<PublicKey>) -> Roster {
        Roster::with_revocations(root, Arc::default())
    }

    /// An empty roster that judges entries of the `revoked` keys by their keep lists.
    pub fn with_revocations(root: Option<PublicKey>, revoked: Arc<Revocations>) -> Roster {
        Roster {
            root,
            officers: BTreeMap::new(),
            revoked,
        }
    }

    /// The roster name `key` goes by at this point of the replay (revoked or not), for the
    /// audit trail.
    pub fn name_of(&self, key: &PublicKey) -> Option<&str> {
        self.officers
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(name, _)| name.as_str())
    }

    /// Whether `key` is revoked.
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.contains_key(key)
    }

    /// The current officers, by name (a name whose key is revoked is no officer).
    pub fn officers(&self) -> BTreeMap<String, PublicKey> {
        self.officers
            .iter()
            .filter(|(_, key)| !self.is_revoked(key))
            .map(|(name, key)| (name.clone(), *key))
            .collect()
    }

    /// Whether a roster entry is signed by the root key. Depends on the entry alone, so a
    /// ledger can tell at insertion whether a late roster entry changes anything.
    pub fn is_valid_roster_change(root: Option<PublicKey>, entry: &Entry) -> bool {
        root.is_some() && entry.seal.map(|s| s.signer) == root
    }

    /// Judges a point entry at this point of the replay (a point entry changes no roster).
    pub fn judge_points(&self, entry: &Entry) -> Verdict {
        let Some(_) = self.root else {
            return Verdict::Counts;
        };
        let Some(key) = entry.seal.map(|s| s.signer) else {
            return Verdict::Rejected("rejected: unsigned");
        };
        if let Some(keep) = self.revoked.get(&key) {
            // The root key holder listed exactly the entries of this key that count.
            return match keep.contains(&entry.digest()) {
                true => Verdict::Counts,
                false => Verdict::Rejected("rejected: signed by a revoked key"),
            };
        }
        if !self.officers.values().any(|k| *k == key) {
            return Verdict::Rejected("rejected: signer not an officer");
        }
        // `actor` is a free label (often the machine's name), but one officer must not pass
        // an entry off as another officer's (not even with the name's case changed).
        if self.impersonates(&entry.actor, &key) {
            return Verdict::Rejected("rejected: signed as another officer");
        }
        Verdict::Counts
    }

    /// Whether `actor`, in any letter case, is the name of an officer (with a key not
    /// revoked) other than the holder of `key`.
    pub fn impersonates(&self, actor: &str, key: &PublicKey) -> bool {
        // Runs for every point entry of a replay: compare lower-cased characters in place
        // rather than allocating lower-case copies.
        self.officers.iter().any(|(name, other)| {
            other != key
                && !self.is_revoked(other)
                && (name == actor
                    || name
                        .chars()
                        .flat_map(char::to_lowercase)
                        .eq(actor.chars().flat_map(char::to_lowercase)))
        })
    }

    /// Judges the next entry of the replay and, if it is a valid roster change, applies it.
    pub fn judge(&mut self, entry: &Entry) -> Verdict {
        let Some(root) = self.root else {
            return match entry.kind {
                EntryKind::Points => Verdict::Counts,
                _ => Verdict::Rejected("roster change ignored: no root key configured"),
            };
        };
        let signer = entry.seal.map(|s| s.signer);
        match &entry.kind {
            EntryKind::Points => self.judge_points(entry),
            kind => {
                if signer != Some(root) {
                    return Verdict::Rejected("rejected: roster change not signed by the root key");
                }
                match kind {
                    EntryKind::OfficerAdd { public_key } => {
                        self.officers.insert(entry.target.clone(), *public_key);
                    }
                    EntryKind::OfficerRemove => {
                        self.officers.remove(&entry.target);
                    }
                    // Takes effect through `revoked`, wherever it sorts, once complete.
                    EntryKind::OfficerRevoke { .. } => {}
                    EntryKind::Points => unreachable!("handled above"),
                }
                Verdict::Counts
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::signature::SecretKey;
    use crate::testing::EntryBuilder;

    fn points(ms: u64) -> EntryBuilder {
        EntryBuilder::at_ms(ms)
            .id_random([3; 10])
            .actor("alice")
            .target("Bob")
            .delta(5)
            .new_total(5)
            .reason("raid")
    }

    /// Parts complete a revocation in any order; a repeated part index adds its digests
    /// (so the result never depends on which copy arrived first); a part not signed by the
    /// root counts for nothing.
    #[test]
    fn revocation_parts_complete_in_any_order_and_union_their_digests() {
        let root = SecretKey::from_seed([100; 32]);
        let officer = SecretKey::from_seed([1; 32]).public();
        let digest = |n: u8| Digest([n; 16]);
        let part = |part: u16, keep: Vec<Digest>, signer: &SecretKey| {
            points(2_000 + u64::from(part))
                .delta(0)
                .new_total(0)
                .kind(EntryKind::OfficerRevoke {
                    public_key: officer,
                    batch: [5; 8],
                    part,
                    parts: 3,
                    keep,
                })
                .signed(signer)
        };
        let parts = [
            part(2, vec![digest(3)], &root),
            part(0, vec![digest(1)], &root),
            part(0, vec![digest(9)], &root),
            part(1, vec![], &SecretKey::from_seed([7; 32])),
            part(1, vec![digest(2)], &root),
        ];
        let mut in_order = RevocationTracker::default();
        let completed: Vec<bool> = parts
            .iter()
            .map(|p| in_order.add(Some(root.public()), p))
            .collect();
        assert_eq!(completed, [false, false, false, false, true]);
        let kept: Vec<Digest> = in_order.complete()[&officer].iter().copied().collect();
        assert_eq!(kept, [digest(1), digest(2), digest(3), digest(9)]);
        let reversed = RevocationTracker::from_changes(Some(root.public()), parts.iter().rev());
        assert_eq!(reversed.complete(), in_order.complete());
        let missing_one = RevocationTracker::from_changes(Some(root.public()), parts[..4].iter());
        assert!(missing_one.complete().is_empty());
    }
}
