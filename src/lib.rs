//! Loot Sync: a peer-to-peer loot-point ledger.
//!
//! Layout, one module per concept:
//! - [`entry`]: the immutable log entry, its content digest, its (at, digest) key and the
//!   hybrid logical clock.
//! - [`ledger`]: compact sorted index of the log (key, offset), totals, fingerprints, roster.
//! - [`officer`]: officer and root keys, entry signatures, the roster judge.
//! - [`keyfile`]: the kind-tagged format of the three secret key files.
//! - [`store`]: the append-only, checksummed log file, its reader and the state-directory lock.
//! - [`verify`]: full log check (`lootsync verify`) and repair (`lootsync repair`).
//! - [`wire`]: the datagram codec (version byte + postcard).
//! - [`sync`]: the sans-IO protocol state machine (`(now, input) -> actions`).
//! - [`progress`]: terminal progress bars for long log scans.
//! - [`rng`]: the seeded RNG the sync core draws from.
//! - [`seal`]: the group key: sealing and opening datagrams (XChaCha20-Poly1305).
//! - [`net`]: the multicast group and whisper sockets (socket2 + tokio).
//! - [`notify`]: systemd readiness notification (`READY=1`, `STOPPING=1`).
//! - [`control`]: the control-socket protocol (JSON lines) and its client.
//! - [`ops`]: ledger operations shared by the daemon and the offline CLI.
//! - [`config`]: the TOML configuration.
//! - [`daemon`]: the tokio driver wiring it all together.
//! - [`export`]: standings and audit trail as CSV or JSON.
//! - [`init`]: the commented starter config `lootsync init` writes.
//! - [`demo`]: three in-process peers playing the seed's scenarios.
//! - [`cli_docs`]: shell completions and man pages generated from the CLI definition.
//! - [`cli`]: the `lootsync` command line.
pub mod cli;
pub mod cli_docs;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod entry;
pub mod export;
pub mod init;
pub mod keyfile;
pub mod ledger;
pub mod net;
pub mod notify;
pub mod officer;
pub mod ops;
pub mod progress;
pub mod rng;
pub mod seal;
pub mod store;
pub mod sync;
pub mod verify;
pub mod wire;
