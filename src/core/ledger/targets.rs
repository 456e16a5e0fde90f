//! Target names as small numbers: the index keeps each entry's target as an id into this
//! table, so one player's history can be found without reading every entry body back.

use std::collections::HashMap;
use std::sync::Arc;

/// The id of an entry whose target has no id (the table is full): such entries are read
/// back and checked by name, so nothing is missed, only slower.
pub(super) const NO_TARGET: u32 = u32::MAX;

/// Every target name seen, numbered in the order first seen.
#[derive(Clone, Debug, Default)]
pub(super) struct Targets {
    names: Vec<Arc<str>>,
    /// The standard SipHash with OS-random keys: names are chosen by other peers, and
    /// unlike digests they can be picked freely to collide under a weaker hash.
    ids: HashMap<Arc<str>, u32>,
}

impl Targets {
    /// A table holding `names` under ids 0, 1, ... (a repeated name keeps its first id).
    pub(super) fn from_names(names: impl IntoIterator<Item = String>) -> Targets {
        let mut targets = Targets::default();
        for name in names {
            let name: Arc<str> = name.into();
            // A repeated name (only in a damaged table) still takes a slot, so later ids
            // keep their meaning.
            let id = u32::try_from(targets.names.len()).unwrap_or(NO_TARGET);
            targets.ids.entry(name.clone()).or_insert(id);
            targets.names.push(name);
        }
        targets
    }

    /// The id of `name`, given a new one if it has none yet.
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let Ok(id) = u32::try_from(self.names.len()) else {
            return NO_TARGET;
        };
        if id == NO_TARGET {
            return NO_TARGET;
        }
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The id of `name`, if it has one.
    pub(super) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Every name, in id order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(|name| &**name)
    }

    /// How many names there are.
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_ids() {
        let mut targets = Targets::default();
        assert_eq!(targets.intern("Ann"), 0);
        assert_eq!(targets.intern("Bo"), 1);
        assert_eq!(targets.intern("Ann"), 0);
        assert_eq!(targets.id("Bo"), Some(1));
        assert_eq!(targets.id("Cy"), None);
        let copy = Targets::from_names(targets.names().map(str::to_string));
        assert_eq!(copy.id("Bo"), Some(1));
        assert_eq!(copy.len(), 2);
    }
}
