//! The control socket: how the CLI talks to a running daemon.
//!
//! A Unix domain socket in the state directory (mode 0600, or 0660 for the group named by
//! `control.group`), one JSON object per line each way. Requests are bounded in size and parsed strictly; a bad request gets an error reply
//! and never disturbs the daemon.

use crate::core::ledger::HistoryRow;
use crate::proto::entry::Entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// File name of the control socket inside the state directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request line accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Longest reply line the client accepts (history of a big log can be large).
pub const MAX_REPLY_BYTES: u64 = 512 * 1024 * 1024;

/// Path of the control socket for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Creates the control socket at `path`: mode 0600, or mode 0660 owned by the Unix group
/// `group`. It is bound under a temporary name and renamed into place only once its owner
/// and mode are set, so no client can connect while it is open to more users than intended.
/// The listener is non-blocking, ready for tokio.
pub fn bind(path: &Path, group: Option<&str>) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension("sock.new");
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)?;
    let placed = (|| {
        let mode = match group {
            None => 0o600,
            Some(name) => {
                let gid = group_id(name)?;
                std::os::unix::fs::chown(&staging, None, Some(gid)).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "cannot hand the socket to control.group {name:?} ({err}); the \
                             daemon's user must be a member of that group"
                        ),
                    )
                })?;
                0o660
            }
        };
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staging, path)
    })();
    if let Err(err) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(err);
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Looks up a Unix group's id by name (also used by `config check`, so a name that only
/// this machine can resolve is caught before the daemon starts).
pub fn group_id(name: &str) -> io::Result<u32> {
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("control.group {name:?}: no such Unix group on this machine"),
        )
    };
    let c_name = std::ffi::CString::new(name).map_err(|_| not_found())?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: all-zero bytes are a valid `libc::group` (null pointers, zero gid).
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer refers to live memory of the stated size for the call.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Err(not_found());
        }
        return Ok(group.gr_gid);
    }
}

/// A request from the CLI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Record a point adjustment (durable before the reply).
    Adjust {
        /// Player whose points change.
        player: String,
        /// Points to add (negative to remove).
        delta: i64,
        /// Why.
        reason: String,
        /// Who makes the change; the daemon's node name when absent.
        #[serde(default)]
        actor: Option<String>,
    },
    /// Append an entry made and signed elsewhere (an officer roster change signed by the
    /// root key, which the daemon does not hold). Its seal is checked first.
    Append {
        /// The signed entry.
        entry: Box<crate::proto::entry::Entry>,
    },
    /// Current totals. (Struct variants, so unknown fields are rejected.)
    Points {},
    /// History with running totals, optionally for one player.
    History {
        /// Only this player's entries.
        #[serde(default)]
        player: Option<String>,
    },
    /// Node, group, sync state, peers and counters.
    Status {},
    /// Switch sync on or off.
    Sync {
        /// The new state.
        enabled: bool,
    },
    /// Switch SYNC debug logging on or off at run time (the seed's `/sfdebug`).
    Debug {
        /// The new state.
        enabled: bool,
    },
}

/// The reply to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result, when `ok` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Reply {
    /// A successful reply carrying `value`.
    pub fn ok<T: Serialize>(value: &T) -> Reply {
        match serde_json::to_value(value) {
            Ok(value) => Reply {
                ok: true,
                error: None,
                result: Some(value),
            },
            Err(err) => Reply::error(format!("cannot encode reply: {err}")),
        }
    }

    /// A failure reply.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            result: None,
        }
    }
}

/// Result of an adjust.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdjustResult {
    /// The entry as recorded.
    pub entry: Entry,
    /// The player's total after replaying it.
    pub total: i64,
}

/// Totals by player.
pub type PointsResult = BTreeMap<String, i64>;
/// History rows in replay order.
pub type HistoryResult = Vec<HistoryRow>;

