//! The commands that only a running daemon can answer: `status`, `peers`, and the `sync` and
//! `debug` switches.

use super::args::OnOff;
use super::client::daemon_request;
use super::output::{print_name_clashes, print_peers, print_status};
use anyhow::Result;
use loot_sync::config::Config;
use loot_sync::control::{Status, SwitchDebug, SwitchSync};

/// Prints the running daemon's node, sync state, peers and counters.
pub fn status(config: &Config, json: bool) -> Result<()> {
    let status = daemon_request(config, Status {})?;
    if json {
        // Through a JSON value, whose keys are sorted, as this output always had them.
        println!("{}", serde_json::to_value(&status)?);
    } else {
        print_status(&status);
    }
    Ok(())
}

/// Prints the peers the running daemon hears.
pub fn peers(config: &Config, json: bool) -> Result<()> {
    let status = daemon_request(config, Status {})?;
    if json {
        println!("{}", serde_json::to_string(&status.peers)?);
    } else if status.peers.is_empty() {
        println!("no peers heard");
    } else {
        print_peers(&status.peers);
        print_name_clashes(&status.node, &status.peers);
    }
    Ok(())
}

/// Switches the running daemon's SYNC debug lines.
pub fn debug(config: &Config, state: OnOff) -> Result<()> {
    let enabled = state == OnOff::On;
    daemon_request(config, SwitchDebug { enabled })?;
    println!("SYNC debug logging {}", if enabled { "on" } else { "off" });
    Ok(())
}

/// Switches the running daemon's sync.
pub fn sync(config: &Config, state: OnOff) -> Result<()> {
    let enabled = state == OnOff::On;
    daemon_request(config, SwitchSync { enabled })?;
    println!("sync {}", if enabled { "on" } else { "off" });
    Ok(())
}
