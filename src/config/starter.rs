//! `lootsync init`: a commented starter config. The text is the shipped example
//! (`config/lootsync.toml`), so there is one source for it, with this machine's hostname as
//! the node name.

use crate::config::Config;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The shipped, commented example config.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config/lootsync.toml");
/// File name `init` writes.
pub const CONFIG_FILE_NAME: &str = "lootsync.toml";
/// The node line of the example, replaced by this machine's name.
const EXAMPLE_NODE_LINE: &str = "node = \"alice\"";

/// `init` could not write the starter config.
#[derive(Debug, Error)]
pub enum InitError {
    /// A config already exists; `init` never overwrites one.
    #[error("{} already exists; not overwriting it (check it with `lootsync config check {}`)", path.display(), path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The starter config text with `node` set to `node`.
pub fn starter_config(node: &str) -> String {
    // A TOML basic string, escaped by the TOML library rather than by hand.
    let quoted = toml::Value::String(node.to_string()).to_string();
    EXAMPLE_CONFIG.replacen(EXAMPLE_NODE_LINE, &format!("node = {quoted}"), 1)
}

/// The configuration `lootsync run` and the other commands use without `--config`: the
/// starter config, so the built-in defaults are the shipped example and work on loopback
/// as they are (multicast on 127.0.0.1), where [`Config::default`] has no multicast.
pub fn embedded() -> Result<Config, crate::config::ConfigError> {
    Config::from_toml_str(
        &starter_config(&Config::default().node),
        "<embedded defaults>",
    )
}

/// Writes the starter config into `dir` (created if missing) and returns its path. The
/// node name is this machine's hostname (the default `node`).
pub fn write_starter(dir: &Path) -> Result<PathBuf, InitError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(CONFIG_FILE_NAME);
    let text = starter_config(&Config::default().node);
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(InitError::Exists { path })
        }
        Err(err) => return Err(io_err(&path)(err)),
    };
    io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_config_is_the_example_with_this_node() {
        assert!(EXAMPLE_CONFIG.contains(EXAMPLE_NODE_LINE));
        let text = starter_config("raid box \"7\"");
        let config = Config::from_toml_str(&text, "<starter>").unwrap();
        assert_eq!(config.node, "raid box \"7\"");
        let mut expected = Config {
            node: config.node.clone(),
            ..Config::default()
        };
        expected.group.address = Some(crate::config::EXAMPLE_GROUP_ADDRESS);
        assert_eq!(config, expected);
        assert_eq!(embedded().unwrap(), {
            let mut embedded = expected.clone();
            embedded.node = Config::default().node;
            embedded
        });
        assert!(
            text.contains("# Loot Sync example configuration."),
            "comments kept"
        );
    }

    #[test]
    fn writes_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("etc");
        let path = write_starter(&target).unwrap();
        assert_eq!(path, target.join(CONFIG_FILE_NAME));
        let config = Config::load(&path).unwrap();
        assert_eq!(config.node, Config::default().node);
        std::fs::write(&path, "node = \"mine\"\n").unwrap();
        assert!(matches!(
            write_starter(&target),
            Err(InitError::Exists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "node = \"mine\"\n");
    }
}
