//! Planning an officer's multi-entry changes (award, decay, import, revert) against the
//! ledger as this peer holds it: which players, by how much, under which spelling, or which
//! item is wrong. Pure: the caller makes, signs and writes the entries as one batch, so a
//! plan that fails writes nothing.

use crate::core::ledger::revert::{revert_reason, REVERT_LINK_BYTES};
use crate::core::ledger::{HistoryRow, Ledger};
use crate::proto::digest::{Digest, Key};
use crate::proto::entry::MAX_REASON_BYTES;
use crate::proto::entry::{Entry, EntryError, EntryKind, MAX_ABS_DELTA, MAX_NAME_BYTES};
use crate::proto::hlc::Hlc;
use crate::proto::text::{clean_new_text, looks_alike, name_key, terminal_safe};
use std::collections::HashMap;
use thiserror::Error;

/// Hundredths of a percent in 100 %: decay percentages are exact to two decimals.
pub const HUNDREDTHS_IN_WHOLE: u32 = 10_000;
/// Shortest id or digest prefix `revert` accepts, so a typo does not pick an entry at random.
pub const MIN_SELECTOR_LEN: usize = 4;

/// One entry a batch will write: the player (as spelled in the ledger when they exist), their
/// total before, and the delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedChange {
    /// The player, in the ledger's spelling (or as given, NFC and trimmed, when new).
    pub player: String,
    /// Their total on this peer before the batch.
    pub before: i64,
    /// Points the entry adds.
    pub delta: i64,
}

/// A planned batch: its entries and what the officer should be told about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One change per player, in the order given (decay: by name).
    pub changes: Vec<PlannedChange>,
    /// Notes: a name matched an existing player spelled differently, or a new player's
    /// name looks like an existing one's.
    pub warnings: Vec<String>,
}

/// Why a batch is refused as a whole. Items are numbered from 1 in the order given.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// A player name breaks the rules for new names.
    #[error("item {item} ({}): {}", quoted(.name), player_words(.error))]
    BadName {
        /// Its position.
        item: usize,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        error: EntryError,
    },
    /// Two items name the same player (in any case or Unicode form).
    #[error(
        "item {item} ({}) names the same player as item {first}: each player at most once",
        quoted(.name)
    )]
    Duplicate {
        /// The later position.
        item: usize,
        /// The earlier position.
        first: usize,
        /// The name as given at `item`.
        name: String,
    },
    /// No players.
    #[error("no players given")]
    NoPlayers,
    /// A delta of zero or beyond the entry limit.
    #[error("{}", DeltaOutOfRange(*.0))]
    BadDelta(i64),
    /// A change one entry cannot carry (import to a balance too far from the current one,
    /// decay of a huge total).
    #[error("item {item} ({}): a change of {delta} is beyond one entry's limit of {MAX_ABS_DELTA}", quoted(.name))]
    TooLarge {
        /// Its position.
        item: usize,
        /// The player.
        name: String,
        /// The change needed.
        delta: i128,
    },
    /// A decay percentage outside (0, 100].
    #[error("the percentage must be more than 0 and at most 100, with at most two decimals")]
    BadPercent,
    /// The reason breaks the rules for new text.
    #[error("invalid reason: {0}")]
    BadReason(EntryError),
}

/// The one message for a delta out of range, used by the command line's parser and by
/// every command that plans entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{}", EntryError::BadDelta { delta: *.0 })]
pub struct DeltaOutOfRange(pub i64);

/// Checks a delta for one entry.
pub fn check_delta(delta: i64) -> Result<i64, DeltaOutOfRange> {
    if delta == 0 || delta.unsigned_abs() > MAX_ABS_DELTA as u64 {
        return Err(DeltaOutOfRange(delta));
    }
    Ok(delta)
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", terminal_safe(name))
}

/// An entry error in the words of the batch commands (`player`, not `target`).
fn player_words(err: &EntryError) -> String {
    match err {
        EntryError::EmptyName { .. } => "the player name must not be empty".into(),
        EntryError::TooLong { len, max, .. } => {
            format!("the player name is {len} bytes; the limit is {max}")
        }
        EntryError::ControlChars { .. } => "the player name contains control or invisible \
                                            characters"
            .into(),
        other => other.to_string(),
    }
}

