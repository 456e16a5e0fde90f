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
    /// their final standings side by side (exit status 0 only if they are identical).
    Demo {
        /// Multicast group port (on 127.0.0.1, TTL 1).
        #[arg(long, default_value_t = DEMO_DEFAULT_PORT, value_name = "PORT")]
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

fn parse_delta(text: &str) -> Result<i64, String> {
    let max = loot_sync::proto::entry::MAX_ABS_DELTA;
    let out_of_range = || format!("must be a non-zero whole number from -{max} to {max}");
    let delta: i64 = text.trim().parse().map_err(|_| out_of_range())?;
    if delta == 0 || delta.abs() > max {
        return Err(out_of_range());
    }
    Ok(delta)
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
                err.contains("from -1000000000 to 1000000000"),
                "{bad}: {err}"
            );
        }
    }
}
