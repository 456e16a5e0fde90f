//! The link from a reverting entry to the entry it reverts.
//!
//! A revert is an ordinary point entry (so sync, signatures, the roster and every older peer
//! handle it unchanged) whose reason starts with `revert <digest>`, the 32 hex digits of the
//! reverted entry's digest, optionally followed by `: ` and the officer's words. The link
//! holds only when the content agrees with it: the same player and exactly the opposite
//! delta of a point entry. So a reason that merely *mentions* an entry links nothing, and
//! the link cannot be faked without the entry really undoing the other.

use super::history::HistoryRow;
use crate::proto::digest::Digest;
use crate::proto::entry::{Entry, EntryKind};
use std::collections::HashMap;

/// What a revert's reason starts with.
pub const REVERT_PREFIX: &str = "revert ";
/// Bytes the link takes at the start of a reason: the prefix, 32 hex digits and `: `.
pub const REVERT_LINK_BYTES: usize = REVERT_PREFIX.len() + 32 + 2;

/// The reason of an entry reverting `of`, with the officer's `words` (may be empty).
pub fn revert_reason(of: Digest, words: &str) -> String {
    if words.is_empty() {
        format!("{REVERT_PREFIX}{}", of.to_hex())
    } else {
        format!("{REVERT_PREFIX}{}: {words}", of.to_hex())
    }
}

/// The digest a reason names as reverted, if it is a revert's reason.
pub fn reverted_digest(reason: &str) -> Option<Digest> {
    let rest = reason.strip_prefix(REVERT_PREFIX)?;
    let hex = rest.get(..32)?;
    let tail = &rest[32..];
    if !(tail.is_empty() || tail.starts_with(": ")) {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        let pair = hex.get(i * 2..i * 2 + 2)?;
        if !pair
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(Digest(bytes))
}

/// Whether `entry` reverts `original`: its reason links to it and its content undoes it.
pub fn is_revert_of(entry: &Entry, original: &Entry) -> bool {
    entry.kind == EntryKind::Points
        && original.kind == EntryKind::Points
        && entry.target == original.target
        && entry.delta == original.delta.wrapping_neg()
        && reverted_digest(&entry.reason) == Some(original.digest())
}

/// Fills `reverts` and `reverted_by` of rows (in replay order) that a revert links, both ways.
/// Only a revert that counts links: one that counts for nothing undid nothing. Digests are
/// hashed only for the few rows a revert could point at (same player, opposite delta), so a
/// history without reverts costs nothing extra.
pub(super) fn link_reverts(rows: &mut [HistoryRow]) {
    let reverts: Vec<(usize, Digest)> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| row.rejected.is_none())
        .filter_map(|(i, row)| reverted_digest(&row.entry.reason).map(|d| (i, d)))
        .collect();
    if reverts.is_empty() {
        return;
    }
    let mut candidates: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
    for (j, row) in rows.iter().enumerate() {
        if row.entry.kind == EntryKind::Points {
            candidates
                .entry((row.entry.target.as_str(), row.entry.delta))
                .or_default()
                .push(j);
        }
    }
    let mut links = Vec::new();
    for (i, target) in reverts {
        let revert = &rows[i].entry;
        let key = (revert.target.as_str(), revert.delta.wrapping_neg());
        let original = candidates.get(&key).and_then(|list| {
            list.iter()
                .copied()
                .find(|&j| j != i && rows[j].entry.digest() == target)
        });
        if let Some(j) = original.filter(|&j| is_revert_of(revert, &rows[j].entry)) {
            links.push((i, j, target, revert.digest()));
        }
    }
    for (i, j, target, revert) in links {
        rows[i].reverts = Some(target.to_hex());
        if rows[j].reverted_by.is_none() {
            rows[j].reverted_by = Some(revert.to_hex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::test_support::entry;
    use crate::core::ledger::Ledger;

    #[test]
    fn reasons_round_trip_and_only_exact_links_parse() {
        let d = Digest([0xab; 16]);
        assert_eq!(reverted_digest(&revert_reason(d, "")), Some(d));
        assert_eq!(reverted_digest(&revert_reason(d, "wrong player")), Some(d));
        assert_eq!(revert_reason(d, "x").len(), REVERT_LINK_BYTES + 1);
        assert_eq!(reverted_digest("revert abab"), None);
        assert_eq!(reverted_digest(&format!("revert {}x", d.to_hex())), None);
        assert_eq!(
            reverted_digest(&format!("revert {}", "AB".repeat(16))),
            None
        );
        assert_eq!(reverted_digest("boss kill"), None);
    }

    #[test]
    fn history_links_a_revert_both_ways_only_when_its_content_undoes_the_entry() {
        let original = entry(1, 1, "Bob", 30);
        let mut revert = entry(2, 2, "Bob", -30);
        revert.reason = revert_reason(original.digest(), "typo");
        // Mentions the original but does not undo it: no link.
        let mut fake = entry(3, 3, "Bob", -5);
        fake.reason = revert_reason(original.digest(), "");
        let (ledger, _) = Ledger::from_entries(vec![original.clone(), revert.clone(), fake]);
        let rows = ledger.history(Some("Bob"));
        assert_eq!(
            rows[0].reverted_by.as_deref(),
            Some(revert.digest().to_hex().as_str())
        );
        assert_eq!(
            rows[1].reverts.as_deref(),
            Some(original.digest().to_hex().as_str())
        );
        assert_eq!(rows[2].reverts, None);
        assert_eq!(ledger.total("Bob"), -5);
    }
}
