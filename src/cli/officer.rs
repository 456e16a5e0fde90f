//! The officer commands: `officer add`/`officer remove` (roster changes signed by the group's
//! root key) and `keygen` (the group, officer and root keys they rely on).

use super::args::{KeyKind, OfficerCommand};
use super::client::{request, NoLedger};
use anyhow::{anyhow, bail, Context, Result};
use loot_sync::config::Config;
use loot_sync::control::{Append, History};
use loot_sync::node as ops;
use std::path::Path;

/// Writes a new secret key of `kind` to `file` and prints what the user needs of it.
pub fn keygen(kind: KeyKind, file: &Path) -> Result<()> {
    if let KeyKind::Group = kind {
        let id = loot_sync::proto::seal::generate_key_file(file)?;
        println!(
            "wrote group key {id} to {} (mode 0600); copy it to every member and set \
             [security] group_key_file",
            file.display()
        );
        return Ok(());
    }
    let stored_as = match kind {
        KeyKind::Root => loot_sync::store::keyfile::KeyKind::Root,
        _ => loot_sync::store::keyfile::KeyKind::Officer,
    };
    let key = loot_sync::proto::signature::SecretKey::create_file(file, stored_as)?;
    eprintln!(
        "wrote {} key {} (mode 0600); its public key:",
        match kind {
            KeyKind::Root => "root",
            _ => "officer",
        },
        file.display()
    );
    println!("{}", key.public());
    Ok(())
}

/// Builds roster changes signed by the root key (from `--root-key` or
/// `security.root_key_file`) and appends them through the daemon, or offline. A removal, and
/// an add that replaces an officer's key, revoke the old key: see [`revocation`].
pub fn change(config: &Config, command: OfficerCommand) -> Result<()> {
    use loot_sync::proto::entry::EntryKind;
    let (root_key, name) = match &command {
        OfficerCommand::Add { name, root_key, .. }
        | OfficerCommand::Remove { name, root_key, .. } => {
            (root_key.clone(), name.trim().to_string())
        }
    };
    let Some(root_path) = root_key.or_else(|| config.security.root_key_file.clone()) else {
        bail!("officer changes are signed by the group's root key: pass --root-key FILE or set security.root_key_file");
    };
    let root = loot_sync::proto::signature::SecretKey::load(
        &root_path,
        loot_sync::store::keyfile::KeyKind::Root,
    )
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
    let (ledger, rows) = roster_ledger(config, root.public())?;
    let mut changes: Vec<(EntryKind, String)> = Vec::new();
    match command {
        OfficerCommand::Add { public_key, .. } => {
            let public_key: loot_sync::proto::signature::PublicKey = public_key
                .parse()
                .with_context(|| format!("PUBKEY {public_key:?}"))?;
            if public_key == root.public() {
                bail!("{public_key} is the group's root key, not an officer key (an officer's key comes from `lootsync keygen officer` on their machine)");
            }
            if ledger.is_revoked(&public_key) {
                bail!(
                    "key {public_key} is revoked for good; make a new one with `lootsync keygen officer`"
                );
            }
            let same_name = |officer: &String| officer.to_lowercase() == name.to_lowercase();
            if let Some((officer, _)) = ledger
                .officers()
                .into_iter()
                .find(|(officer, key)| same_name(officer) && *key == public_key)
            {
                println!("{officer} is already an officer with this key; nothing to do");
                return Ok(());
            }
            // Replacing a key revokes every earlier one of the name, or their holders could
            // still sign entries dated while those keys were valid.
            for old in keys_of(&ledger, &rows, &name) {
                if old != public_key {
                    changes.extend(revocation(&rows, &name, old, false, "key replaced")?);
                }
            }
            changes.push((EntryKind::OfficerAdd { public_key }, "officer added".into()));
        }
        OfficerCommand::Remove { revoke_all, .. } => {
            let keys = keys_of(&ledger, &rows, &name);
            if keys.is_empty() {
                bail!("{name} is not an officer in this peer's log (see `lootsync history`)");
            }
            for key in keys {
                changes.extend(revocation(
                    &rows,
                    &name,
                    key,
                    revoke_all,
                    "officer removed",
                )?);
            }
        }
    }
    let first = loot_sync::proto::entry::Hlc::new(ops::system_unix_ms(), 0);
    for (n, (kind, reason)) in changes.into_iter().enumerate() {
        let mut random = [0u8; 10];
        getrandom::fill(&mut random).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
        let at = loot_sync::proto::entry::Hlc(first.0.saturating_add(n as u64));
        let mut entry = loot_sync::proto::entry::Entry {
            id: loot_sync::proto::entry::new_entry_id(at.unix_ms(), random),
            at,
            actor: "root".into(),
            target: name.clone(),
            delta: 0,
            new_total: 0,
            reason,
            kind,
            seal: None,
        };
        entry.validate().map_err(|e| {
            anyhow!(
                "invalid officer name: {}",
                e.to_string().replace("target", "NAME")
            )
        })?;
        root.sign(&mut entry);
        request(
            config,
            Append {
                entry: Box::new(entry.clone()),
            },
        )?;
        println!("{}: {} [{}]", entry.reason, entry.target, entry.id);
    }
    Ok(())
}

