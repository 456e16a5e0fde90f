//! The responder side of a reconciliation. It keeps no state: every answer datagram says
//! which key spans it covers, so a lost datagram is repaired by the requester asking again
//! for the spans nobody answered. Each request gets at most a fixed budget of datagrams back
//! (fewer, and a cookie, for an address that has not proven itself), which paces a large
//! catch-up by the requester's round trips. An answer cut short by that budget hands back
//! the rest of its span split into sub-ranges (with their fingerprints), so the requester
//! can keep several requests in flight over them instead of asking for the rest serially.

use super::{Peer, Tuning};
use crate::core::ledger::Ledger;
use crate::proto::digest::{Digest, Key};
use crate::proto::entry::Entry;
use crate::proto::limits::{MAX_DATAGRAM, MAX_MESSAGE};
use crate::proto::wire::{
    self, Body, EncodedEntries, Mode, NodeId, RangeItem, RangesRequest, RangesResponse, Run,
    SyncResponse, MAX_IDS,
};
use ::core::net::SocketAddr;
use std::collections::HashSet;
use tracing::debug;

impl Peer {
    /// Answers a range request from `sender` at `to`; `proven` when it echoed our cookie.
    pub(super) fn answer(
        &mut self,
        sender: NodeId,
        to: SocketAddr,
        request: RangesRequest,
        proven: bool,
    ) {
        if request.runs.is_empty() && request.want.is_empty() {
            // It asks nothing: it only proved its address (see `unicast`), which admission
            // has noted. Nothing to answer.
            return;
        }
        let tuning = self.cfg.tuning.clone();
        let mut budget = tuning.response_budget;
        let mut cookie = None;
        if !proven {
            // Unproven source (maybe spoofed): at most `amplification_factor` times what it
            // sent, counting every datagram at full size, and hand it a cookie to echo.
            let allowance = self.allowance(to);
            budget = budget.min((allowance / MAX_DATAGRAM as u64) as usize);
            cookie = Some(self.admission.cookie_for(to));
            if budget < tuning.response_budget {
                self.stats.answers_limited += 1;
            }
            if budget == 0 {
                // Not even one full datagram: answer with just the cookie (covers nothing,
                // so the requester asks again, this time proving its address).
                let mut part = ResponseBuilder::blank(request.request_id);
                part.cookie = cookie;
                let body = Body::SyncResponse(SyncResponse::Ranges(part));
                self.send_limited(sender, to, body, allowance);
                return;
            }
        }
        let mut builder = ResponseBuilder::new(request.request_id, budget, tuning.split_parts);
        // Explicit wants first: they are small and the requester is waiting on them.
        for id in &request.want {
            if let Some(entry) = self.ledger.get(id) {
                if !builder.entry(&entry) {
                    break;
                }
            }
        }
        'runs: for run in &request.runs {
            let mut lower = run.lower;
            for item in &run.items {
                if builder.exhausted() {
                    break 'runs;
                }
                let (lo, hi) = (lower, item.upper);
                lower = item.upper;
                answer_range(&self.ledger, &mut builder, lo, hi, &item.mode, &tuning);
            }
        }
        for (mut part, entries) in builder.finish() {
            part.cookie = cookie;
            let Some(bytes) = self.outbox.encode_answer(&mut self.stats, part, &entries) else {
                continue;
            };
            let kind = "SYNC_RESPONSE";
            if proven {
                let what = (kind, entries.len());
                self.outbox
                    .send_encoded_to(&mut self.stats, &self.peers, sender, to, what, bytes);
            } else {
                let allowance = self.allowance(to);
                self.send_limited_encoded(sender, to, kind, bytes, allowance);
            }
        }
    }
}

/// Answers one range item of a request from `ledger` into `b`.
fn answer_range(
    ledger: &Ledger,
    b: &mut ResponseBuilder,
    lo: Key,
    hi: Key,
    mode: &Mode,
    tuning: &Tuning,
) {
    match mode {
        Mode::Done => {
            b.item(lo, hi, Mode::Done);
        }
        Mode::Fingerprint(theirs) => {
            if theirs.count == 0 {
                // They have nothing here: send everything (as much as the budget allows).
                let rest = b.entries_covering(lo, hi, ledger.range_encoded_where(lo, hi, |_| true));
                if let Some(cut) = rest {
                    b.hand_back(ledger, cut, hi);
                }
                return;
            }
            let mine = ledger.range_fingerprint(lo, hi);
            if mine == *theirs {
                b.item(lo, hi, Mode::Done);
            } else if mine.count as usize <= tuning.id_list_threshold.min(MAX_IDS) {
                let ids = ledger.range_keys(lo, hi).map(|k| k.digest).collect();
                b.item(lo, hi, Mode::Ids(ids));
            } else {
                for (a, c) in ledger.split(lo, hi, tuning.split_parts) {
                    let fp = ledger.range_fingerprint(a, c);
                    if !b.item(a, c, Mode::Fingerprint(fp)) {
                        return;
                    }
                }
            }
        }
        Mode::Ids(listed) => {
            let theirs: HashSet<Digest> = listed.iter().copied().collect();
            // Walk the request's list, not the set: a HashSet's order differs from
            // process to process, which would make the sans-IO core non-deterministic
            // (a simulator seed would not replay).
            let mut asked = HashSet::new();
            for id in listed {
                if !ledger.contains(id) && asked.insert(*id) {
                    b.want(*id);
                }
            }
            let rest = b.entries_covering(
                lo,
                hi,
                ledger.range_encoded_where(lo, hi, |key| !theirs.contains(&key.digest)),
            );
            if let Some(cut) = rest {
                b.hand_back(ledger, cut, hi);
            }
        }
    }
}

