//! Loot Sync: a peer-to-peer loot-point ledger.
//!
//! Layout, one module per concept:
//! - [`entry`]: the immutable log entry, its (at, id) key and the hybrid logical clock.
//! - [`ledger`]: replay into totals and history; set fingerprints for sync.
//! - [`store`]: the append-only, checksummed log file and the state-directory lock.
//! - [`wire`]: the datagram codec (version byte + postcard).
//! - [`sync`]: the sans-IO protocol state machine (`(now, input) -> actions`).
//! - [`rng`]: the seeded RNG the sync core draws from.
//! - [`seal`]: the group key: sealing and opening datagrams (XChaCha20-Poly1305).
//! - [`net`]: the multicast group and whisper sockets (socket2 + tokio).
//! - [`control`]: the control-socket protocol (JSON lines) and its client.
//! - [`ops`]: ledger operations shared by the daemon and the offline CLI.
//! - [`config`]: the TOML configuration.
//! - [`daemon`]: the tokio driver wiring it all together.
//! - [`cli`]: the `lootsync` command line.
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod entry;
pub mod ledger;
pub mod net;
pub mod ops;
pub mod rng;
pub mod seal;
pub mod store;
pub mod sync;
pub mod wire;
