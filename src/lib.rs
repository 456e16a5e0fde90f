//! Loot Sync: a peer-to-peer loot-point ledger.
pub mod entry;
