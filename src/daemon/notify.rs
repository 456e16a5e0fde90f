//! systemd's service notification protocol (`sd_notify`), for `Type=notify` units.
//!
//! systemd passes a Unix datagram socket in `$NOTIFY_SOCKET`: a file path, or an abstract
//! socket name written with a leading `@`. The daemon sends `READY=1` once its log is
//! replayed and its sockets are up, and `STOPPING=1` when it begins to shut down. The
//! protocol is one datagram of `KEY=value` lines, so std's `UnixDatagram` does it; a crate
//! (and libsystemd) would add nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use thiserror::Error;

/// Environment variable systemd sets for services with `Type=notify`.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A notification could not be delivered.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is set but not a usable address.
    #[error("${NOTIFY_SOCKET_ENV} {value:?} is not a socket path or @abstract name")]
    BadAddress {
        /// The variable's value.
        value: String,
    },
    /// Sending the datagram failed. The OS error is in the message and not a separate
    /// source: it is logged as one line, and a chain printer would repeat it.
    #[error("cannot notify systemd on {address}: {error}")]
    Send {
        /// The socket address.
        address: String,
        /// The OS error.
        error: io::Error,
    },
}

/// Sends `state` (e.g. `"READY=1"`) to systemd. Returns `Ok(false)` when not run under
/// systemd's notify protocol (`$NOTIFY_SOCKET` unset), so callers need not check.
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var_os(NOTIFY_SOCKET_ENV) {
        None => Ok(false),
        Some(value) => {
            let value = value.to_string_lossy().into_owned();
            notify_to(&value, state).map(|()| true)
        }
    }
}

/// Sends `state` to the notify socket `address` (a path, or `@name` for an abstract socket).
pub fn notify_to(address: &str, state: &str) -> Result<(), NotifyError> {
    let bad = || NotifyError::BadAddress {
        value: address.to_string(),
    };
    let send_err = |error| NotifyError::Send {
        address: address.to_string(),
        error,
    };
    let socket = UnixDatagram::unbound().map_err(send_err)?;
    if let Some(name) = address.strip_prefix('@') {
        send_abstract(&socket, name.as_bytes(), state.as_bytes())
            .map_err(|_| bad())?
            .map_err(send_err)?;
    } else if address.starts_with('/') {
        socket
            .send_to(state.as_bytes(), address)
            .map_err(send_err)?;
    } else {
        return Err(bad());
    }
    Ok(())
}

/// Sends to an abstract-namespace socket (Linux only). The outer error means the name is
/// unusable, the inner one that sending failed.
#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], data: &[u8]) -> Result<io::Result<()>, ()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(|_| ())?;
    Ok(socket.send_to_addr(data, &addr).map(|_| ()))
}

/// Abstract sockets exist only on Linux.
#[cfg(not(target_os = "linux"))]
fn send_abstract(_socket: &UnixDatagram, _name: &[u8], _data: &[u8]) -> Result<io::Result<()>, ()> {
    Err(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        let len = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1\nSTATUS=up").unwrap();
        assert_eq!(recv(&listener), "READY=1\nSTATUS=up");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lootsync-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(&format!("@{name}"), "STOPPING=1").unwrap();
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn bad_addresses_are_errors_not_panics() {
        assert!(matches!(
            notify_to("relative/path", "READY=1"),
            Err(NotifyError::BadAddress { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody-listens");
        assert!(matches!(
            notify_to(missing.to_str().unwrap(), "READY=1"),
            Err(NotifyError::Send { .. })
        ));
    }
}
