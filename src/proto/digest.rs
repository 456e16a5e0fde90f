//! An entry's identity ([`Digest`]) and its place in the one order every peer replays the
//! log in ([`Key`]: timestamp, then digest).

use crate::proto::hlc::Hlc;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An entry's identity: the first 128 bits of a SHA-256 over its whole encoding (signature
/// included). Two different bodies can never share one, even if they carry the same `id`
/// field, so no peer can suppress another's entry by racing a different body under its id.
/// It orders entries that share a timestamp and is what sync asks for. Kept as big-endian
/// bytes: 16 bytes on the wire, byte alignment in the index, and byte order is numeric order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Digest(pub [u8; 16]);

/// The hasher of maps keyed by digests ([`DigestMap`], [`DigestSet`]): foldhash, one
/// folded multiplication per word, under a 64-bit seed drawn for each map from the keys of
/// the standard library's `RandomState`, which come from the operating system.
///
/// Not the identity of the digest's first bytes, although digests are uniform: a peer
/// chooses its entries, and grinding SHA-256 until 17 leading bits agree takes about 10^5
/// hashes per entry, cheap enough to pile entries into one probe sequence of a table whose
/// buckets those bits pick. The seed keeps the bucket out of the sender's reach, for about
/// the cost of the identity (a few nanoseconds, against some 20 for the standard SipHash).
/// foldhash's own `RandomState` is not used: it seeds itself from addresses and the wall
/// clock, which is weaker, and a clock read has no place in the sans-IO core.
#[derive(Clone, Debug)]
pub struct DigestState(foldhash::fast::FixedState);

impl Default for DigestState {
    fn default() -> DigestState {
        // Hashing a constant under fresh OS-seeded SipHash keys gives an unpredictable seed.
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        DigestState(foldhash::fast::FixedState::with_seed(seed))
    }
}

impl std::hash::BuildHasher for DigestState {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// A hash map keyed by digest (see [`DigestState`]).
pub type DigestMap<V> = std::collections::HashMap<Digest, V, DigestState>;

/// A hash set of digests (see [`DigestState`]).
pub type DigestSet = std::collections::HashSet<Digest, DigestState>;

impl std::hash::Hash for Digest {
    /// One word instead of a length and 16 bytes: the digest is already uniform, and the
    /// maps keyed by it are keyed ([`DigestState`]), so remote peers still cannot aim
    /// entries at one bucket. Equal digests write equal words, so this agrees with `Eq`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(word));
    }
}

impl Ord for Digest {
    /// Numeric order of the big-endian bytes (the same as their byte order), compared as one
    /// integer: the digest index binary-searches on this for every entry merged.
    fn cmp(&self, other: &Digest) -> std::cmp::Ordering {
        self.as_u128().cmp(&other.as_u128())
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Digest) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Digest {
    /// All 32 hex digits: the entry's unique name in exports (two entries may share an `id`
    /// field, never a digest).
    pub fn to_hex(self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The digest as a number, for fingerprint sums.
    pub fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for Digest {
    /// The first 8 hex digits: enough to tell entries apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The total order of the log: by HLC, ties broken by content digest. Every peer sorts by
/// this key, so history views and sync ranges agree everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// When the entry was made (hybrid logical clock).
    pub at: Hlc,
    /// The entry's content digest (its identity).
    pub digest: Digest,
}

impl Key {
    /// The smallest key: the inclusive lower bound of the whole key space.
    pub const MIN: Key = Key {
        at: Hlc(0),
        digest: Digest([0; 16]),
    };
    /// The largest key: the exclusive upper bound of the whole key space (no entry has it,
    /// since [`crate::proto::hlc::MAX_AT`] is below it).
    pub const MAX: Key = Key {
        at: Hlc(u64::MAX),
        digest: Digest([0xff; 16]),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Each map gets a seed of its own: a sender who learns where a digest lands in one map
    /// (or in one run) learns nothing about another.
    #[test]
    fn digest_maps_are_seeded_apart() {
        let digest = Digest([7; 16]);
        let hashes: std::collections::HashSet<u64> = (0..8)
            .map(|_| DigestState::default().hash_one(digest))
            .collect();
        assert_eq!(hashes.len(), 8, "eight maps, eight seeds");
        let state = DigestState::default();
        assert_eq!(
            state.hash_one(digest),
            state.hash_one(digest),
            "stable per map"
        );
    }
}
