//! The command line's definition: every argument, subcommand and value parser, and nothing
//! that runs them. Shell completions and man pages are generated from these types.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Group port the demo uses unless `--port` says otherwise; away from the default port
/// (47683) and from the ports the tests use.
pub const DEMO_DEFAULT_PORT: u16 = 47760;

/// Command-line interface of `lootsync`.
#[derive(Debug, Parser)]
#[command(
    name = "lootsync",
    version,
    about = "Peer-to-peer loot-point ledger: every officer's adjustment, on every raider's machine",
    long_about = "Loot Sync keeps a raid group's loot-point adjustments identical on every member's \
machine with no server. `lootsync run` is the peer daemon: it joins a UDP multicast group channel \
on its LAN and contacts the peers listed in [peers] addresses (a hub, across the internet), \
broadcasts new log entries and reconciles missing ones with its peers. The other commands talk to \
the running daemon over its control socket, or, when no daemon is running, open the log directly \
(that is how an officer adjusts points while offline; the change spreads when the daemon next \
runs with its group).\n\nWithout --config, the embedded defaults are used: loopback interface \
127.0.0.1, group 239.255.76.83:47683, state in ./lootsync-data (the example config, as `lootsync \
init` writes it)."
)]
pub struct Cli {
    /// TOML config file (default: built-in loopback defaults, state in ./lootsync-data).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Which kind of key `keygen` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyKind {
    /// The 32-byte group key that seals every datagram (`security.group_key_file`). Copy it
    /// to every member over a trusted channel.
    Group,
    /// An officer's signing key (`security.officer_key_file`).
    Officer,
    /// The group's root key, which signs roster changes (`security.root_key_file`).
    Root,
}