/// Packs a response into datagrams that each stand alone, within a datagram budget. The
/// entries of each datagram are kept encoded (stored bodies as the log holds them), to be
/// spliced into its encoding.
struct ResponseBuilder {
    request_id: u64,
    budget: usize,
    full: Vec<(RangesResponse, EncodedEntries)>,
    current: RangesResponse,
    entries: EncodedEntries,
    size: usize,
    exhausted: bool,
    /// Into how many sub-ranges the rest of a span cut short is handed back.
    hand_back_parts: usize,
    /// Room kept free in the last datagram for those sub-ranges.
    hand_back_room: usize,
}

/// Room for a closing `Done` item plus a new run header.
const RESERVE: usize = 64;
/// Payload limit for the variable parts of one response datagram: room for the version
/// byte, the envelope, the cookie (9) and slack, inside the room sealing leaves.
const RESPONSE_LIMIT: usize = MAX_MESSAGE - 1 - 64 - 16 - 9;
/// Most sub-ranges the rest of a cut-short span is handed back in. A few are enough to
/// fill the requester's window (each of their answers hands back more in turn); each costs
/// up to [`largest_item`] bytes of the answer's last datagram.
const MAX_HAND_BACK_PARTS: usize = 8;

/// Encoded size of the largest range item carrying a fingerprint.
fn largest_item() -> usize {
    wire::encoded_len(&RangeItem {
        upper: Key {
            at: crate::proto::hlc::Hlc(u64::MAX),
            digest: Digest([u8::MAX; 16]),
        },
        mode: Mode::Fingerprint(crate::proto::fingerprint::Fingerprint {
            count: u64::MAX,
            sum: u128::MAX,
        }),
    })
}

impl ResponseBuilder {
    /// A builder of at most `budget` datagrams that hands back the rest of a span it cuts
    /// short in up to `split_parts` sub-ranges.
    fn new(request_id: u64, budget: usize, split_parts: usize) -> ResponseBuilder {
        let hand_back_parts = split_parts.clamp(1, MAX_HAND_BACK_PARTS);
        ResponseBuilder {
            request_id,
            budget: budget.max(1),
            full: Vec::new(),
            current: Self::blank(request_id),
            entries: EncodedEntries::default(),
            size: 0,
            exhausted: false,
            hand_back_parts,
            hand_back_room: hand_back_parts * largest_item(),
        }
    }

    fn blank(request_id: u64) -> RangesResponse {
        RangesResponse {
            request_id,
            part: 0,
            parts: 1,
            runs: Vec::new(),
            entries: Vec::new(),
            want: Vec::new(),
            cookie: None,
        }
    }

    fn exhausted(&self) -> bool {
        self.exhausted
    }

    fn fits(&self, bytes: usize) -> bool {
        self.size + bytes <= RESPONSE_LIMIT
    }

    /// Closes the current datagram. Returns false once the budget is spent.
    fn flush(&mut self) -> bool {
        if self.exhausted {
            return false;
        }
        let done = std::mem::replace(&mut self.current, Self::blank(self.request_id));
        let entries = std::mem::take(&mut self.entries);
        self.size = 0;
        self.full.push((done, entries));
        if self.full.len() >= self.budget {
            self.exhausted = true;
            return false;
        }
        true
    }

    fn item_cost(&self, lower: Key, item: &RangeItem) -> (usize, bool) {
        let contiguous = self
            .current
            .runs
            .last()
            .and_then(|r| r.items.last())
            .is_some_and(|last| last.upper == lower);
        let cost = wire::encoded_len(item)
            + if contiguous {
                0
            } else {
                wire::encoded_len(&lower) + 2
            };
        (cost, contiguous)
    }

    fn push_item(&mut self, lower: Key, item: RangeItem, contiguous: bool, cost: usize) {
        self.size += cost;
        match self.current.runs.last_mut() {
            Some(run) if contiguous => run.items.push(item),
            _ => self.current.runs.push(Run {
                lower,
                items: vec![item],
            }),
        }
    }

