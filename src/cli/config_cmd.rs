//! The configuration file tools: `config check` and `init`.

use anyhow::{bail, Context, Result};
use loot_sync::config::starter;
use loot_sync::config::Config;
use loot_sync::control;
use loot_sync::store::keyfile::{self, KeyAccess, KeyKind, SERVICE_CREDENTIAL_ID, SERVICE_KEY_DIR};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The account the shipped unit runs the daemon as (`User=` in `systemd/lootsync.service`).
const SERVICE_USER: &str = "lootsync";

/// Validates `file`, checks its key files as `run` will (and for `user`, or the unit's user
/// when run by root, whether that user gets at them), and prints the effective
/// configuration (defaults filled in), or, `quiet`, only the problems.
pub fn check(file: &Path, user: Option<&str>, quiet: bool) -> Result<()> {
    let config = Config::load(file)?;
    if let Some(group) = &config.control.group {
        // Valid syntax is not enough: the daemon needs the group on this machine.
        control::group_id(group)?;
    }
    let service_user = match user {
        Some(name) => Some(
            ServiceUser::lookup(name)?.with_context(|| format!("--user {name}: no such user"))?,
        ),
        None if nix::unistd::geteuid().is_root() => ServiceUser::lookup(SERVICE_USER)?,
        None => None,
    };
    let mut problems = Vec::new();
    let keys = key_files(&config);
    for (key, path, kind) in &keys {
        match check_key_file(key, path, *kind, service_user.as_ref()) {
            Ok(line) if !quiet => eprintln!("{line}"),
            Ok(_) => {}
            Err(problem) => problems.push(problem),
        }
    }
    if let Some(user) = &service_user {
        match KeyAccess::of(file, user.uid, &user.groups) {
            Ok(KeyAccess::Unreadable { .. }) => problems.push(format!(
                "{} cannot read {}: make it readable (e.g. mode 0644; it holds no secrets)",
                user.name,
                file.display()
            )),
            Ok(_) => {}
            Err(err) => problems.push(format!("{:#}", anyhow::Error::new(err))),
        }
    }
    match (&service_user, keys.is_empty() || quiet) {
        (_, true) => {}
        (Some(user), false) => eprintln!(
            "note: checked for user {}; not checked: the directories above each key file and \
             the unit's sandbox (ProtectHome= hides /home, /root and /run/user from the \
             service)",
            user.name
        ),
        (None, false) if nix::unistd::geteuid().is_root() => eprintln!(
            "note: not checked whether the service user can get at the key files: there is no \
             user {SERVICE_USER} (the unit's User=) here; pass --user NAME for another account"
        ),
        (None, false) => eprintln!(
            "note: not checked whether the service user can get at the key files: run this as \
             root, or pass --user NAME"
        ),
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprint!("{}", super::run::error_lines(&format!("error: {problem}")));
        }
        bail!(
            "{}: {} problem(s) with key files; the daemon would refuse to start",
            file.display(),
            problems.len()
        );
    }
    if quiet {
        return Ok(());
    }
    eprintln!("{}: valid", file.display());
    for note in reach_notes(&config) {
        eprintln!("note: {note}");
    }
    print!("{}", config.to_toml_string());
    Ok(())
}

/// The account a daemon runs as: the ids that decide what it may read.
struct ServiceUser {
    name: String,
    uid: u32,
    /// Its primary and supplementary groups.
    groups: Vec<u32>,
}

impl ServiceUser {
    /// The account `name`, if it exists.
    fn lookup(name: &str) -> Result<Option<ServiceUser>> {
        let Some(user) = nix::unistd::User::from_name(name)
            .with_context(|| format!("cannot look up user {name}"))?
        else {
            return Ok(None);
        };
        let c_name = std::ffi::CString::new(name).context("user name")?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .with_context(|| format!("cannot list the groups of {name}"))?;
        Ok(Some(ServiceUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            groups: groups.into_iter().map(|gid| gid.as_raw()).collect(),
        }))
    }
}

/// Every key file the config names: its config key, path and kind. `root_key_file` is
/// only read by `officer add/remove`, but a broken one is as much a problem.
fn key_files(config: &Config) -> Vec<(&'static str, PathBuf, KeyKind)> {
    let security = &config.security;
    let mut keys = Vec::new();
    if let Some(path) = &security.group_key_file {
        keys.push(("security.group_key_file", path.clone(), KeyKind::Group));
    }
    for path in &security.previous_key_files {
        keys.push(("security.previous_key_files", path.clone(), KeyKind::Group));
    }
    if let Some(path) = &security.officer_key_file {
        keys.push(("security.officer_key_file", path.clone(), KeyKind::Officer));
    }
    if let Some(path) = &security.root_key_file {
        keys.push(("security.root_key_file", path.clone(), KeyKind::Root));
    }
    keys
}

