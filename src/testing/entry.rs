//! [`EntryBuilder`]: entries for tests, with every field defaulted but the ones a test cares
//! about.

use crate::proto::entry::{new_entry_id, Entry, EntryId, EntryKind};
use crate::proto::hlc::Hlc;
use crate::proto::signature::SecretKey;

/// Builds an [`Entry`] field by field. Starts as one point for `player` by `officer`,
/// stamped at the time given to [`EntryBuilder::at_ms`], with an id made from that time and
/// ten zero bytes (set [`EntryBuilder::id_random`] to tell entries of the same millisecond
/// apart), reason empty, unsigned.
///
/// ```
/// use loot_sync::testing::EntryBuilder;
/// let entry = EntryBuilder::at_ms(1_700_000_000_000).target("Ann").delta(5).build();
/// assert_eq!((entry.target.as_str(), entry.delta), ("Ann", 5));
/// ```
#[derive(Clone, Debug)]
pub struct EntryBuilder {
    id_ms: u64,
    id_random: [u8; 10],
    id: Option<EntryId>,
    at: Hlc,
    actor: String,
    target: String,
    delta: i64,
    new_total: i64,
    reason: String,
    kind: EntryKind,
}

impl EntryBuilder {
    /// An entry stamped `unix_ms` (counter 0), its id made from the same time.
    pub fn at_ms(unix_ms: u64) -> EntryBuilder {
        EntryBuilder {
            id_ms: unix_ms,
            id_random: [0; 10],
            id: None,
            at: Hlc::new(unix_ms, 0),
            actor: "officer".into(),
            target: "player".into(),
            delta: 1,
            new_total: 0,
            reason: String::new(),
            kind: EntryKind::Points,
        }
    }

    /// A roster change about officer `name`, stamped `unix_ms`, as the CLI makes one (delta
    /// 0, actor "root"); sign it with the root key.
    pub fn roster_change(unix_ms: u64, name: &str, kind: EntryKind) -> EntryBuilder {
        EntryBuilder::at_ms(unix_ms)
            .actor("root")
            .target(name)
            .delta(0)
            .kind(kind)
    }

    /// The random part of the id (the time part stays the one given to `at_ms`).
    pub fn id_random(mut self, bytes: [u8; 10]) -> EntryBuilder {
        self.id_random = bytes;
        self
    }

    /// This exact id, whatever the stamp (a second body under an existing entry's id).
    pub fn id(mut self, id: EntryId) -> EntryBuilder {
        self.id = Some(id);
        self
    }

    /// Another stamp, keeping the id's time (an entry whose clock disagrees with its id).
    pub fn stamped(mut self, at: Hlc) -> EntryBuilder {
        self.at = at;
        self
    }

    /// Who made the change.
    pub fn actor(mut self, actor: impl Into<String>) -> EntryBuilder {
        self.actor = actor.into();
        self
    }

    /// The player (or, for a roster change, the officer) the entry is about.
    pub fn target(mut self, target: impl Into<String>) -> EntryBuilder {
        self.target = target.into();
        self
    }

    /// Points added (negative: removed).
    pub fn delta(mut self, delta: i64) -> EntryBuilder {
        self.delta = delta;
        self
    }

    /// The total the author saw (audit trail only).
    pub fn new_total(mut self, new_total: i64) -> EntryBuilder {
        self.new_total = new_total;
        self
    }

    /// Why the change was made.
    pub fn reason(mut self, reason: impl Into<String>) -> EntryBuilder {
        self.reason = reason.into();
        self
    }

    /// What the entry does.
    pub fn kind(mut self, kind: EntryKind) -> EntryBuilder {
        self.kind = kind;
        self
    }

    /// The unsigned entry.
    pub fn build(self) -> Entry {
        Entry {
            id: self
                .id
                .unwrap_or_else(|| new_entry_id(self.id_ms, self.id_random)),
            at: self.at,
            actor: self.actor,
            target: self.target,
            delta: self.delta,
            new_total: self.new_total,
            reason: self.reason,
            kind: self.kind,
            seal: None,
        }
    }

    /// The entry signed with `key`.
    pub fn signed(self, key: &SecretKey) -> Entry {
        let mut entry = self.build();
        key.sign(&mut entry);
        entry
    }
}