/// Cleans a reason for a new entry (NFC, trimmed, no control or invisible characters,
/// bounded); `room` is the bytes it may use.
pub fn clean_reason(reason: &str, room: usize) -> Result<String, BatchError> {
    clean_new_text("reason", reason, room, true).map_err(BatchError::BadReason)
}

/// Resolves the players of a batch: each name cleaned, matched to an existing player in any
/// case or Unicode form, each player at most once; notes for spellings matched and
/// look-alikes created.
fn resolve_players<'a>(
    ledger: &Ledger,
    names: impl Iterator<Item = &'a str>,
) -> Result<(Vec<String>, Vec<String>), BatchError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut players = Vec::new();
    let mut warnings = Vec::new();
    for (i, name) in names.enumerate() {
        let item = i + 1;
        let clean = clean_new_text("player", name, MAX_NAME_BYTES, true).map_err(|error| {
            BatchError::BadName {
                item,
                name: name.to_string(),
                error,
            }
        })?;
        if let Some(&first) = seen.get(&name_key(&clean)) {
            return Err(BatchError::Duplicate {
                item,
                first,
                name: name.to_string(),
            });
        }
        seen.insert(name_key(&clean), item);
        let (player, warning) = resolve_one(ledger, clean);
        warnings.extend(warning);
        players.push(player);
    }
    Ok((players, warnings))
}

/// One player name, cleaned: the ledger's spelling when the player exists, with a note when
/// the spelling differed or when a new player looks like an existing one.
pub fn resolve_one(ledger: &Ledger, clean: String) -> (String, Option<String>) {
    if let Some(existing) = ledger.resolve_player(&clean) {
        let note = (existing != clean).then(|| {
            format!(
                "{} is the existing player {} (names match in any letter case)",
                quoted(&clean),
                quoted(&existing)
            )
        });
        return (existing, note);
    }
    let alike = ledger
        .totals()
        .keys()
        .find(|existing| looks_alike(existing, &clean));
    let note = alike.map(|existing| {
        format!(
            "warning: new player {} looks like the existing player {}; check the spelling",
            quoted(&clean),
            quoted(existing)
        )
    });
    (clean, note)
}

/// `award`: the same `delta` for every player in `names`.
pub fn plan_award(ledger: &Ledger, names: &[String], delta: i64) -> Result<Plan, BatchError> {
    check_delta(delta).map_err(|err| BatchError::BadDelta(err.0))?;
    if names.is_empty() {
        return Err(BatchError::NoPlayers);
    }
    let (players, warnings) = resolve_players(ledger, names.iter().map(String::as_str))?;
    let changes = players
        .into_iter()
        .map(|player| PlannedChange {
            before: ledger.total(&player),
            player,
            delta,
        })
        .collect();
    Ok(Plan { changes, warnings })
}

/// Parses a percentage with at most two decimals (`10`, `2.5`, `12.75`) into hundredths of
/// a percent, more than 0 and at most 100 %.
pub fn parse_percent(text: &str) -> Result<u32, BatchError> {
    let text = text.trim();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f) || f.len() > 2) {
        return Err(BatchError::BadPercent);
    }
    let whole: u32 = whole.parse().map_err(|_| BatchError::BadPercent)?;
    let fraction: u32 = format!("{:0<2}", fraction.unwrap_or(""))
        .parse()
        .map_err(|_| BatchError::BadPercent)?;
    let hundredths = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(fraction))
        .ok_or(BatchError::BadPercent)?;
    check_percent(hundredths)
}

/// Checks a decay percentage in hundredths: more than 0, at most 100 %.
pub fn check_percent(hundredths: u32) -> Result<u32, BatchError> {
    if hundredths == 0 || hundredths > HUNDREDTHS_IN_WHOLE {
        return Err(BatchError::BadPercent);
    }
    Ok(hundredths)
}

