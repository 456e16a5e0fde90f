//! The configuration file tools: `config check` and `init`.

use anyhow::{Context, Result};
use loot_sync::config::starter;
use loot_sync::config::Config;
use loot_sync::control;
use loot_sync::store::keys::load_keyring;
use std::path::Path;

/// Validates `file` and prints the effective configuration (defaults filled in).
pub fn check(file: &Path) -> Result<()> {
    let config = Config::load(file)?;
    if let Some(group) = &config.control.group {
        // Valid syntax is not enough: the daemon needs the group on this machine.
        control::group_id(group)?;
    }
    // What `run` loads at start-up, checked the same way (existence, kind, mode), so
    // "valid" means the daemon starts with it.
    if let Some(current) = &config.security.group_key_file {
        load_keyring(current, &config.security.previous_key_files)
            .context("security.group_key_file")?;
    }
    config.officer_key().context("security.officer_key_file")?;
    eprintln!("{}: valid", file.display());
    for note in reach_notes(&config) {
        eprintln!("note: {note}");
    }
    print!("{}", config.to_toml_string());
    Ok(())
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

/// Writes a commented starter config into `dir`.
pub fn init(dir: &Path) -> Result<()> {
    let path = starter::write_starter(dir)?;
    println!("wrote {}", path.display());
    println!(
        "edit node, state_dir, [group] interface, [whisper] bind and [peers] addresses, then \
         check it with `lootsync config check {}`",
        path.display()
    );
    Ok(())
}