/// One peer as shown by `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its node name, if announced.
    pub name: Option<String>,
    /// Its whisper address.
    pub address: String,
    /// Milliseconds since we last heard it.
    pub last_heard_ms_ago: u64,
    /// Whether its last reported fingerprint equals ours.
    pub in_sync: bool,
}

/// Result of `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    /// Our node name.
    pub node: String,
    /// Group name.
    pub group: String,
    /// Whether sync is on.
    pub sync_enabled: bool,
    /// Entries in the log.
    pub entries: usize,
    /// Set fingerprint (count:hash prefix).
    pub fingerprint: String,
    /// Known peers.
    pub peers: Vec<PeerStatus>,
    /// Counters: datagrams sent/received, drops by reason, sessions.
    pub counters: BTreeMap<String, u64>,
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    serde_json::from_str(line.trim()).map_err(|err| format!("bad request: {err}"))
}

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
        source: std::io::Error,
    },
    /// The daemon's reply could not be understood.
    #[error("control socket {path}: unreadable reply: {message}")]
    BadReply {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request to the daemon listening on `path` and returns its result value.
pub fn call(path: &Path, request: &Request) -> Result<serde_json::Value, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning {
                path: path.to_path_buf(),
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(ControlError::PermissionDenied {
                path: path.to_path_buf(),
            })
        }
        Err(err) => return Err(io_err(err)),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err)?;
    let mut line = serde_json::to_string(request).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push('\n');
    send_all(&stream, line.as_bytes()).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_REPLY_BYTES))
        .read_line(&mut reply)
        .map_err(io_err)?;
    let reply: Reply = serde_json::from_str(&reply).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if reply.ok {
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(ControlError::Refused(
            reply.error.unwrap_or_else(|| "request failed".into()),
        ))
    }
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

    #[test]
    fn parses_requests_strictly() {
        assert_eq!(parse_request(r#"{"cmd":"points"}"#), Ok(Request::Points {}));
        assert_eq!(
            parse_request(r#"{"cmd":"adjust","player":"Bob","delta":-5,"reason":"r"}"#),
            Ok(Request::Adjust {
                player: "Bob".into(),
                delta: -5,
                reason: "r".into(),
                actor: None
            })
        );
        assert!(parse_request(r#"{"cmd":"points","extra":1}"#).is_err());
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
        assert!(parse_request("not json").is_err());
        assert!(parse_request(&"x".repeat(MAX_REQUEST_BYTES + 1)).is_err());
        // The limit is on the request, not its newline: a padded request of exactly the
        // limit is accepted.
        let padded = format!(
            "{:<width$}\n",
            r#"{"cmd":"points"}"#,
            width = MAX_REQUEST_BYTES
        );
        assert_eq!(parse_request(&padded), Ok(Request::Points {}));
    }

    #[test]
    fn socket_is_private_by_default_and_group_shared_when_configured() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let listener = bind(&path, None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(!path.with_extension("sock.new").exists());
        drop(listener);
        std::fs::remove_file(&path).unwrap();

        // Our own primary group is one we may always hand the socket to.
        // SAFETY: getegid cannot fail; getgrgid returns a pointer into static storage, read
        // at once before any other call could overwrite it.
        let name = unsafe {
            let gid = libc::getegid();
            let group = libc::getgrgid(gid);
            assert!(!group.is_null(), "our group has a name");
            std::ffi::CStr::from_ptr((*group).gr_name)
                .to_string_lossy()
                .into_owned()
        };
        let _listener = bind(&path, Some(&name)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        // SAFETY: getegid cannot fail.
        assert_eq!(meta.gid(), unsafe { libc::getegid() });
    }

    #[test]
    fn unknown_group_is_refused_and_leaves_no_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let err = bind(&path, Some("no-such-group-lootsync")).unwrap_err();
        assert!(err.to_string().contains("control.group"), "{err}");
        assert!(!path.exists());
        assert!(!path.with_extension("sock.new").exists());
    }

    #[test]
    fn missing_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = call(&socket_path(dir.path()), &Request::Points {}).unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }));
    }
}
