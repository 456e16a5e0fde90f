//! Why a daemon could not start.

use super::net::NetError;
use crate::store::keyfile::KeyFileError;
use crate::store::keys::GroupKeyError;
use crate::store::StoreError;
use std::path::PathBuf;
use thiserror::Error;

/// The daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration is invalid (the daemon checks it again: a `Config` built in code
    /// has not been through `Config::load`).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The log could not be opened (locked, damaged, unreadable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sockets could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The officer key file is missing, unreadable, malformed or readable by others.
    #[error("security.officer_key_file")]
    OfficerKey(#[from] KeyFileError),
    /// A group key file is missing, malformed or readable by others, or the OS gave no
    /// entropy for the nonce prefix.
    #[error(transparent)]
    Key(#[from] GroupKeyError),
    /// The control socket could not be created.
    #[error("cannot create control socket {path}")]
    Control {
        /// Socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: crate::control::SocketError,
    },
    /// The runtime shut down while the log was being opened.
    #[error("start-up interrupted")]
    Interrupted(#[source] tokio::task::JoinError),
    /// The core thread could not be started.
    #[error("cannot start the daemon's core thread")]
    CoreThread(#[source] std::io::Error),
}

/// Why the daemon refused a request it serves itself (the ledger's refusals are
/// [`crate::node::ApplyError`]).
#[derive(Debug, Error)]
pub(super) enum RequestError {
    /// No [`super::LogControl`] was installed.
    #[error("this daemon's logging cannot be switched at run time")]
    LoggingFixed,
    /// The installed [`super::LogControl`] failed.
    #[error("cannot switch debug logging: {0}")]
    LoggingSwitch(super::options::LogControlError),
    /// The thread that builds a reply (a history, a roster view) could not be started.
    #[error("{what} failed: cannot start a thread: {error}")]
    Thread {
        /// The request.
        what: &'static str,
        /// Why.
        error: std::io::Error,
    },
}
