//! Log entries: what one entry holds, its bounds and its content digest.
//!
//! An [`Entry`] is one immutable point adjustment (or officer roster change). Entries are
//! identified by their content [`Digest`] and ordered everywhere by [`Key`] = (HLC
//! timestamp, digest), so every peer replays the same log in the same order. Bounds are
//! enforced both when an entry is made ([`Entry::validate`]) and when one is decoded from
//! disk or the network, so one entry always fits in a datagram.

use crate::proto::digest::{Digest, Key};
use crate::proto::hlc::{Hlc, MAX_AT};
use crate::proto::keys::{PublicKey, Seal};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Longest player or actor name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest reason text, in bytes of UTF-8.
pub const MAX_REASON_BYTES: usize = 256;
/// Largest absolute point delta one entry may carry. Keeps totals far from i64 overflow.
pub const MAX_ABS_DELTA: i64 = 1_000_000_000;
/// Most entry digests one [`EntryKind::OfficerRevoke`] part may name, so the largest entry
/// still fits in a datagram; a revocation that keeps more is split into several parts.
pub const MAX_KEEP: usize = 24;
/// Most parts one revocation may have (up to 1,572,840 kept entries: no officer's real
/// history is that long, so padding one's history cannot make a removal impossible).
pub const MAX_REVOKE_PARTS: u16 = u16::MAX;

/// Unique id of an entry: a UUID v7 (48-bit millisecond time + 74 random bits), so ids made
/// on different machines never collide the way the original addon's per-client counters did.
pub type EntryId = Uuid;

/// One immutable point adjustment, as stored in the log and sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique id (UUID v7).
    pub id: EntryId,
    /// Hybrid logical clock stamp; with `id` it forms the replay order.
    pub at: Hlc,
    /// Who made the change (an officer's name).
    pub actor: String,
    /// The player whose points change.
    pub target: String,
    /// Points added (negative: removed).
    pub delta: i64,
    /// The target's total as the author saw it when making the entry. Kept for the audit
    /// trail only; totals are always recomputed by replaying deltas.
    pub new_total: i64,
    /// Why the change was made (free text, bounded).
    pub reason: String,
    /// What the entry does: a point adjustment, or a change to the officer roster (then
    /// `target` names the officer and `delta` is 0).
    pub kind: EntryKind,
    /// The author's signature, when signed (required for an entry to count once the group
    /// has a root key; see [`crate::core::roster`]).
    pub seal: Option<Seal>,
}

/// What an entry does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Adds `delta` points to `target`.
    #[default]
    Points,
    /// Makes `target` an officer whose entries are signed by `public_key` (replacing any
    /// earlier key of that officer). Counts only when signed by the group's root key.
    OfficerAdd {
        /// The officer's public key.
        public_key: PublicKey,
    },
    /// Removes the officer `target`: their entries after this one count for nothing. Kept
    /// for logs written before [`EntryKind::OfficerRevoke`]; `lootsync officer remove` no
    /// longer makes it, because the signer picks an entry's timestamp and a removed officer
    /// could sign new entries dated before the removal.
    OfficerRemove,
    /// One part of a revocation of `public_key` (officer `target`). Once every part of the
    /// revocation is present, the key is revoked for good: of the entries it signed, exactly
    /// those whose digests the parts list in `keep` count, wherever they sort, so a removed
    /// officer gains nothing by backdating. Until then the revocation has no effect, so an
    /// interrupted `officer remove` can simply be run again. Made by `lootsync officer
    /// remove` (and by `officer add` when it replaces a key), listing the key's entries that
    /// count on the root key holder's peer, [`MAX_KEEP`] per part.
    OfficerRevoke {
        /// The revoked officer key.
        public_key: PublicKey,
        /// Random id shared by the parts of one revocation.
        batch: [u8; 8],
        /// This part's index, from 0.
        part: u16,
        /// How many parts the revocation has.
        parts: u16,
        /// Digests of the key's entries that keep counting.
        keep: Vec<Digest>,
    },
}

