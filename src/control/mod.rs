//! The control socket: how the CLI talks to a running daemon.
//!
//! A Unix domain socket in the state directory (mode 0600, or 0660 for the group named by
//! `control.group`), one JSON object per line each way. Requests are bounded in size and
//! parsed strictly; a bad request gets an error reply and never disturbs the daemon.
//!
//! * `protocol`: the request and reply types, shared by both ends ([`Request`], [`Reply`]).
//! * `client`: one request per connection, for the CLI and tests ([`call`]).
//! * [`server`]: framing, limits and hand-off to the daemon.
//! * [`export`]: the records `history --json` and `export` print (shared with the web page).
//! * `socket`: where the socket lives and who may open it ([`bind`], [`socket_path`]).

mod client;
pub mod export;
mod protocol;
pub mod server;
mod socket;

pub use client::{call, ControlError};
pub use export::terminal_safe;
pub use protocol::*;
pub use socket::{bind, group_id, socket_path, SocketError, SOCKET_NAME};
