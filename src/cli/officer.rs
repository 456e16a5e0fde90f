//! The officer commands: `officer add`/`officer remove` (roster changes signed by the group's
//! root key) and `keygen` (the group, officer and root keys they rely on).

use super::args::{KeyKind, OfficerCommand};
use super::client::{request, NoLedger};
use super::output::{print_officers, terminal_safe};
use anyhow::{bail, Context, Result};
use loot_sync::config::Config;
use loot_sync::control::{Append, History, RosterQuery};
use loot_sync::core::ledger::{HistoryRow, Ledger};
use loot_sync::core::rng::SeededRng;
use loot_sync::core::roster::listing::officer_listing;
use loot_sync::core::roster::plan::{self, OfficerChange, PlanRefusal, RosterView};
use loot_sync::node as ops;
use loot_sync::proto::entry::EntryError;
use loot_sync::proto::hlc::Hlc;
use loot_sync::proto::keys::PublicKey;
use loot_sync::store::keyfile::{in_service_key_dir, SERVICE_KEY_DIR};
use loot_sync::store::keys::{
    create_group_key_file, create_signing_key_file, load_signing_key, rng_seed_from_os,
};
use std::path::Path;

/// Writes a new secret key of `kind` to `file` and prints what the user needs of it.
pub fn keygen(kind: KeyKind, file: &Path) -> Result<()> {
    if let KeyKind::Group = kind {
        let id = create_group_key_file(file)?;
        println!(
            "wrote group key {id} to {} (mode 0600); copy it to every member and set \
             [security] group_key_file{}",
            file.display(),
            service_hint(file)
        );
        return Ok(());
    }
    let stored_as = match kind {
        KeyKind::Root => loot_sync::store::keyfile::KeyKind::Root,
        _ => loot_sync::store::keyfile::KeyKind::Officer,
    };
    let key = create_signing_key_file(file, stored_as)?;
    eprintln!(
        "wrote {} key {} (mode 0600){}; its public key:",
        match kind {
            KeyKind::Root => "root",
            _ => "officer",
        },
        file.display(),
        match kind {
            // The root key belongs off the peers, not where the service reads keys.
            KeyKind::Root => String::new(),
            _ => service_hint(file),
        }
    );
    println!("{}", key.public());
    Ok(())
}

/// Prints the roster as this peer judges it (`officer list`), with the root key it is
/// judged under.
pub fn list(config: &Config, json: bool) -> Result<()> {
    let Some(root) = config.root_public_key() else {
        if json {
            println!(
                "{}",
                serde_json::json!({"root_public_key": null, "officers": []})
            );
        } else {
            println!(
                "open roster: no security.root_public_key is set, so there are no officers and \
                 every entry counts (see `lootsync keygen root`)"
            );
        }
        return Ok(());
    };
    let view = JudgedLog::fetch(config, root)?;
    let listing = officer_listing(&view.ledger, &view.rows);
    if json {
        let out = serde_json::json!({
            "root_public_key": root.to_string(),
            "officers": listing,
        });
        println!("{out}");
    } else {
        print_officers(&root.to_string(), &listing);
    }
    Ok(())
}

/// Where the service will find a daemon key written to `file`: the unit reads only the
/// files in its key directory (as credentials), so say so when `file` is elsewhere.
fn service_hint(file: &Path) -> String {
    if in_service_key_dir(file) {
        format!("; lootsync.service passes the files in {SERVICE_KEY_DIR}/ to the daemon as credentials")
    } else {
        format!(
            "; for the systemd unit, keep it in {SERVICE_KEY_DIR}/ (root-owned, mode 0600), \
             which lootsync.service passes to the daemon as credentials"
        )
    }
}

