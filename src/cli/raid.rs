//! An officer's raid night: `award`, `decay`, `revert` and `import`. Each writes its
//! entries as one durable batch, through the running daemon or offline, signed with the
//! officer key like `adjust`; the planning happens where the ledger is (the daemon, or the
//! log opened here), so decay and import see exactly the totals they change.

use super::client::request;
use super::export::read_standings;
use super::output::print_batch;
use anyhow::{Context, Result};
use loot_sync::config::Config;
use loot_sync::control::{Award, Decay, Import, Revert};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What `lootsync award` was given.
pub struct AwardArgs {
    /// Points each player gets.
    pub delta: i64,
    /// Why.
    pub reason: String,
    /// Players named on the command line.
    pub players: Vec<String>,
    /// A file of more players, one per line.
    pub players_file: Option<PathBuf>,
    /// Who makes the change.
    pub actor: Option<String>,
    /// Only show what it would write.
    pub dry_run: bool,
}

/// Awards `delta` to every player named, as one batch.
pub fn award(config: &Config, args: AwardArgs) -> Result<()> {
    let mut players = args.players;
    if let Some(file) = &args.players_file {
        players.extend(read_players_file(file)?);
    }
    let result = request(
        config,
        Award {
            players,
            delta: args.delta,
            reason: args.reason,
            actor: args.actor,
            dry_run: args.dry_run,
        },
    )?;
    print_batch("award", &result, "no players");
    Ok(())
}

/// One player name per line; blank lines are skipped (names are checked by the award).
fn read_players_file(file: &Path) -> Result<Vec<String>> {
    let text = read_input(file)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// Decays every non-zero total by `percent_hundredths` / 100 %, or shows what it would.
pub fn decay(
    config: &Config,
    percent_hundredths: u32,
    reason: String,
    dry_run: bool,
    actor: Option<String>,
) -> Result<()> {
    let result = request(
        config,
        Decay {
            percent_hundredths,
            reason,
            actor,
            dry_run,
        },
    )?;
    print_batch(
        "decay",
        &result,
        "no total on this peer is large enough to lose a whole point",
    );
    Ok(())
}

/// Appends the entry undoing `entry`.
pub fn revert(config: &Config, entry: String, reason: String, actor: Option<String>) -> Result<()> {
    let result = request(
        config,
        Revert {
            entry,
            reason,
            actor,
        },
    )?;
    print_batch("revert", &result, "nothing to undo");
    Ok(())
}

/// Sets totals from a `player,points` file, or shows what it would write.
pub fn import(
    config: &Config,
    file: &Path,
    reason: String,
    dry_run: bool,
    actor: Option<String>,
) -> Result<()> {
    let text = read_input(file)?;
    let balances =
        read_standings(text.as_bytes()).with_context(|| format!("{}", file.display()))?;
    let result = request(
        config,
        Import {
            balances,
            reason,
            actor,
            dry_run,
        },
    )?;
    print_batch(
        "import",
        &result,
        "every total on this peer already equals the file",
    );
    Ok(())
}

/// The text of `file`, or of standard input for `-`.
fn read_input(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}