    /// Adds a range item. Returns false when the budget is spent (the item is not added).
    fn item(&mut self, lower: Key, upper: Key, mode: Mode) -> bool {
        if self.exhausted {
            return false;
        }
        let item = RangeItem { upper, mode };
        let (cost, contiguous) = self.item_cost(lower, &item);
        if !self.fits(cost) {
            if !self.flush() {
                return false;
            }
            let (cost, contiguous) = self.item_cost(lower, &item);
            self.push_item(lower, item, contiguous, cost);
            return true;
        }
        self.push_item(lower, item, contiguous, cost);
        true
    }

    fn want(&mut self, id: Digest) {
        if self.exhausted {
            return;
        }
        if (!self.fits(20) || self.current.want.len() >= MAX_IDS) && !self.flush() {
            return;
        }
        self.size += 17;
        self.current.want.push(id);
    }

    fn entry(&mut self, entry: &Entry) -> bool {
        if self.exhausted {
            return false;
        }
        let cost = wire::encoded_len(entry);
        if !self.fits(cost) && !self.flush() {
            return false;
        }
        if let Err(err) = self.entries.push(entry) {
            // Cannot happen for an entry that decoded; were it to, the span stops short of
            // this entry (never closed past it), so the requester asks for the rest again.
            debug!(target: "sync", "SYNC cannot encode an entry for an answer: {err}");
            return false;
        }
        self.size += cost;
        true
    }

    /// Whether the datagram being filled is the last the budget allows.
    fn on_last_datagram(&self) -> bool {
        self.full.len() + 1 >= self.budget
    }

    /// Sends `entries` (all within `[lo, hi)`, in key order) and marks the span answered.
    /// When a datagram fills, the part answered so far is closed in it, so every datagram
    /// covers exactly the entries it carries. When the budget runs out, returns where the
    /// answered part ends: the last datagram still has room to hand back the rest
    /// ([`Self::hand_back`]); what is not handed back stays unanswered and the requester
    /// asks for it again.
    fn entries_covering(
        &mut self,
        lo: Key,
        hi: Key,
        entries: impl Iterator<Item = (Key, Vec<u8>)>,
    ) -> Option<Key> {
        let mut cursor = lo;
        for (key, encoded) in entries {
            if self.exhausted {
                return None;
            }
            let cost = encoded.len();
            let last = self.on_last_datagram();
            // Only once the last datagram carries an entry, so even an entry too big to
            // share it with the hand-back still goes out alone.
            let keep = if last && !self.entries.is_empty() {
                self.hand_back_room
            } else {
                0
            };
            if !self.fits(cost + RESERVE + keep) {
                if cursor < key {
                    let item = RangeItem {
                        upper: key,
                        mode: Mode::Done,
                    };
                    let (item_cost, contiguous) = self.item_cost(cursor, &item);
                    self.push_item(cursor, item, contiguous, item_cost);
                    cursor = key;
                }
                if last {
                    return Some(cursor);
                }
                self.flush();
            }
            self.size += cost;
            self.entries.push_encoded(&encoded);
        }
        self.item(cursor, hi, Mode::Done);
        None
    }

    /// Closes the answer with the rest `[lo, hi)` of a span it was cut short in, split into
    /// sub-ranges of about equal counts of `ledger`'s entries, each with this side's
    /// fingerprint. The requester asks about them as separate spans, several requests at a
    /// time (a fingerprint is the ordinary answer to a range, so older requesters do the
    /// same). A sub-range that does not fit is left unanswered, to be asked again whole.
    fn hand_back(&mut self, ledger: &Ledger, lo: Key, hi: Key) {
        for (a, c, fingerprint) in ledger.split_fingerprinted(lo, hi, self.hand_back_parts) {
            let item = RangeItem {
                upper: c,
                mode: Mode::Fingerprint(fingerprint),
            };
            let (cost, contiguous) = self.item_cost(a, &item);
            if !self.fits(cost) {
                break;
            }
            self.push_item(a, item, contiguous, cost);
        }
        // The budget is spent: nothing more goes into this answer.
        self.flush();
        self.exhausted = true;
    }

    fn finish(mut self) -> Vec<(RangesResponse, EncodedEntries)> {
        let current = std::mem::replace(&mut self.current, Self::blank(self.request_id));
        let entries = std::mem::take(&mut self.entries);
        let has_content =
            !current.runs.is_empty() || !entries.is_empty() || !current.want.is_empty();
        if (has_content || self.full.is_empty()) && self.full.len() < self.budget {
            self.full.push((current, entries));
        }
        let parts = self.full.len() as u16;
        for (index, (part, _)) in self.full.iter_mut().enumerate() {
            part.part = index as u16;
            part.parts = parts;
        }
        self.full
    }
}
