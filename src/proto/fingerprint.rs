//! Set fingerprints: what two peers compare to tell whether they hold the same entries,
//! over the whole set or one key range of it.

use serde::{Deserialize, Serialize};

/// A summary of a set of entries: how many there are and the sum of their 128-bit digests
/// (mod 2^128). Sums subtract and add, so fingerprints of adjacent ranges combine, and two
/// sets are equal exactly when their fingerprints are (up to a hash collision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Number of entries in the set.
    pub count: u64,
    /// Wrapping sum of the entries' digests.
    pub sum: u128,
}

impl Fingerprint {
    /// Adds one entry's digest.
    pub fn add(&mut self, digest: u128) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(digest);
    }

    /// A short hex form for logs and status output.
    pub fn short(&self) -> String {
        format!("{}:{:08x}", self.count, (self.sum >> 96) as u32)
    }
}