/// Plans roster changes signed by the root key (from `--root-key` or
/// `security.root_key_file`) and appends them through the daemon, or offline. A removal, and
/// an add that replaces an officer's key, revoke the old key: see [`plan::officer_change`].
pub fn change(config: &Config, command: OfficerCommand) -> Result<()> {
    let (root_key, name) = match &command {
        OfficerCommand::Add { name, root_key, .. }
        | OfficerCommand::Remove { name, root_key, .. } => {
            (root_key.clone(), name.trim().to_string())
        }
        OfficerCommand::List { json } => return list(config, *json),
    };
    let Some(root_path) = root_key.or_else(|| config.security.root_key_file.clone()) else {
        bail!("officer changes are signed by the group's root key: pass --root-key FILE or set security.root_key_file");
    };
    let root = load_signing_key(&root_path, loot_sync::store::keyfile::KeyKind::Root)
        .context("cannot load the root key")?;
    if config
        .root_public_key()
        .is_some_and(|configured| configured != root.public())
    {
        bail!(
            "{} is not the root key configured in security.root_public_key; peers would ignore this change",
            root_path.display()
        );
    }
    let view = roster_view(config, &name, root.public())?;
    let change = match command {
        OfficerCommand::Add { public_key, .. } => OfficerChange::Add {
            public_key: public_key
                .parse()
                .with_context(|| format!("PUBKEY {public_key:?}"))?,
        },
        OfficerCommand::Remove { revoke_all, .. } => OfficerChange::Remove { revoke_all },
        OfficerCommand::List { .. } => unreachable!("answered above"),
    };
    let first_at = Hlc::new(ops::system_unix_ms(), 0);
    let entries = match plan::officer_change(
        &view,
        &name,
        change,
        &root,
        first_at,
        &mut SeededRng::new(rng_seed_from_os()),
    ) {
        Ok(entries) => entries,
        Err(PlanRefusal::AlreadyOfficer { officer }) => {
            println!("{officer} is already an officer with this key; nothing to do");
            return Ok(());
        }
        Err(PlanRefusal::InvalidName(err)) => {
            bail!("invalid officer name: {}", as_name_argument(err))
        }
        Err(refusal) => return Err(refusal.into()),
    };
    for entry in entries {
        request(
            config,
            Append {
                entry: Box::new(entry.clone()),
            },
        )?;
        println!(
            "{}: {} [{}]",
            terminal_safe(&entry.reason),
            terminal_safe(&entry.target),
            entry.id
        );
    }
    Ok(())
}

/// The entry rule's complaint about the officer's name, naming the argument (`NAME`) the
/// user typed rather than the entry field it went into.
fn as_name_argument(err: EntryError) -> EntryError {
    let rename = |field: &'static str| if field == "target" { "NAME" } else { field };
    match err {
        EntryError::EmptyName { field } => EntryError::EmptyName {
            field: rename(field),
        },
        EntryError::TooLong { field, len, max } => EntryError::TooLong {
            field: rename(field),
            len,
            max,
        },
        EntryError::Padded { field } => EntryError::Padded {
            field: rename(field),
        },
        EntryError::ControlChars { field } => EntryError::ControlChars {
            field: rename(field),
        },
        other => other,
    }
}

/// What the planner needs to know about officer `name`, judged under `root` (the key that
/// signs the change) by the daemon, or from the log offline: a query whose answer is the
/// officers, the revoked keys and the digests of the entries the name's keys made that
/// count, far less than the whole history. A peer that judges under another root key, or none, refuses
/// it, as it would refuse the change.
fn roster_view(config: &Config, name: &str, root: PublicKey) -> Result<RosterView> {
    let query = RosterQuery {
        name: name.to_string(),
        root_public_key: root,
    };
    match request(config, query) {
        Ok(view) => Ok(view),
        // No log yet (the first `officer add` of a new group): nothing to revoke.
        Err(err) if err.is::<NoLedger>() => Ok(RosterView::default()),
        Err(err) => Err(err),
    }
}

/// The whole log, judged under the group's root key, as this peer holds it (through the
/// daemon, or from the log offline), with its history rows judged once: what `officer
/// list` shows.
struct JudgedLog {
    ledger: Ledger,
    rows: Vec<HistoryRow>,
}

impl JudgedLog {
    fn fetch(config: &Config, root: PublicKey) -> Result<JudgedLog> {
        let rows: Vec<HistoryRow> = match request(config, History { player: None }) {
            Ok(rows) => rows,
            // No log yet: no officers.
            Err(err) if err.is::<NoLedger>() => Vec::new(),
            Err(err) => return Err(err),
        };
        let (mut ledger, _) = Ledger::from_entries(rows.into_iter().map(|row| row.entry));
        ledger.set_root(Some(root));
        let rows = ledger.history(None);
        Ok(JudgedLog { ledger, rows })
    }
}
