//! The sans-IO core: state machines driven as `(now, input) -> actions`.
//!
//! Nothing here opens a file or socket, reads a clock or draws entropy: the driver (the
//! daemon, a layer above) or a test moves bytes and time in and out.
//! - [`sync`]: the sync protocol state machine, one file per concern.
//! - [`ledger`]: the compact sorted index of the log, totals, fingerprints and history.
//! - [`roster`]: which signed entries count: the officer roster and revocations.
//! - [`roster::plan`]: officer planning: the signed entries `officer add`/`remove` append.
//! - [`batch`]: planning an officer's multi-entry changes (award, decay, import, revert).
//! - [`rng`]: the seeded RNG the sync core draws from.
//! - [`histogram`]: fixed-bucket latency histograms (catch-up durations, fsync latency).

pub mod batch;
pub mod histogram;
pub mod ledger;
pub mod rng;
pub mod roster;
pub mod sync;
