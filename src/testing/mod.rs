//! Test support shared by the unit tests, the simulator (`tests/sim.rs`), the benches and
//! the fuzz targets; the daemon never uses it.
//!
//! - [`World`]: sans-IO peers on a simulated network in virtual time (loss, duplication,
//!   delay, partitions, finite receive buffers, crashes), driven the way the daemon drives
//!   one.
//! - [`EntryBuilder`]: entries with every field defaulted but the ones a test cares about.
//! - [`PeerConfigBuilder`]: a [`PeerConfig`](crate::core::sync::PeerConfig) for tests.

pub mod entry;
pub mod network;
pub mod peer_config;
pub mod world;

pub use entry::EntryBuilder;
pub use network::{NetCounters, Network, ReceiveLimit};
pub use peer_config::PeerConfigBuilder;
pub use world::{node_addr, Disk, NoDisk, World};
