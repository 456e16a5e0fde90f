//! Entries made here: a local adjust is stamped by our hybrid clock, signed with this
//! machine's officer key when the group has a root key, persisted by the driver, and only
//! then applied and multicast.

use super::fanout::Spread;
use super::{Now, Peer};
use crate::proto::entry::{new_entry_id, AdjustRequest, Entry, EntryError, EntryKind};

impl Peer {
    /// Makes a new local entry (stamped by the HLC, id from the seeded RNG) without applying
    /// it. The driver persists it durably, then calls [`Peer::commit_local`].
    pub fn prepare_adjust(
        &mut self,
        now: Now,
        request: &AdjustRequest,
    ) -> Result<Entry, EntryError> {
        let at = self.clock.tick(now.unix_ms);
        let mut entry = Entry {
            id: new_entry_id(at.unix_ms(), self.rng.bytes()),
            at,
            actor: request.actor.clone(),
            target: request.target.clone(),
            delta: request.delta,
            new_total: self
                .ledger
                .total(&request.target)
                .wrapping_add(request.delta),
            reason: request.reason.clone(),
            kind: EntryKind::Points,
            seal: None,
        };
        entry.validate()?;
        match &self.officer_key {
            // The new entry sorts after everything this peer has seen, so the roster at the
            // end of the log is the one that judges it (unless an older roster change is
            // still on its way, which is rare; then the entry is kept and judged again).
            Some(key) if self.ledger.root().is_some() => {
                let public = key.public();
                if self.ledger.is_revoked(&public) {
                    return Err(EntryError::RevokedOfficerKey(public.to_string()));
                }
                let officers = self.ledger.officers();
                if !officers.values().any(|k| *k == public) {
                    return Err(EntryError::NotAnOfficer(public.to_string()));
                }
                if self.ledger.impersonates(&entry.actor, &public) {
                    // It would count for nothing: one officer cannot sign as another.
                    return Err(EntryError::AnotherOfficersName(entry.actor));
                }
                key.sign(&mut entry);
            }
            Some(key) => key.sign(&mut entry),
            None if self.ledger.root().is_some() => return Err(EntryError::NoOfficerKey),
            None => {}
        }
        Ok(entry)
    }

    /// Applies a local entry that is now durable, and sends it to the group and the unicast
    /// peers at once.
    pub fn commit_local(&mut self, now: Now, entry: Entry) {
        self.commit_local_batch(now, vec![entry]);
    }

    /// Applies local entries made durable together (an award, a decay, an import), and
    /// sends them together: packed into as few datagrams as they fit.
    pub fn commit_local_batch(&mut self, now: Now, entries: Vec<Entry>) {
        let mut new = Vec::with_capacity(entries.len());
        for entry in entries {
            // A roster change made by the CLI carries its own stamp: later local entries
            // must sort after it.
            self.clock.observe(entry.at, now.unix_ms);
            if self.ledger.insert(entry.clone()) {
                new.push(entry);
            }
        }
        if new.is_empty() {
            return;
        }
        self.changed_ms = now.mono_ms;
        if self.sync_enabled {
            let spread = Spread {
                group: true,
                ..Spread::default()
            };
            self.spread_entries(now, &new, spread);
        }
    }
}
