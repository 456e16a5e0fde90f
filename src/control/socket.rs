//! Where the control socket lives and how it is created with the right owner and mode.

use nix::unistd::Group;
use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name of the control socket inside the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket could not be created, or `control.group` cannot be used.
#[derive(Debug, Error)]
pub enum SocketError {
    /// No Unix group of that name exists here.
    #[error("control.group {name:?}: no such Unix group on this machine")]
    UnknownGroup {
        /// The configured group name.
        name: String,
    },
    /// The group database could not be read.
    #[error("control.group {name:?}: cannot look the group up")]
    GroupLookup {
        /// The configured group name.
        name: String,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// The socket could not be handed to the group.
    #[error(
        "cannot hand the socket to control.group {name:?}; the daemon's user must be a \
         member of that group"
    )]
    Chown {
        /// The configured group name.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Binding, setting the mode or moving the socket into place failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Path of the control socket for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Creates the control socket at `path`: mode 0600, or mode 0660 owned by the Unix group
/// `group`. It is bound under a temporary name and renamed into place only once its owner
/// and mode are set, so no client can connect while it is open to more users than intended.
/// The listener is non-blocking, ready for tokio.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, SocketError> {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension("sock.new");
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)?;
    let placed = (|| {
        let mode = match group {
            None => 0o600,
            Some(name) => {
                let gid = group_id(name)?;
                std::os::unix::fs::chown(&staging, None, Some(gid)).map_err(|source| {
                    SocketError::Chown {
                        name: name.to_string(),
                        source,
                    }
                })?;
                0o660
            }
        };
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staging, path)?;
        Ok::<(), SocketError>(())
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
pub fn group_id(name: &str) -> Result<u32, SocketError> {
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(SocketError::UnknownGroup {
            name: name.to_string(),
        }),
        Err(source) => Err(SocketError::GroupLookup {
            name: name.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::getegid;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn socket_is_private_by_default_and_group_shared_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let listener = bind(&path, None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(!path.with_extension("sock.new").exists());
        drop(listener);
        std::fs::remove_file(&path).unwrap();

        // Our own primary group is one we may always hand the socket to.
        let ours = Group::from_gid(getegid())
            .unwrap()
            .expect("our group has a name");
        let _listener = bind(&path, Some(&ours.name)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), getegid().as_raw());
    }

    #[test]
    fn unknown_group_is_refused_and_leaves_no_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let err = bind(&path, Some("no-such-group-lootsync")).unwrap_err();
        assert!(matches!(err, SocketError::UnknownGroup { .. }), "{err}");
        assert!(!path.exists());
        assert!(!path.with_extension("sock.new").exists());
    }

    #[test]
    fn a_name_with_a_nul_byte_is_no_group() {
        assert!(matches!(
            group_id("wheel\0"),
            Err(SocketError::UnknownGroup { .. })
        ));
    }
}