/// `lootsync officer ...`
#[derive(Debug, Subcommand)]
pub enum OfficerCommand {
    /// Make NAME an officer whose entries are signed by PUBKEY.
    Add {
        /// The officer's name.
        name: String,
        /// The officer's public key, as printed by `lootsync keygen officer`.
        #[arg(value_name = "PUBKEY")]
        public_key: String,
        /// The root secret key file (default: security.root_key_file).
        #[arg(long, value_name = "FILE")]
        root_key: Option<PathBuf>,
    },
    /// Remove the officer NAME and revoke their key for good. Their entries that count on
    /// this peer now keep counting (they are listed in the revocation); any other entry
    /// signed by the key never counts, whatever date it carries. Sync first, so this peer
    /// has heard of every entry of theirs you mean to keep.
    Remove {
        /// The officer's name.
        name: String,
        /// Keep none of their entries (for a stolen key: everything it signed stops
        /// counting).
        #[arg(long)]
        revoke_all: bool,
        /// The root secret key file (default: security.root_key_file).
        #[arg(long, value_name = "FILE")]
        root_key: Option<PathBuf>,
    },
    /// Show the officer roster as this peer judges it: each officer's name, public key,
    /// when and by whom they were added, whether their key is revoked, and how many of
    /// their entries count; and the root key the roster is judged under.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the peer daemon in the foreground (systemd runs this).
    Run,
    /// Record a point adjustment (durable on disk before it reports success).
    #[command(allow_negative_numbers = true)]
    Adjust {
        /// Player whose points change.
        #[arg(long, value_name = "NAME")]
        player: String,
        /// Points to add; negative to remove (e.g. --delta -5). Non-zero, at most
        /// 1,000,000,000 either way.
        #[arg(long, value_name = "N", value_parser = parse_delta)]
        delta: i64,
        /// Why (shown in history; at most 256 bytes).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Who makes the change (default: this node's name from the config).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Award the same points to several players at once (a whole raid): one entry per
    /// player, written and fsynced as one batch and sent to the group together. All or
    /// nothing: a bad name refuses the whole award and names it. Names match existing
    /// players in any letter case.
    #[command(allow_negative_numbers = true)]
    Award {
        /// Points each player gets; negative to remove. Non-zero, at most 1,000,000,000
        /// either way.
        #[arg(long, value_name = "N", value_parser = parse_delta)]
        delta: i64,
        /// Why (shown in history; at most 256 bytes, no control characters).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// The players; each at most once.
        #[arg(value_name = "PLAYER")]
        players: Vec<String>,
        /// Also read players from FILE, one name per line (blank lines skipped).
        #[arg(long, value_name = "FILE")]
        players_file: Option<PathBuf>,
        /// Print the table of entries it would write, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who makes the change (default: this node's name from the config).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Decay every player's total by a percentage, as one batch: for each non-zero total,
    /// an entry of -(total x P / 100) truncated toward zero (totals too small to lose a
    /// whole point get none; negative totals move back toward zero). Computed from THIS
    /// peer's view: entries it has not yet received are not decayed, so sync first.
    Decay {
        /// The percentage, more than 0 and at most 100, with up to two decimals (10, 2.5).
        #[arg(long, value_name = "P", value_parser = parse_percent)]
        percent: u32,
        /// Why (shown in history).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Print the table of entries it would write, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who makes the change (default: this node's name from the config).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Undo one earlier point entry: append the entry with the same player and the opposite
    /// delta, linked to it (its reason starts `revert <digest>`). History shows both. An
    /// entry can be reverted once; roster changes are undone with `officer`, not here.
    Revert {
        /// The entry: its digest as `history` shows it (8 hex digits are usually enough),
        /// or its id (as `adjust` prints it); any unambiguous prefix of either.
        #[arg(value_name = "ENTRY")]
        entry: String,
        /// Why (appended after the link; at most 215 bytes).
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
        /// Who makes the change (default: this node's name from the config).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Set players' totals from a `player,points` CSV file (what `export --format csv`
    /// writes: a header line, RFC 4180 quoting): one opening-balance entry per player whose
    /// total on this peer differs, for the difference, as one batch. Players not in the file
    /// keep their totals; players already at their balance get no entry.
    Import {
        /// The CSV file (`-` for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Why (shown in history).
        #[arg(long, value_name = "TEXT", default_value = "opening balance")]
        reason: String,
        /// Print the table of entries it would write, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who makes the change (default: this node's name from the config).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Show every player's current total.
    Points {
        /// Print one JSON object mapping player to total, e.g. {"Alice":30,"Bob":-5}.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail in replay order, with running totals.
    History {
        /// Only this player's entries.
        #[arg(long, value_name = "NAME")]
        player: Option<String>,
        /// Print a JSON array of entries.
        #[arg(long)]
        json: bool,
    },
    /// Show the running daemon's node, sync state, multicast group, listed addresses and how
    /// they resolved, peers and counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the running daemon's peers: how each is reached (multicast, listed, learned),
    /// its address, when last heard, in sync or not; listed addresses that never answered.
    Peers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch the running daemon's SYNC debug lines on or off, without a restart.
    Debug {
        /// on or off.
        state: OnOff,
    },
    /// Check the whole log (framing, checksums, entries and their bounds, duplicate ids)
    /// and print a summary. Exits non-zero if the log is damaged. Needs the log to itself:
    /// stop the daemon first.
    Verify,
    /// Rewrite a damaged log with every intact record. The damaged file is kept as
    /// <group>.lootlog.damaged-<unix ms>, never deleted; sync refills lost entries from
    /// peers. Needs the log to itself: stop the daemon first.
    // clap prints this comment verbatim as the help text, where <group> reads as a
    // placeholder; rustdoc would take it for an HTML tag.
    #[allow(rustdoc::invalid_html_tags)]
    Repair,
    /// Switch the running daemon's sync on or off (off: no group traffic at all; local
    /// adjusts are still recorded and spread once sync is back on).
    Sync {
        /// on or off.
        state: OnOff,
    },
    /// Export the standings, or with --history the full audit trail, to stdout.
    Export {
        /// csv (RFC 4180, header line) or json (one array).
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// The full audit trail in replay order with running totals, instead of standings.
        #[arg(long)]
        history: bool,
    },
    /// Play the seed's scenarios with three peers in this process, on loopback, and print
    /// their final standings side by side (exit status 0 only if they are identical). The
    /// peers use their own built-in configs and temporary state: `--config` is refused.
    Demo {
        /// Multicast group port (on 127.0.0.1, TTL 1), 1 to 65535.
        #[arg(long, default_value_t = DEMO_DEFAULT_PORT, value_name = "PORT",
              value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Also show the HELLO heartbeat lines.
        #[arg(long)]
        verbose: bool,
    },
    /// Configuration file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a new secret key to FILE (mode 0600, never overwriting) and print its public
    /// key (officer, root). The group key (`keygen group`) seals every datagram; an officer
    /// key signs adjusts; the root key (`keygen root`) signs roster changes.
    Keygen {
        /// Which key: `group`, `officer` or `root` (the last two are ed25519 keypairs).
        kind: KeyKind,
        /// Where to write the secret key.
        file: PathBuf,
    },
    /// Change the officer roster (appends an entry signed by the group's root key).
    #[command(subcommand)]
    Officer(OfficerCommand),
    /// Write a commented starter config (lootsync.toml) into DIR; never overwrites.
    Init {
        /// Directory to write into (created if missing).
        #[arg(default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the shell completion script for SHELL.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the lootsync(1) man page (roff), or write every page into a directory.
    Man {
        /// Write lootsync.1 and one page per subcommand into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `lootsync config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE and print the effective configuration (defaults filled in); errors
    /// name the key, and syntax errors the line and column.
    ///
    /// It also checks what `run` checks beyond the file: each key file exists, holds the
    /// right kind of key and is private (mode 0600), and whether the service user gets at
    /// it: the user named by --user, or, run by root, the unit's user `lootsync` if that
    /// account exists.
    Check {
        /// The config file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also check that this user (the one the daemon runs as) can get at the key files
        /// and the config.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print only problems, not the effective configuration and the key lines (for
        /// the unit's ExecStartPre=).
        #[arg(long, short)]
        quiet: bool,
    },
}

/// Output format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values (RFC 4180), one header line.
    Csv,
    /// One JSON array.
    Json,
}

/// The one delta check every command shares ([`loot_sync::core::batch::check_delta`]), so
/// the parser and the ledger refuse with the same words.
fn parse_delta(text: &str) -> Result<i64, String> {
    use loot_sync::core::batch::{check_delta, DeltaOutOfRange};
    let delta: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number", text))?;
    check_delta(delta).map_err(|err: DeltaOutOfRange| err.to_string())
}

fn parse_percent(text: &str) -> Result<u32, String> {
    loot_sync::core::batch::parse_percent(text).map_err(|err| err.to_string())
}

/// A switch position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Switch on.
    On,
    /// Switch off.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn negative_delta_and_global_config_parse() {
        let cli = Cli::try_parse_from([
            "lootsync", "adjust", "--player", "Bob", "--delta", "-5", "--reason", "r", "--config",
            "x.toml",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert!(matches!(cli.command, Command::Adjust { delta: -5, .. }));
        assert!(Cli::try_parse_from(["lootsync", "adjust", "--player", "Bob"]).is_err());
        assert!(Cli::try_parse_from(["lootsync", "sync", "maybe"]).is_err());
        for bad in ["0", "abc", "1.5", "1000000001", "-99999999999999999999"] {
            let err = Cli::try_parse_from([
                "lootsync", "adjust", "--player", "Bob", "--delta", bad, "--reason", "r",
            ])
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("from -1000000000 to 1000000000")
                    || err.contains("not a whole number"),
                "{bad}: {err}"
            );
        }
    }
}