/// Why an entry is not acceptable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EntryError {
    /// A name field is empty.
    #[error("{field} must not be empty")]
    EmptyName {
        /// Which field (`actor` or `target`).
        field: &'static str,
    },
    /// A text field is longer than its bound.
    #[error("{field} is {len} bytes; the limit is {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A name starts or ends with white space.
    #[error("{field} must not start or end with spaces")]
    Padded {
        /// Which field.
        field: &'static str,
    },
    /// A name contains control characters, which would garble logs and terminals.
    #[error("{field} contains control characters")]
    ControlChars {
        /// Which field.
        field: &'static str,
    },
    /// The delta is zero or too large.
    #[error(
        "delta {delta} is out of range: it must be a non-zero whole number from \
         -{MAX_ABS_DELTA} to {MAX_ABS_DELTA}"
    )]
    BadDelta {
        /// The rejected delta.
        delta: i64,
    },
    /// A roster change carries a delta or total.
    #[error("an officer roster change must not carry points")]
    RosterWithPoints,
    /// The group has a root key, so entries must be signed, and no officer key is set.
    #[error(
        "this machine has no officer key: the group has a root key, so only officers may \
         adjust (set security.officer_key_file to a key made by `lootsync keygen officer` \
         and added with `lootsync officer add`)"
    )]
    NoOfficerKey,
    /// This machine's officer key is not on the roster as far as this peer knows, so the
    /// entry would count for nothing.
    #[error(
        "this machine's officer key {0} is not on the officer roster (as far as this peer \
         has heard): ask the root key holder to run `lootsync officer add NAME {0}`"
    )]
    NotAnOfficer(String),
    /// This machine's officer key has been revoked (its officer removed or given a new key).
    #[error(
        "this machine's officer key {0} is revoked (its officer was removed or given a new \
         key): make a new key with `lootsync keygen officer` and ask the root key holder to \
         add it"
    )]
    RevokedOfficerKey(String),
    /// The actor is another officer's roster name, and an officer cannot sign as another.
    #[error(
        "{0:?} is another officer's name on the roster and this machine's officer key is not \
         theirs: adjust under your own name (--actor, or node.name in the config)"
    )]
    AnotherOfficersName(String),
    /// A revocation part lists more entries than one entry may carry, or its part numbers
    /// are out of range.
    #[error(
        "a revocation part may keep at most {MAX_KEEP} entries and be one of at most \
         {MAX_REVOKE_PARTS} parts"
    )]
    BadRevocation,
    /// The timestamp is the reserved maximum.
    #[error("timestamp {0} is out of range")]
    BadTimestamp(u64),
}

fn check_name(field: &'static str, value: &str) -> Result<(), EntryError> {
    // Every entry decoded from disk or the network is checked, so this is on the hot path
    // of a merge and a cold start: trim once, and look at the characters one by one only
    // when the name is not plain printable ASCII (which holds no control character).
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(EntryError::EmptyName { field });
    }
    // Trimming only removes characters, so the same length means nothing was removed.
    if trimmed.len() != value.len() {
        // " Alice" and "Alice" would otherwise be two players.
        return Err(EntryError::Padded { field });
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(EntryError::TooLong {
            field,
            len: value.len(),
            max: MAX_NAME_BYTES,
        });
    }
    let printable_ascii = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable_ascii && value.chars().any(char::is_control) {
        return Err(EntryError::ControlChars { field });
    }
    Ok(())
}

impl Entry {
    /// The entry's position in the replay order.
    pub fn key(&self) -> Key {
        Key {
            at: self.at,
            digest: self.digest(),
        }
    }