/// The whole log, judged under `root`, as this peer holds it (through the daemon, or from
/// the log offline), and its history rows (judged once, for every question asked of them).
fn roster_ledger(
    config: &Config,
    root: loot_sync::proto::signature::PublicKey,
) -> Result<(
    loot_sync::core::ledger::Ledger,
    Vec<loot_sync::core::ledger::HistoryRow>,
)> {
    let rows: Vec<loot_sync::core::ledger::HistoryRow> =
        match request(config, History { player: None }) {
            Ok(rows) => rows,
            // No log yet (the first `officer add` of a new group): nothing to revoke.
            Err(err) if err.is::<NoLedger>() => Vec::new(),
            Err(err) => return Err(err),
        };
    let (mut ledger, _) =
        loot_sync::core::ledger::Ledger::from_entries(rows.into_iter().map(|row| row.entry));
    ledger.set_root(Some(root));
    let rows = ledger.history(None);
    Ok((ledger, rows))
}

/// Every key `name` (in any letter case, as the impersonation rule compares names) was ever
/// made an officer with and that is not revoked yet.
fn keys_of(
    ledger: &loot_sync::core::ledger::Ledger,
    rows: &[loot_sync::core::ledger::HistoryRow],
    name: &str,
) -> Vec<loot_sync::proto::signature::PublicKey> {
    let name = name.to_lowercase();
    let mut keys: Vec<loot_sync::proto::signature::PublicKey> = rows
        .iter()
        .filter_map(|row| match row.entry.kind {
            loot_sync::proto::entry::EntryKind::OfficerAdd { public_key }
                if row.entry.target.to_lowercase() == name && row.rejected.is_none() =>
            {
                Some(public_key)
            }
            _ => None,
        })
        .filter(|key| !ledger.is_revoked(key))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The parts of a revocation of `key` (officer `name`): the digests of its entries that
/// count on this peer now (none with `revoke_all`), [`MAX_KEEP`] per part. Nothing takes
/// effect until every part is in the log, so an interrupted run can simply be repeated.
///
/// [`MAX_KEEP`]: loot_sync::proto::entry::MAX_KEEP
fn revocation(
    rows: &[loot_sync::core::ledger::HistoryRow],
    name: &str,
    key: loot_sync::proto::signature::PublicKey,
    revoke_all: bool,
    why: &str,
) -> Result<Vec<(loot_sync::proto::entry::EntryKind, String)>> {
    use loot_sync::proto::entry::{EntryKind, MAX_KEEP, MAX_REVOKE_PARTS};
    let counted: Vec<loot_sync::proto::entry::Digest> = rows
        .iter()
        .filter(|row| {
            row.rejected.is_none()
                && row.entry.kind == EntryKind::Points
                && row.entry.seal.is_some_and(|seal| seal.signer == key)
        })
        .map(|row| row.entry.digest())
        .collect();
    let kept = match revoke_all {
        true => Vec::new(),
        false => counted.clone(),
    };
    let chunks: Vec<&[loot_sync::proto::entry::Digest]> = match kept.is_empty() {
        true => vec![&[]],
        false => kept.chunks(MAX_KEEP).collect(),
    };
    let parts = u16::try_from(chunks.len()).ok().ok_or_else(|| {
        anyhow!(
            "{name}'s key signed {} entries that count; one revocation keeps at most {}",
            kept.len(),
            MAX_KEEP * usize::from(MAX_REVOKE_PARTS)
        )
    })?;
    let mut batch = [0u8; 8];
    getrandom::fill(&mut batch).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(part, keep)| {
            let kind = EntryKind::OfficerRevoke {
                public_key: key,
                batch,
                part: part as u16,
                parts,
                keep: keep.to_vec(),
            };
            let reason = format!(
                "{why}, key revoked (part {}/{parts}: {} of {} entries kept)",
                part + 1,
                keep.len(),
                counted.len()
            );
            (kind, reason)
        })
        .collect())
}
