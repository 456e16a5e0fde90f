//! Loot Sync: a peer-to-peer loot-point ledger.
pub mod config;
pub mod entry;
pub mod ledger;
pub mod rng;
pub mod store;
pub mod sync;
pub mod wire;
