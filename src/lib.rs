//! Loot Sync: a peer-to-peer loot-point ledger.
//!
//! The library is laid out in layers, bottom up; a layer uses only the layers below it
//! (`docs/architecture.md` draws them and the data path):
//! - [`proto`]: pure types and functions: the entry, its clock and digest, the datagram codec,
//!   datagram sealing and entry signatures.
//! - [`core`]: the sans-IO state machines: the sync protocol, the ledger (index, replay,
//!   history) and the officer roster rules. No sockets, files, clocks or entropy of its own.
//! - [`store`]: what a peer keeps on disk: the append-only log (format, scanner, writer,
//!   reader, lock, repair) and the secret key files.
//! - [`config`]: the TOML configuration, one file per section.
//! - [`node`]: a peer's ledger opened from disk and the requests applied to it, shared by the
//!   daemon and the offline commands.
//! - [`control`]: the typed control protocol between the CLI and a running daemon.
//! - [`http`]: the read-only web page and Prometheus metrics, asking the core as the CLI does.
//! - [`daemon`]: the tokio driver: sockets, timers, the core's thread, systemd notification.
//!
//! The `lootsync` command line is the binary target (`src/main.rs` and `src/cli/`).
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod http;
pub mod node;
pub mod proto;
pub mod store;
pub mod testing;