/// The decay of one total: `-(total × percent / 100)`, truncated toward zero, so a
/// positive total shrinks, a negative one grows back toward zero, and no total crosses it.
pub fn decay_delta(total: i64, hundredths: u32) -> i64 {
    let decay = i128::from(total) * i128::from(hundredths) / i128::from(HUNDREDTHS_IN_WHOLE);
    // |decay| <= |total|, so it fits an i64.
    -(decay as i64)
}

/// `decay`: one entry per player whose total is not zero and whose decay is not zero, in
/// name order.
pub fn plan_decay(ledger: &Ledger, hundredths: u32) -> Result<Plan, BatchError> {
    check_percent(hundredths)?;
    let mut changes = Vec::new();
    for (i, (player, &total)) in ledger.totals().iter().enumerate() {
        let delta = decay_delta(total, hundredths);
        if delta == 0 {
            continue;
        }
        if check_delta(delta).is_err() {
            return Err(BatchError::TooLarge {
                item: i + 1,
                name: player.clone(),
                delta: delta.into(),
            });
        }
        changes.push(PlannedChange {
            player: player.clone(),
            before: total,
            delta,
        });
    }
    Ok(Plan {
        changes,
        warnings: Vec::new(),
    })
}

/// `import`: for each `(player, balance)`, the entry that makes the player's total equal
/// `balance` (none when it already does). Players not named keep their totals.
pub fn plan_import(ledger: &Ledger, balances: &[(String, i64)]) -> Result<Plan, BatchError> {
    if balances.is_empty() {
        return Err(BatchError::NoPlayers);
    }
    let (players, warnings) = resolve_players(ledger, balances.iter().map(|(n, _)| n.as_str()))?;
    let mut changes = Vec::new();
    for (i, (player, (_, balance))) in players.into_iter().zip(balances).enumerate() {
        let before = ledger.total(&player);
        let delta = i128::from(*balance) - i128::from(before);
        if delta == 0 {
            continue;
        }
        let fits = i64::try_from(delta).ok().and_then(|d| check_delta(d).ok());
        let Some(delta) = fits else {
            return Err(BatchError::TooLarge {
                item: i + 1,
                name: player,
                delta,
            });
        };
        changes.push(PlannedChange {
            player,
            before,
            delta,
        });
    }
    Ok(Plan { changes, warnings })
}

/// Why `revert` refuses.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RevertRefusal {
    /// The selector is too short or not hex.
    #[error(
        "name the entry by its id or digest (at least {MIN_SELECTOR_LEN} hex digits, as \
         `lootsync history` shows it)"
    )]
    BadSelector,
    /// No entry matches.
    #[error("no entry has an id or digest starting with {0:?}")]
    NotFound(String),
    /// Several entries match.
    #[error("{selector:?} matches {count} entries (digests {}); give more digits", .candidates.join(", "))]
    Ambiguous {
        /// What was given.
        selector: String,
        /// How many entries match.
        count: usize,
        /// The first few matches' digests.
        candidates: Vec<String>,
    },
    /// The entry is an officer roster change.
    #[error(
        "entry {0} is an officer roster change, not points: change the roster with \
         `lootsync officer add` or `lootsync officer remove`"
    )]
    RosterChange(String),
    /// The entry counts for nothing.
    #[error("entry {digest} counts for nothing ({why}): there is nothing to revert")]
    CountsForNothing {
        /// The entry's digest.
        digest: String,
        /// Why it does not count.
        why: String,
    },
    /// A revert of the entry already counts.
    #[error("entry {digest} is already reverted by entry {by}")]
    AlreadyReverted {
        /// The entry's digest.
        digest: String,
        /// The revert's digest.
        by: String,
    },
    /// The officer's words break the rules for reasons.
    #[error("invalid reason: {0}")]
    BadReason(EntryError),
}

/// What `revert` writes: one entry for `change`, with `reason` linking it to `reverts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevertPlan {
    /// The reversing change: the same player, the opposite delta.
    pub change: PlannedChange,
    /// The reverted entry's digest.
    pub reverts: Digest,
    /// The revert's reason: the link, then the officer's words.
    pub reason: String,
    /// The reverted entry, for the officer's confirmation.
    pub original: Entry,
}

