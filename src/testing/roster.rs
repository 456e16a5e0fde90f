//! The roster view as `officer add`/`officer remove` judged it before they asked the daemon:
//! the reference [`crate::core::ledger::Ledger::roster_view`] is held to.

use crate::core::ledger::{HistoryRow, Ledger};
use crate::core::roster::plan::RosterView;
use crate::proto::entry::EntryKind;
use crate::proto::keys::PublicKey;

/// The view about officer `name` from a whole history (`rows`, as the `history` command
/// answers it): rebuilt into a ledger judged under `root`, its history replayed, and every
/// entry that counts handed to [`RosterView::from_counted`].
pub fn whole_history_view(
    rows: impl IntoIterator<Item = HistoryRow>,
    root: PublicKey,
    name: &str,
) -> RosterView {
    let (mut ledger, _) = Ledger::from_entries(rows.into_iter().map(|row| row.entry));
    ledger.set_root(Some(root));
    let rows = ledger.history(None);
    let revoked = rows
        .iter()
        .filter_map(|row| match row.entry.kind {
            EntryKind::OfficerRevoke { public_key, .. } => Some(public_key),
            _ => None,
        })
        .filter(|key| ledger.is_revoked(key))
        .collect();
    let counted = rows
        .iter()
        .filter(|row| row.rejected.is_none())
        .map(|row| &row.entry);
    RosterView::from_counted(name, counted, ledger.officers(), revoked)
}
