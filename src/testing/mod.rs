//! Test support shared by the unit tests, the simulators (`tests/sim.rs`, `tests/sim_hub.rs`), the benches and
//! the fuzz targets; the daemon never uses it.
//!
//! - `world`: [`World`], sans-IO peers on a simulated network in virtual time.
//! - `network`: how the world's network treats datagrams ([`Network`]) and what it counted.
//! - `entry`: [`EntryBuilder`], entries with defaults for every field a test ignores.
//! - `peer_config`: [`PeerConfigBuilder`], a sync [`PeerConfig`] for tests.
//! - `roster`: [`whole_history_view`], the officer planner's view judged from a whole
//!   history, as `officer add` once made it.
//! - `burst`: [`Burst`], officers adjusting among peers on one LAN, measured beside the
//!   floor (issue "quiet under load").
//!
//! The world models what the daemon meets on a LAN (loss, duplication, delay, partitions,
//! finite receive buffers, crashes) and beyond it (multicast domains, one-way multicast,
//! NAT that rewrites source ports and drops unsolicited inbound), and drives each peer the
//! way the daemon drives one.
//!
//! [`PeerConfig`]: crate::core::sync::PeerConfig

mod burst;
mod entry;
mod network;
mod peer_config;
mod roster;
mod sweep;
mod world;

pub use burst::{Burst, BurstCost};
pub use entry::EntryBuilder;
pub use network::{Nat, NetCounters, Network, ReceiveLimit};
pub use peer_config::PeerConfigBuilder;
pub use roster::whole_history_view;
pub use sweep::{env_u64, Sweep};
pub use world::{node_addr, Disk, NoDisk, World, BASE_UNIX_MS, WHISPER_BASE_PORT};