/// The entry `selector` names: a prefix of its digest (as `history` shows it) or of its id
/// (with or without hyphens), matching exactly one entry.
///
/// Digests are in the index, so matching them reads no entry body. Ids are UUID v7, whose
/// first 12 hex digits are the millisecond their entry was stamped at: only the entries
/// stamped in the window an id prefix allows are read back, so naming an entry by its id
/// costs about one read, not a scan of the log. (An entry whose id does not carry its stamp,
/// such as one upgraded from a version 1 log, is named by its digest.)
pub fn find_entry(ledger: &Ledger, selector: &str) -> Result<Entry, RevertRefusal> {
    let wanted = selector.trim().to_ascii_lowercase();
    let plain: String = wanted.chars().filter(|c| *c != '-').collect();
    if plain.len() < MIN_SELECTOR_LEN || !plain.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RevertRefusal::BadSelector);
    }
    let mut found: Vec<Key> = ledger
        .range_keys(Key::MIN, Key::MAX)
        .filter(|key| key.digest.to_hex().starts_with(&plain))
        .collect();
    let (first_ms, last_ms) = id_time_window(&plain);
    let lower = Key {
        at: Hlc::new(first_ms, 0),
        digest: Digest([0; 16]),
    };
    let upper = match last_ms.checked_add(1) {
        // Stamps hold 48 bits of milliseconds; past the last one, the range is open.
        Some(after) if after < 1 << 48 => Key {
            at: Hlc::new(after, 0),
            digest: Digest([0; 16]),
        },
        _ => Key::MAX,
    };
    for e in ledger.range(lower, upper) {
        if e.id.simple().to_string().starts_with(&plain) && !found.contains(&e.key()) {
            found.push(e.key());
        }
    }
    match found.as_slice() {
        [] => Err(RevertRefusal::NotFound(selector.trim().to_string())),
        [key] => ledger
            .get(&key.digest)
            .ok_or_else(|| RevertRefusal::NotFound(selector.trim().to_string())),
        many => Err(RevertRefusal::Ambiguous {
            selector: selector.trim().to_string(),
            count: many.len(),
            candidates: many.iter().take(5).map(|k| k.digest.to_hex()).collect(),
        }),
    }
}

/// The milliseconds (first, last) an id starting with the hex digits `plain` can carry: its
/// first 12 hex digits are a UUID v7's 48-bit millisecond stamp.
fn id_time_window(plain: &str) -> (u64, u64) {
    let digits = plain.len().min(12);
    let prefix = u64::from_str_radix(&plain[..digits], 16).unwrap_or(0);
    let free_bits = 4 * (12 - digits) as u32;
    let first = prefix << free_bits;
    (first, first | ((1u64 << free_bits) - 1))
}

