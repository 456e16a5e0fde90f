//! The roster as `lootsync officer list` shows it: every officer key ever added by a roster
//! change that counts, with when, whether it is still in force, and how many of its entries
//! count, as this peer judges its log.

use crate::core::ledger::{HistoryRow, Ledger};
use crate::proto::entry::EntryKind;
use crate::proto::keys::PublicKey;
use serde::Serialize;
use std::collections::HashMap;

/// Where an officer key stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OfficerState {
    /// On the roster: its entries count.
    Active,
    /// Revoked for good (removed, or replaced by a newer key): only the entries its
    /// revocation lists count.
    Revoked,
    /// Off the roster by an old-style removal or a later key for the name, not revoked.
    Removed,
}

/// One officer key on the roster's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OfficerListing {
    /// The officer's roster name.
    pub name: String,
    /// The officer's public key (64 hex digits).
    pub public_key: String,
    /// When the key was added: the wall-clock part of the roster entry's stamp (RFC 3339).
    pub added_at: String,
    /// The label of the roster change that added it (whoever ran `officer add`).
    pub added_by: String,
    /// The key that signed the roster change (the group's root key).
    pub signed_by: Option<String>,
    /// Where the key stands now.
    pub state: OfficerState,
    /// How many point entries signed by this key count on this peer.
    pub entries_counted: u64,
}

/// Every officer key added by a roster change that counts, in the order added, judged from
/// `rows` (the whole history of `ledger`).
pub fn officer_listing(ledger: &Ledger, rows: &[HistoryRow]) -> Vec<OfficerListing> {
    let mut counted: HashMap<PublicKey, u64> = HashMap::new();
    for row in rows {
        if row.rejected.is_none() && row.entry.kind == EntryKind::Points {
            if let Some(seal) = row.entry.seal {
                *counted.entry(seal.signer).or_default() += 1;
            }
        }
    }
    let officers = ledger.officers();
    let mut listing = Vec::new();
    for row in rows {
        let EntryKind::OfficerAdd { public_key } = &row.entry.kind else {
            continue;
        };
        if row.rejected.is_some() {
            continue;
        }
        let state = if ledger.is_revoked(public_key) {
            OfficerState::Revoked
        } else if officers.get(&row.entry.target) == Some(public_key) {
            OfficerState::Active
        } else {
            OfficerState::Removed
        };
        listing.push(OfficerListing {
            name: row.entry.target.clone(),
            public_key: public_key.to_string(),
            added_at: row.entry.at.wall_time(),
            added_by: row.entry.actor.clone(),
            signed_by: row.entry.seal.map(|seal| seal.signer.to_string()),
            state,
            entries_counted: counted.get(public_key).copied().unwrap_or(0),
        });
    }
    listing
}