    /// Checks every bound. Called on entries made locally and on every entry decoded from
    /// disk or the network.
    pub fn validate(&self) -> Result<(), EntryError> {
        check_name("actor", &self.actor)?;
        check_name("target", &self.target)?;
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(EntryError::TooLong {
                field: "reason",
                len: self.reason.len(),
                max: MAX_REASON_BYTES,
            });
        }
        match self.kind {
            EntryKind::Points => {
                if self.delta == 0 || self.delta.unsigned_abs() > MAX_ABS_DELTA as u64 {
                    return Err(EntryError::BadDelta { delta: self.delta });
                }
            }
            // A roster change moves no points; a non-zero delta would be a forged hybrid.
            EntryKind::OfficerAdd { .. }
            | EntryKind::OfficerRemove
            | EntryKind::OfficerRevoke { .. } => {
                if self.delta != 0 || self.new_total != 0 {
                    return Err(EntryError::RosterWithPoints);
                }
                if let EntryKind::OfficerRevoke {
                    keep, part, parts, ..
                } = &self.kind
                {
                    // `parts` is a u16, so at most MAX_REVOKE_PARTS by its type.
                    if keep.len() > MAX_KEEP || part >= parts {
                        return Err(EntryError::BadRevocation);
                    }
                }
            }
        }
        if self.at.0 > MAX_AT {
            return Err(EntryError::BadTimestamp(self.at.0));
        }
        Ok(())
    }

    /// The entry's identity ([`Digest`]): SHA-256 over a domain prefix and the entry's
    /// encoding, cut to 128 bits. A cryptographic hash, because digests decide which entries
    /// are the same and sum into set fingerprints: a peer must not be able to craft a body
    /// that passes for another.
    pub fn digest(&self) -> Digest {
        // Encoded straight into the hash: no buffer to fill (or zero) per entry.
        let mut hasher = digest_hasher();
        postcard::serialize_with_flavor(self, HashInto::new(&mut hasher))
            .expect("entries always serialize");
        digest_of(hasher)
    }

    /// [`Entry::key`] of an entry just decoded from `encoding` (its postcard bytes, as a log
    /// record holds them), hashing those bytes instead of encoding the entry again. postcard
    /// also reads overlong varints, which would hash differently: bytes not as long as the
    /// entry's own encoding are such (every other part of an encoding has one form), and
    /// then the entry is encoded afresh, so the digest never depends on how it was written.
    pub fn key_from_encoding(&self, encoding: &[u8]) -> Key {
        let size = postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default());
        if size.ok() != Some(encoding.len()) {
            return self.key();
        }
        Key {
            at: self.at,
            digest: digest_of_encoding(encoding),
        }
    }

    /// Appends the entry's encoding (`postcard(Entry)`: what its digest hashes, a log
    /// record's payload) to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        postcard::serialize_with_flavor(self, AppendTo(out)).expect("entries always serialize");
    }
}

/// The digest of the entry whose own encoding (as [`Entry::encode_into`] writes it) is
/// `encoding`.
pub(crate) fn digest_of_encoding(encoding: &[u8]) -> Digest {
    use sha2::Digest as _;
    let mut hasher = digest_hasher();
    hasher.update(encoding);
    digest_of(hasher)
}

/// A hasher that has taken in the domain prefix.
fn digest_hasher() -> sha2::Sha256 {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(DIGEST_DOMAIN);
    hasher
}

/// The first 128 bits of the hash in `hasher`.
fn digest_of(hasher: sha2::Sha256) -> Digest {
    use sha2::Digest as _;
    let hash = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    Digest(first)
}

/// A postcard output that feeds a hasher, gathering the many small pieces (postcard
/// writes a varint a byte at a time) into a small buffer first: one hasher update per
/// byte costs more than encoding the whole entry.
struct HashInto<'a> {
    hasher: &'a mut sha2::Sha256,
    buf: [u8; 128],
    len: usize,
}

