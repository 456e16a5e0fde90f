//! The client side: one request per connection, as the CLI and tests send them.

use super::protocol::{Command, Reply, Request, MAX_REPLY_BYTES};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// How long the client waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A control request could not be completed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// No daemon is listening (no socket, or connection refused).
    #[error("no daemon is listening on {path}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but this user may not use it.
    #[error(
        "permission denied on {path}: run the command as the daemon's user, or set \
         `control.group` in the daemon's config to a group you are in"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The conversation failed part-way.
    #[error("control socket {path}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The daemon's reply could not be understood.
    #[error("control socket {path}: unreadable reply")]
    BadReply {
        /// The socket path.
        path: PathBuf,
        /// Why it could not be decoded.
        #[source]
        source: serde_json::Error,
    },
    /// The daemon said the request succeeded but sent no result with it.
    #[error("control socket {path}: the reply carries no result")]
    NoResult {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon refused the request; `message` is its explanation, in its words (it
    /// crosses the process boundary as text).
    #[error("{message}")]
    Refused {
        /// What the daemon said.
        message: String,
    },
    /// The task running the blocking client failed (only for in-process callers).
    #[error("control client task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Sends one command to the daemon listening on `path` and returns its result.
pub fn call<C: Command>(path: &Path, command: C) -> Result<C::Output, ControlError> {
    let request: Request = command.into();
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad_reply = |source| ControlError::BadReply {
        path: path.to_path_buf(),
        source,
    };
    let stream = connect(path)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(io_err)?;
    let mut line = serde_json::to_string(&request).map_err(bad_reply)?;
    line.push('\n');
    // A daemon at its connection limit answers with an error line and hangs up, maybe
    // before our request is written: its answer says more than the broken pipe.
    let sent = send_all(&stream, line.as_bytes());
    if let Err(err) = &sent {
        if !matches!(
            err.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(io_err(sent.unwrap_err()));
        }
    }
    let mut reply = String::new();
    let read = BufReader::new((&stream).take(MAX_REPLY_BYTES)).read_line(&mut reply);
    match (sent, read) {
        // A reply is one whole line: one without its newline was cut short (the daemon
        // stopped or was killed while writing it, which a long history gives time for),
        // a broken conversation rather than a reply that makes no sense.
        (_, Ok(n)) if n > 0 && reply.ends_with('\n') => {}
        (_, Ok(n)) if n > 0 => {
            return Err(io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection in the middle of its reply",
            )))
        }
        (Err(err), _) | (Ok(()), Err(err)) => return Err(io_err(err)),
        (Ok(()), Ok(_)) => return Err(io_err(io::ErrorKind::UnexpectedEof.into())),
    }
    let reply: Reply<C::Output> = serde_json::from_str(&reply).map_err(bad_reply)?;
    if reply.ok {
        reply.result.ok_or_else(|| ControlError::NoResult {
            path: path.to_path_buf(),
        })
    } else {
        Err(ControlError::Refused {
            message: reply.error.unwrap_or_else(|| "request failed".into()),
        })
    }
}

fn connect(path: &Path) -> Result<UnixStream, ControlError> {
    UnixStream::connect(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ControlError::NotRunning {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ControlError::Io {
            path: path.to_path_buf(),
            source: err,
        },
    })
}

/// Writes all of `bytes` with MSG_NOSIGNAL: a daemon that hangs up mid-request is an error
/// here, never a SIGPIPE (the CLI restores SIGPIPE's default action for its stdout).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    while !bytes.is_empty() {
        match socket.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(sent) => bytes = &bytes[sent..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{socket_path, Points};

    #[test]
    fn missing_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = call(&socket_path(dir.path()), Points {}).unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }));
    }

    /// A daemon killed while writing a long reply leaves half a line: that is a broken
    /// conversation (found by issue 16's soak, which counted it as an unreadable reply),
    /// while a whole line that is not a reply stays an unreadable reply.
    #[test]
    fn a_reply_cut_short_is_a_broken_conversation_not_an_unreadable_reply() {
        use std::io::{BufRead, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [&br#"{"ok":true,"result":{"Ar"#[..], b"not json\n"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = String::new();
                BufReader::new(&stream).read_line(&mut request).unwrap();
                stream.write_all(answer).unwrap();
            }
        });
        let cut = call(&path, Points {}).unwrap_err();
        assert!(
            matches!(&cut, ControlError::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof),
            "{cut:?}"
        );
        let garbled = call(&path, Points {}).unwrap_err();
        assert!(
            matches!(garbled, ControlError::BadReply { .. }),
            "{garbled:?}"
        );
        server.join().unwrap();
    }
}