/// Checks one key file as the daemon will read it (existence, kind, mode 0600, readable by
/// whoever runs this) and whether `user` gets at it; a line saying what it found, or the
/// problem with its fix.
fn check_key_file(
    key: &str,
    path: &Path,
    kind: KeyKind,
    user: Option<&ServiceUser>,
) -> Result<String, String> {
    let problem = |err: keyfile::KeyFileError| format!("{key}: {:#}", anyhow::Error::new(err));
    // Read as the file itself, not a credential: this is what systemd will copy.
    match keyfile::read_private_with(path, kind, None) {
        Ok(_) => {}
        // Not a finding about the file: this user just may not look (keys are root's).
        Err(keyfile::KeyFileError::NotReadable { uid, .. }) if uid != 0 => {
            return Ok(format!(
                "{key} {}: NOT CHECKED: uid {uid} may not read it (run `config check` as root)",
                path.display()
            ))
        }
        Err(err) => return Err(problem(err)),
    }
    let mut line = format!("{key} {}: {kind}, private", path.display());
    if path.is_relative() {
        line.push_str(
            " (a relative path: the daemon takes it from its working directory, \
             /var/lib/lootsync under the unit)",
        );
    }
    if let Some(user) = user {
        match KeyAccess::of(path, user.uid, &user.groups).map_err(problem)? {
            KeyAccess::Credential => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                line.push_str(&format!(
                    "; lootsync.service passes it to {} as credential {SERVICE_CREDENTIAL_ID}_{name}",
                    user.name
                ));
            }
            KeyAccess::Readable => line.push_str(&format!("; readable by {}", user.name)),
            KeyAccess::Unreadable { owner, mode } => {
                return Err(format!(
                    "{key}: {} cannot read {} (owner uid {owner}, mode {mode:04o}): move it into \
                     {SERVICE_KEY_DIR}/ (root-owned, mode 0600), which lootsync.service passes \
                     to the daemon as credentials, and set {key} to the new path",
                    user.name,
                    path.display()
                ))
            }
        }
    }
    Ok(line)
}

/// What the file means for whom this daemon talks to, in words: the printed TOML still
/// shows `group.port`, `interface` and `ttl` without an address, where they do nothing.
fn reach_notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    match config.group.multicast() {
        Some(group) => notes.push(format!(
            "multicast: group {group} on interface {} (ttl {})",
            config.group.interface, config.group.ttl
        )),
        None => notes.push(
            "multicast: off (no group.address); group.port, group.interface and group.ttl \
             are ignored"
                .to_owned(),
        ),
    }
    let listed = &config.peers.addresses;
    if listed.is_empty() {
        notes.push("listed peers: none".to_owned());
    } else {
        notes.push(format!(
            "listed peers: {} (host names resolved every {})",
            listed.join(", "),
            humantime::format_duration(config.peers.resolve_interval)
        ));
    }
    if config.group.address.is_none() && listed.is_empty() {
        notes.push(format!(
            "no multicast and no listed peers: this daemon only talks to peers that contact \
             it at its whisper address ({}), as a hub does",
            config.whisper.bind
        ));
    }
    notes
}

/// Writes a commented starter config into `dir`, and makes `dir/keys` (mode 0700) for the
/// key files.
pub fn init(dir: &Path) -> Result<()> {
    let path = starter::write_starter(dir)?;
    println!("wrote {}", path.display());
    let keys = dir.join("keys");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&keys)
        .with_context(|| format!("cannot create {}", keys.display()))?;
    println!(
        "key files go in {} (mode 0700; `lootsync keygen group {}/group.key` makes the group's \
         key, or copy the group's key there with mode 0600){}",
        keys.display(),
        keys.display(),
        if keys == Path::new(SERVICE_KEY_DIR) {
            "; lootsync.service passes them to the daemon as credentials"
        } else {
            ""
        }
    );
    println!(
        "edit node, state_dir, [group] interface, [whisper] bind and [peers] addresses, then \
         check it with `lootsync config check {}`",
        path.display()
    );
    Ok(())
}