impl<'a> HashInto<'a> {
    fn new(hasher: &'a mut sha2::Sha256) -> HashInto<'a> {
        HashInto {
            hasher,
            buf: [0; 128],
            len: 0,
        }
    }

    fn flush(&mut self) {
        sha2::Digest::update(self.hasher, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl postcard::ser_flavors::Flavor for HashInto<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.len == self.buf.len() {
            self.flush();
        }
        self.buf[self.len] = byte;
        self.len += 1;
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.len + bytes.len() > self.buf.len() {
            self.flush();
        }
        if bytes.len() > self.buf.len() {
            sha2::Digest::update(self.hasher, bytes);
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<()> {
        self.flush();
        Ok(())
    }
}

/// A postcard output that appends to a borrowed buffer (postcard's own vector flavor owns
/// its buffer, and gives nothing back on an error).
pub(crate) struct AppendTo<'a>(pub(crate) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Prefix of every digest's hash input, so a digest can never equal a hash of anything else.
const DIGEST_DOMAIN: &[u8] = b"lootsync entry digest v1\0";

/// Everything needed to make a new entry except the clock and randomness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustRequest {
    /// Who makes the change.
    pub actor: String,
    /// The player whose points change.
    pub target: String,
    /// Points to add (negative to remove).
    pub delta: i64,
    /// Why.
    pub reason: String,
}

/// Builds a UUID v7 from a Unix millisecond time and 10 random bytes (supplied by the
/// caller, so the sans-IO core stays deterministic under a seeded RNG).
pub fn new_entry_id(unix_ms: u64, random: [u8; 10]) -> EntryId {
    uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        crate::testing::EntryBuilder::at_ms(1_700_000_000_000)
            .id_random([7; 10])
            .actor("alice")
            .target("Bob")
            .delta(10)
            .new_total(10)
            .reason("raid attendance")
            .build()
    }

    #[test]
    fn validate_enforces_bounds() {
        assert_eq!(sample().validate(), Ok(()));
        let mut e = sample();
        e.target = "x".repeat(65);
        assert!(matches!(
            e.validate(),
            Err(EntryError::TooLong {
                field: "target",
                ..
            })
        ));
        let mut e = sample();
        e.reason = "r".repeat(257);
        assert!(matches!(
            e.validate(),
            Err(EntryError::TooLong {
                field: "reason",
                ..
            })
        ));
        let mut e = sample();
        e.actor = " ".into();
        assert!(matches!(
            e.validate(),
            Err(EntryError::EmptyName { field: "actor" })
        ));
        let mut e = sample();
        e.delta = 0;
        assert!(matches!(e.validate(), Err(EntryError::BadDelta { .. })));
        let mut e = sample();
        e.delta = i64::MIN;
        assert!(matches!(e.validate(), Err(EntryError::BadDelta { .. })));
        let mut e = sample();
        e.at = Hlc(u64::MAX);
        assert!(matches!(e.validate(), Err(EntryError::BadTimestamp(_))));
        let mut e = sample();
        e.target = " Bob".into();
        assert!(matches!(
            e.validate(),
            Err(EntryError::Padded { field: "target" })
        ));
        let mut e = sample();
        e.target = "Bo\nb".into();
        assert!(matches!(e.validate(), Err(EntryError::ControlChars { .. })));
        // Outside ASCII too (C1 controls), next to accepted non-ASCII names; DEL is one.
        for (name, ok) in [
            ("Bö\u{85}b", false),
            ("Bo\u{7f}b", false),
            ("É\u{9f}", false),
            ("Ümit", true),
            ("Zoë O'Brien", true),
            ("\u{3000}Bo", false),
        ] {
            let mut e = sample();
            e.actor = name.into();
            assert_eq!(e.validate().is_ok(), ok, "{name:?}");
        }
        let mut e = sample();
        e.actor = "\u{3000}".into();
        assert!(matches!(e.validate(), Err(EntryError::EmptyName { .. })));
    }

    #[test]
    fn ids_are_v7_and_order_by_time() {
        let a = new_entry_id(1_000, [0xff; 10]);
        let b = new_entry_id(1_001, [0; 10]);
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn digest_order_is_byte_order() {
        let mut digests: Vec<Digest> = (0..200u64)
            .map(|i| {
                let mut e = sample();
                e.delta = i as i64 + 1;
                e.digest()
            })
            .collect();
        digests.push(Digest([0; 16]));
        digests.push(Digest([0xff; 16]));
        let mut by_bytes = digests.clone();
        by_bytes.sort_by_key(|d| d.0);
        digests.sort();
        assert_eq!(digests, by_bytes);
    }

    /// Hashing the bytes an entry was decoded from gives its digest; bytes that decode to
    /// the same entry through an overlong varint still give the same digest.
    #[test]
    fn key_from_the_encoding_is_the_key() {
        let e = sample();
        let canonical = postcard::to_stdvec(&e).unwrap();
        assert_eq!(e.key_from_encoding(&canonical), e.key());
        // The first varint (the id's length, 16) written in two bytes instead of one.
        assert_eq!(canonical[0], 16);
        let mut overlong = vec![16 | 0x80, 0];
        overlong.extend_from_slice(&canonical[1..]);
        let decoded: Entry = postcard::from_bytes(&overlong).unwrap();
        assert_eq!(decoded, e, "postcard reads the overlong form");
        assert_eq!(decoded.key_from_encoding(&overlong), e.key());
    }

    /// However the encoding reaches the hash (straight from the entry, or as bytes kept for
    /// the log), the digest is SHA-256 of the domain and the whole encoding: short and
    /// long entries (longer than the hashing flavor's buffer), roster changes, signed ones.
    #[test]
    fn the_digest_hashes_the_whole_encoding() {
        use sha2::Digest as _;
        let mut entries = vec![sample()];
        let mut long = sample();
        long.reason = "é".repeat(MAX_REASON_BYTES / 2);
        long.target = "t".repeat(MAX_NAME_BYTES);
        entries.push(long.clone());
        crate::proto::signature::SecretKey::from_seed([3; 32]).sign(&mut long);
        entries.push(long);
        let mut roster = sample();
        (roster.delta, roster.new_total) = (0, 0);
        roster.kind = EntryKind::OfficerRevoke {
            public_key: crate::proto::signature::SecretKey::from_seed([4; 32]).public(),
            batch: [9; 8],
            part: 0,
            parts: 1,
            keep: vec![Digest([5; 16]); MAX_KEEP],
        };
        entries.push(roster);
        for e in entries {
            let bytes = postcard::to_stdvec(&e).unwrap();
            let hash = sha2::Sha256::new()
                .chain_update(DIGEST_DOMAIN)
                .chain_update(&bytes)
                .finalize();
            assert_eq!(e.digest().0, hash[..16], "{} bytes", bytes.len());
            assert_eq!(digest_of_encoding(&bytes), e.digest());
            let mut out = vec![1, 2];
            e.encode_into(&mut out);
            assert_eq!(out[2..], bytes);
        }
    }

    #[test]
    fn digest_depends_on_content() {
        let a = sample();
        let mut b = sample();
        b.reason.push('!');
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), sample().digest());
    }

    #[test]
    fn max_sized_entry_fits_a_datagram() {
        let mut e = sample();
        e.actor = "a".repeat(MAX_NAME_BYTES);
        e.target = "t".repeat(MAX_NAME_BYTES);
        e.reason = "r".repeat(MAX_REASON_BYTES);
        e.delta = -MAX_ABS_DELTA;
        e.new_total = i64::MIN;
        e.at = Hlc(MAX_AT);
        crate::proto::signature::SecretKey::from_seed([1; 32]).sign(&mut e);
        // One max-sized signed entry plus the envelope stays well inside one datagram.
        assert!(postcard::to_stdvec(&e).unwrap().len() < 700);
        e.kind = EntryKind::OfficerAdd {
            public_key: crate::proto::signature::SecretKey::from_seed([2; 32]).public(),
        };
        assert!(postcard::to_stdvec(&e).unwrap().len() < 740);
    }
}
