//! The configuration file tools: `config check` and `init`.

use anyhow::Result;
use loot_sync::config::starter;
use loot_sync::config::Config;
use loot_sync::control;
use std::path::Path;

/// Validates `file` and prints the effective configuration (defaults filled in).
pub fn check(file: &Path) -> Result<()> {
    let config = Config::load(file)?;
    if let Some(group) = &config.control.group {
        // Valid syntax is not enough: the daemon needs the group on this machine.
        control::group_id(group)?;
    }
    eprintln!("{}: valid", file.display());
    print!("{}", config.to_toml_string());
    Ok(())
}

/// Writes a commented starter config into `dir`.
pub fn init(dir: &Path) -> Result<()> {
    let path = starter::write_starter(dir)?;
    println!("wrote {}", path.display());
    println!(
        "edit node, state_dir, [group] interface and [whisper] bind, then check it with \
         `lootsync config check {}`",
        path.display()
    );
    Ok(())
}