/// `revert`: the entry undoing the one `selector` names, judged on `rows` (the history of
/// that entry's player, as [`Ledger::history`] gives it).
pub fn plan_revert(
    original: Entry,
    rows: &[HistoryRow],
    words: &str,
) -> Result<RevertPlan, RevertRefusal> {
    let digest = original.digest();
    if original.kind != EntryKind::Points {
        return Err(RevertRefusal::RosterChange(digest.to_hex()));
    }
    let row = rows.iter().find(|row| row.entry.digest() == digest);
    if let Some(why) = row.and_then(|row| row.rejected.clone()) {
        return Err(RevertRefusal::CountsForNothing {
            digest: digest.to_hex(),
            why,
        });
    }
    if let Some(by) = row.and_then(|row| row.reverted_by.clone()) {
        return Err(RevertRefusal::AlreadyReverted {
            digest: digest.to_hex(),
            by,
        });
    }
    let words = clean_new_text("reason", words, MAX_REASON_BYTES - REVERT_LINK_BYTES, false)
        .map_err(RevertRefusal::BadReason)?;
    let before = rows.last().map_or(0, |row| row.total);
    Ok(RevertPlan {
        change: PlannedChange {
            player: original.target.clone(),
            before,
            delta: original.delta.wrapping_neg(),
        },
        reverts: digest,
        reason: revert_reason(digest, &words),
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::EntryBuilder;

    fn entry(ms: u64, seed: u8, target: &str, delta: i64) -> Entry {
        EntryBuilder::at_ms(1_700_000_000_000 + ms)
            .id_random([seed; 10])
            .target(target)
            .delta(delta)
            .build()
    }

    fn ledger(entries: Vec<Entry>) -> Ledger {
        Ledger::from_entries(entries).0
    }

    #[test]
    fn decay_truncates_toward_zero_skips_zeros_and_shrinks_negative_totals() {
        assert_eq!(decay_delta(15, 1000), -1, "1.5 truncates to 1");
        assert_eq!(
            decay_delta(-15, 1000),
            1,
            "-1.5 truncates to -1: back toward zero"
        );
        assert_eq!(decay_delta(9, 1000), 0);
        assert_eq!(decay_delta(100, 250), -2, "2.5 % of 100");
        assert_eq!(decay_delta(100, 10_000), -100);
        assert_eq!(decay_delta(i64::MAX, 10_000), -i64::MAX);
        let l = ledger(vec![
            entry(1, 1, "Ann", 100),
            entry(2, 2, "Bo", -15),
            entry(3, 3, "Cy", 9),
            entry(4, 4, "Di", 5),
            entry(5, 5, "Di", -5),
        ]);
        let plan = plan_decay(&l, 1000).unwrap();
        let got: Vec<(&str, i64, i64)> = plan
            .changes
            .iter()
            .map(|c| (c.player.as_str(), c.before, c.delta))
            .collect();
        // Cy's 0.9 truncates to nothing and Di is at zero: no entries for them.
        assert_eq!(got, vec![("Ann", 100, -10), ("Bo", -15, 1)]);
        assert_eq!(plan_decay(&l, 0), Err(BatchError::BadPercent));
        assert_eq!(plan_decay(&l, 10_001), Err(BatchError::BadPercent));
    }

    #[test]
    fn percentages_parse_to_hundredths() {
        assert_eq!(parse_percent("10"), Ok(1000));
        assert_eq!(parse_percent("2.5"), Ok(250));
        assert_eq!(parse_percent("12.75"), Ok(1275));
        assert_eq!(parse_percent("100"), Ok(10_000));
        for bad in [
            "0", "0.00", "100.01", "1.234", "-5", "abc", "", ".5", "5.", "1e2",
        ] {
            assert_eq!(parse_percent(bad), Err(BatchError::BadPercent), "{bad}");
        }
    }

    #[test]
    fn award_is_all_or_nothing_and_names_the_bad_item() {
        let l = ledger(vec![entry(1, 1, "Alice", 10)]);
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let plan = plan_award(&l, &names(&["alice", " Bob "]), 5).unwrap();
        let got: Vec<(&str, i64)> = plan
            .changes
            .iter()
            .map(|c| (c.player.as_str(), c.before))
            .collect();
        assert_eq!(
            got,
            vec![("Alice", 10), ("Bob", 0)],
            "existing spelling kept"
        );
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);

        let err = plan_award(&l, &names(&["Bob", "Ca\u{1b}[2Jrl", "Dee"]), 5).unwrap_err();
        assert!(
            matches!(err, BatchError::BadName { item: 2, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("item 2") && text.contains("\\u{1b}"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "the message itself is terminal-safe"
        );

        assert_eq!(
            plan_award(&l, &names(&["Bob", "BOB"]), 5),
            Err(BatchError::Duplicate {
                item: 2,
                first: 1,
                name: "BOB".into()
            })
        );
        assert_eq!(plan_award(&l, &[], 5), Err(BatchError::NoPlayers));
        assert_eq!(
            plan_award(&l, &names(&["Bob"]), 0),
            Err(BatchError::BadDelta(0))
        );
        // One message for a delta out of range: the entry rule's words everywhere.
        assert_eq!(
            DeltaOutOfRange(0).to_string(),
            EntryError::BadDelta { delta: 0 }.to_string()
        );
        let lookalike = plan_award(&l, &names(&["A\u{406}ice"]), 1).unwrap();
        assert!(
            lookalike.warnings[0].contains("looks like"),
            "{:?}",
            lookalike.warnings
        );
    }

    #[test]
    fn import_writes_the_difference_and_skips_players_already_right() {
        let l = ledger(vec![entry(1, 1, "Ann", 40), entry(2, 2, "Bo", -3)]);
        let plan = plan_import(
            &l,
            &[("Ann".into(), 40), ("bo".into(), 10), ("Cy".into(), -7)],
        )
        .unwrap();
        let got: Vec<(&str, i64)> = plan
            .changes
            .iter()
            .map(|c| (c.player.as_str(), c.delta))
            .collect();
        assert_eq!(got, vec![("Bo", 13), ("Cy", -7)]);
        let err = plan_import(&l, &[("Ann".into(), 0), ("Zed".into(), i64::MAX)]).unwrap_err();
        assert!(
            matches!(err, BatchError::TooLarge { item: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn revert_rules() {
        let original = entry(1, 1, "Bob", 30);
        let other = entry(2, 2, "Bob", 7);
        let l = ledger(vec![original.clone(), other.clone()]);
        let digest = original.digest().to_hex();
        let found = find_entry(&l, &digest[..8]).unwrap();
        assert_eq!(found, original);
        let by_id = find_entry(&l, &original.id.to_string()).unwrap();
        assert_eq!(by_id, original);
        assert_eq!(find_entry(&l, "ab"), Err(RevertRefusal::BadSelector));
        assert_eq!(find_entry(&l, "zzzz"), Err(RevertRefusal::BadSelector));

        let plan = plan_revert(found, &l.history(Some("Bob")), "typo").unwrap();
        assert_eq!(plan.change.delta, -30);
        assert_eq!(plan.change.before, 37);
        assert!(plan.reason.ends_with(": typo"));

        // Twice: refused once the first revert is in the log.
        let mut revert = entry(3, 3, "Bob", -30);
        revert.reason = plan.reason.clone();
        let l = ledger(vec![original.clone(), other.clone(), revert.clone()]);
        let again = plan_revert(original.clone(), &l.history(Some("Bob")), "");
        assert_eq!(
            again,
            Err(RevertRefusal::AlreadyReverted {
                digest: digest.clone(),
                by: revert.digest().to_hex()
            })
        );

        // A roster entry: refused, pointing to `officer`.
        let mut roster = entry(4, 4, "alice", 0);
        roster.kind = EntryKind::OfficerRemove;
        roster.new_total = 0;
        let refused = plan_revert(roster, &[], "").unwrap_err();
        assert!(
            refused.to_string().contains("lootsync officer"),
            "{refused}"
        );
    }

    #[test]
    fn id_prefixes_give_the_window_of_stamps_they_allow() {
        assert_eq!(
            id_time_window("0190abcd1234"),
            (0x0190_abcd_1234, 0x0190_abcd_1234)
        );
        assert_eq!(
            id_time_window("0190abcd1234ffff"),
            (0x0190_abcd_1234, 0x0190_abcd_1234)
        );
        assert_eq!(id_time_window("0190"), (0x0190 << 32, (0x0191 << 32) - 1));
        assert_eq!(id_time_window("ffff"), (0xffff << 32, (1 << 48) - 1));
        // An entry stamped at the very end of time is still found by its id.
        let late = EntryBuilder::at_ms((1 << 48) - 1)
            .id_random([3; 10])
            .target("Z")
            .delta(1)
            .build();
        let l = ledger(vec![late.clone()]);
        assert_eq!(find_entry(&l, &late.id.to_string()), Ok(late));
    }

    #[test]
    fn an_ambiguous_prefix_is_refused_with_the_candidates() {
        // Ids are UUID v7: entries made within the same few seconds share their first
        // eight hex digits (the top of the millisecond clock).
        let (a, b) = (entry(1, 1, "Ann", 1), entry(2, 2, "Bo", 2));
        let l = ledger(vec![a.clone(), b.clone()]);
        let shared = a.id.simple().to_string()[..8].to_string();
        assert!(b.id.simple().to_string().starts_with(&shared));
        match find_entry(&l, &shared) {
            Err(RevertRefusal::Ambiguous {
                count, candidates, ..
            }) => {
                assert_eq!(count, 2);
                assert!(candidates.contains(&a.digest().to_hex()));
                assert!(candidates.contains(&b.digest().to_hex()));
            }
            other => panic!("{other:?}"),
        }
    }
}
