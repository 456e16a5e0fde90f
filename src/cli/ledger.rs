//! The ledger commands: `adjust`, `points`, `history` and `export`, through the running daemon
//! or on the log directly.

use super::args::ExportFormat;
use super::client::request;
use super::export;
use super::output::{print_adjusted, print_history, print_points};
use anyhow::Result;
use loot_sync::config::Config;
use loot_sync::control::{Adjust, History, Points};

/// Records a point adjustment and prints the player's new total.
pub fn adjust(
    config: &Config,
    player: String,
    delta: i64,
    reason: String,
    actor: Option<String>,
) -> Result<()> {
    let result = request(
        config,
        Adjust {
            player,
            delta,
            reason,
            actor,
        },
    )?;
    print_adjusted(&result);
    Ok(())
}

/// Prints every player's current total.
pub fn points(config: &Config, json: bool) -> Result<()> {
    let totals = request(config, Points {})?;
    if json {
        println!("{}", serde_json::to_string(&totals)?);
    } else {
        print_points(&totals);
    }
    Ok(())
}

/// Prints the audit trail, or one player's part of it.
pub fn history(config: &Config, player: Option<String>, json: bool) -> Result<()> {
    let rows = request(
        config,
        History {
            player: player.clone(),
        },
    )?;
    if json {
        print!("{}", export::history(&rows, ExportFormat::Json)?);
    } else {
        print_history(&rows, player.as_deref());
    }
    Ok(())
}

/// Prints the standings, or with `history` the full audit trail, as CSV or JSON.
pub fn export(config: &Config, format: ExportFormat, history: bool) -> Result<()> {
    let text = if history {
        let rows = request(config, History { player: None })?;
        export::history(&rows, format)?
    } else {
        let totals = request(config, Points {})?;
        export::standings(&totals, format)?
    };
    print!("{text}");
    Ok(())
}
