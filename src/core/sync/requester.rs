//! The requester side of a reconciliation: one session with one partner, walking the key
//! space as a queue of spans. Each span is asked about by fingerprint (split when it
//! differs) or, once small, by id list; a window of requests is kept in flight, and the spans
//! a lost or cut-short answer did not cover are asked again.

use super::fanout::Origin;
use super::push::PushVia;
use super::rto::Rto;
use super::{Now, Peer};
use crate::proto::digest::{Digest, Key};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::limits::MAX_MESSAGE;
use crate::proto::wire::{
    self, Body, Envelope, Mode, NodeId, RangeItem, RangesRequest, RangesResponse, Run, SyncRequest,
    MAX_IDS,
};
use ::core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use tracing::{debug, info};

/// How a requester asks about a span it has not resolved yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SpanKind {
    /// Compare the span's fingerprints.
    Fingerprint,
    /// Swap the span's lists of entry digests.
    Ids,
}

/// A part `[lower, upper)` of the key space still to be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) lower: Key,
    pub(super) upper: Key,
    pub(super) kind: SpanKind,
}

/// A request sent and not yet retired, with what its answers covered so far.
#[derive(Debug)]
struct Inflight {
    sent_ms: u64,
    /// When it times out: `sent_ms` plus the timeout when it was sent.
    deadline_ms: u64,
    spans: Vec<Span>,
    want: Vec<Digest>,
    covered: Vec<(Key, Key)>,
    parts_seen: BTreeSet<u16>,
    parts_total: Option<u16>,
}

/// One reconciliation with one chosen partner, driven by us.
#[derive(Debug)]
struct Session {
    partner: NodeId,
    addr: SocketAddr,
    label: String,
    todo: VecDeque<Span>,
    want: BTreeSet<Digest>,
    inflight: BTreeMap<u64, Inflight>,
    /// When the requests that timed out lately were sent, by id: a late answer to one still
    /// measures the round trip and shows the partner is alive (only slow).
    expired: BTreeMap<u64, u64>,
    /// How long to wait for an answer, learnt from this partner's round trips.
    rto: Rto,
    silent_requests: u32,
    started_ms: u64,
    requests: u64,
    received: u64,
    pushed: u64,
    start_fingerprint: Fingerprint,
    /// What the partner lacks also goes to it straight by whisper: our multicast may not
    /// reach it (it is a unicast peer, or its set stayed different: see `partner`).
    direct: bool,
}

/// The session we are running, if any, and the next request id.
#[derive(Debug)]
pub(super) struct Requester {
    session: Option<Session>,
    next_request_id: u64,
}

impl Default for Requester {
    fn default() -> Requester {
        Requester {
            session: None,
            next_request_id: 1,
        }
    }
}

impl Requester {
    /// Whether a session is running.
    pub(super) fn in_session(&self) -> bool {
        self.session.is_some()
    }

    /// The partner of the running session.
    pub(super) fn partner(&self) -> Option<NodeId> {
        self.session.as_ref().map(|s| s.partner)
    }

    /// A request id no request of ours used before.
    pub(super) fn take_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Ends the session without counting it (sync switched off).
    pub(super) fn drop_session(&mut self) {
        self.session = None;
    }

    /// An entry arrived (in an answer or pushed): it is no longer wanted.
    pub(super) fn arrived(&mut self, digest: &Digest) {
        if let Some(session) = self.session.as_mut() {
            session.want.remove(digest);
        }
    }

    /// Where entries queued for pushing now go besides the group (see `push`).
    pub(super) fn push_via(&self) -> PushVia {
        match &self.session {
            Some(s) => PushVia {
                direct: s.direct.then_some((s.partner, s.addr)),
                held_by: Some(s.start_fingerprint),
            },
            None => PushVia::default(),
        }
    }

    /// Counts an entry queued for multicast while the session runs (for its summary line).
    pub(super) fn pushed_one(&mut self) {
        if let Some(session) = self.session.as_mut() {
            session.pushed += 1;
        }
    }

    /// How many requests of the running session are in flight (none without a session).
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.inflight.len())
    }

    /// When the first request in flight times out (monotonic ms).
    pub(super) fn next_timeout(&self) -> Option<u64> {
        self.session.as_ref().and_then(|session| {
            session
                .inflight
                .values()
                .map(|inflight| inflight.deadline_ms)
                .min()
        })
    }
}

impl Peer {
    /// Starts reconciling with `partner` at `addr` over the whole key space; `direct`: what
    /// it lacks also goes to it by whisper.
    pub(super) fn start_session(
        &mut self,
        now: Now,
        partner: NodeId,
        addr: SocketAddr,
        label: String,
        start_fingerprint: Fingerprint,
        direct: bool,
    ) {
        self.stats.sessions_started += 1;
        self.stalemates.forget(partner);
        self.requester.session = Some(Session {
            partner,
            addr,
            label,
            todo: VecDeque::from([Span {
                lower: Key::MIN,
                upper: Key::MAX,
                kind: SpanKind::Fingerprint,
            }]),
            want: BTreeSet::new(),
            inflight: BTreeMap::new(),
            expired: BTreeMap::new(),
            rto: Rto::new(
                self.cfg.tuning.request_timeout_ms,
                self.cfg.tuning.request_timeout_max_ms,
            ),
            silent_requests: 0,
            started_ms: now.mono_ms,
            requests: 0,
            received: 0,
            pushed: 0,
            start_fingerprint,
            direct,
        });
        self.pump(now);
    }

    /// Abandons the running session (counted), saying why in the log.
    pub(super) fn abort_session(&mut self, why: &str) {
        if let Some(session) = self.requester.session.take() {
            self.stats.sessions_aborted += 1;
            info!(target: "sync", "SYNC abandoned reconciliation with {}: {why}", session.label);
        }
    }

    fn range_item_for(&self, span: &Span) -> RangeItem {
        let mode = match span.kind {
            SpanKind::Ids => {
                let ids: Vec<Digest> = self
                    .ledger
                    .range_keys(span.lower, span.upper)
                    .take(MAX_IDS + 1)
                    .map(|key| key.digest)
                    .collect();
                if ids.len() <= self.cfg.tuning.id_list_threshold.min(MAX_IDS) {
                    Mode::Ids(ids)
                } else {
                    // Entries arrived since we chose an id list: compare fingerprints instead.
                    Mode::Fingerprint(self.ledger.range_fingerprint(span.lower, span.upper))
                }
            }
            SpanKind::Fingerprint => {
                if self
                    .ledger
                    .range_keys(span.lower, span.upper)
                    .next()
                    .is_none()
                {
                    Mode::Fingerprint(Fingerprint::default())
                } else {
                    Mode::Fingerprint(self.ledger.range_fingerprint(span.lower, span.upper))
                }
            }
        };
        RangeItem {
            upper: span.upper,
            mode,
        }
    }

    /// Encoded size of a range request carrying nothing, with our group name and the
    /// largest ids, so the request packer never builds a datagram over the limit.
    fn request_overhead(&self) -> usize {
        let empty = Envelope {
            group: self.cfg.group.clone(),
            from: NodeId::MAX,
            whisper_port: u16::MAX,
            body: Body::SyncRequest(SyncRequest::Ranges(RangesRequest {
                request_id: u64::MAX,
                runs: Vec::new(),
                want: Vec::new(),
                cookie: Some([u8::MAX; 8]),
                padding: Vec::new(),
            })),
        };
        wire::encoded_len(&empty)
    }

    /// Sends requests while the window has room and there is something to ask.
    pub(super) fn pump(&mut self, now: Now) {
        loop {
            let Some(session) = self.requester.session.as_ref() else {
                return;
            };
            if session.inflight.len() >= self.cfg.tuning.window.max(1)
                || (session.todo.is_empty() && session.want.is_empty())
            {
                break;
            }
            let (partner, addr) = (session.partner, session.addr);
            // Held to the partner address's 3x allowance until it is proven (see
            // `request_allowance`); `None`: not limited.
            let allowance = self.request_allowance(now, partner, addr);
            // Room left after the version byte and the envelope (which grows with the group
            // name); 4 more bytes for the list lengths, whose varints grow as lists fill.
            let limit = MAX_MESSAGE - 1 - self.request_overhead() - 4;
            // Spread the spans over the free slots of the window, so the partner serves
            // one request while this side merges the answer to another; packing them all
            // into one request would leave the rest of the window idle.
            let free = self.cfg.tuning.window.max(1) - session.inflight.len();
            let span_cap = session.todo.len().div_ceil(free).max(1);
            let mut size = 0;
            let mut spans = Vec::new();
            let mut runs: Vec<Run> = Vec::new();
            while let Some(span) = self
                .requester
                .session
                .as_ref()
                .and_then(|s| s.todo.front().copied())
            {
                let item = self.range_item_for(&span);
                let contiguous = runs
                    .last()
                    .and_then(|r| r.items.last())
                    .is_some_and(|last| last.upper == span.lower);
                let cost = wire::encoded_len(&item)
                    + if contiguous {
                        0
                    } else {
                        wire::encoded_len(&span.lower) + 2
                    };
                if !spans.is_empty() && (size + cost > limit || spans.len() >= span_cap) {
                    break;
                }
                size += cost;
                if let Some(s) = self.requester.session.as_mut() {
                    s.todo.pop_front();
                }
                spans.push(span);
                match runs.last_mut() {
                    Some(run) if contiguous => run.items.push(item),
                    _ => runs.push(Run {
                        lower: span.lower,
                        items: vec![item],
                    }),
                }
            }
            let session = self.requester.session.as_mut().expect("checked above");
            let mut want = Vec::new();
            while want.len() < MAX_IDS && size + 20 <= limit {
                let Some(id) = session.want.pop_first() else {
                    break;
                };
                size += 17;
                want.push(id);
            }
            let request_id = self.requester.next_request_id;
            let cookie = self.admission.cookie_from(addr);
            let mut request = RangesRequest {
                request_id,
                runs,
                want: want.clone(),
                cookie,
                padding: Vec::new(),
            };
            let used = wire::encoded_len(
                &self
                    .outbox
                    .envelope(Body::SyncRequest(SyncRequest::Ranges(request.clone()))),
            );
            let sealed_len = (used + self.outbox.seal_overhead()) as u64;
            if allowance.is_some_and(|allowed| sealed_len > allowed) {
                // The partner's address is unproven and has not sent us enough to pay for
                // even this request: a forged HELLO must not aim a session at a bystander.
                // Some side tries again once the address is proven or has sent more.
                self.stats.requests_withheld += 1;
                self.abort_session("its address is unproven and over the 3x limit");
                // Our cookie may never have reached it: offer it again.
                self.greet_again_if_unproven(now, partner, addr);
                return;
            }
            if cookie.is_none() {
                // Unproven with this partner: fill the datagram (as far as our own allowance
                // for its address goes), so its 3x allowance pays for a first answer of
                // several datagrams (which bring us the cookie).
                let mut fill = (MAX_MESSAGE - 1).saturating_sub(used + 2);
                if let Some(allowed) = allowance {
                    fill = fill.min((allowed - sealed_len).saturating_sub(2) as usize);
                }
                request.padding = vec![0; fill];
            }
            let session = self.requester.session.as_mut().expect("checked above");
            self.requester.next_request_id += 1;
            session.requests += 1;
            session.inflight.insert(
                request_id,
                Inflight {
                    sent_ms: now.mono_ms,
                    deadline_ms: now.mono_ms + session.rto.timeout_ms(),
                    spans,
                    want,
                    covered: Vec::new(),
                    parts_seen: BTreeSet::new(),
                    parts_total: None,
                },
            );
            self.stats.requests_sent += 1;
            let body = Body::SyncRequest(SyncRequest::Ranges(request));
            match allowance {
                Some(allowed) => self.send_limited(partner, addr, body, allowed),
                None => {
                    self.outbox
                        .send_to(&mut self.stats, &self.peers, partner, addr, body);
                }
            }
        }
        self.finish_session_if_done(now);
    }

    /// What our requests to the session partner `partner` at `addr` may still cost, or
    /// `None` when they are not limited. An address we learned from a whisper datagram can
    /// be forged (a member sending a HELLO "from" a bystander), so until it echoed our
    /// cookie it gets at most 3x the bytes it sent us, requests included, like every answer
    /// to it. Listed addresses are the operator's own choice; a peer heard on the group
    /// channel is on our LAN and answers at its advertised whisper port.
    pub(super) fn request_allowance(
        &self,
        now: Now,
        partner: NodeId,
        addr: SocketAddr,
    ) -> Option<u64> {
        let timeout = self.cfg.peer_timeout_ms;
        let trusted = self.unicast.is_listed(addr)
            || self.admission.proven(addr)
            || self
                .peers
                .get(partner)
                .is_some_and(|p| p.heard_on_group(now, timeout));
        (!trusted).then(|| self.allowance(addr))
    }

    fn finish_session_if_done(&mut self, now: Now) {
        let done = self
            .requester
            .session
            .as_ref()
            .is_some_and(|s| s.todo.is_empty() && s.want.is_empty() && s.inflight.is_empty());
        if !done {
            return;
        }
        let Some(session) = self.requester.session.take() else {
            return;
        };
        self.stats.sessions_completed += 1;
        let took_ms = now.mono_ms.saturating_sub(session.started_ms);
        self.stats.catch_up.observe_us(took_ms.saturating_mul(1000));
        info!(
            target: "sync",
            "SYNC reconciled with {} in {} ms: {} requests, {} entries received, {} multicast to the group",
            session.label,
            took_ms,
            session.requests,
            session.received,
            session.pushed
        );
        if session.start_fingerprint != self.ledger.fingerprint() {
            // Tell the group at once, so peers still differing from us can act.
            self.send_hello(now);
        }
    }

    /// Takes in one answer datagram from `sender` at `from`: its entries are merged, the
    /// spans it covers are resolved, split or listed, and what the partner lacks is queued
    /// for multicast.
    pub(super) fn handle_response(
        &mut self,
        now: Now,
        sender: NodeId,
        from: SocketAddr,
        response: RangesResponse,
    ) {
        let origin = Origin {
            node: sender,
            addr: from,
            answer: true,
        };
        let received = self.merge(now, response.entries, origin);
        let Some(session) = self
            .requester
            .session
            .as_mut()
            .filter(|s| s.partner == sender)
        else {
            self.stats.dropped("stale_response");
            return;
        };
        match session.inflight.get(&response.request_id) {
            // The first datagram of an answer measures the round trip.
            Some(inflight) if inflight.parts_seen.is_empty() => {
                session
                    .rto
                    .sample(now.mono_ms.saturating_sub(inflight.sent_ms));
            }
            Some(_) => {}
            None => {
                // An answer to a request that timed out: its spans are asked again already,
                // but it shows how slow the partner is, and that it still answers.
                if let Some(sent_ms) = session.expired.remove(&response.request_id) {
                    session.rto.sample(now.mono_ms.saturating_sub(sent_ms));
                    session.silent_requests = 0;
                }
                self.stats.dropped("stale_response");
                return;
            }
        }
        let mut follow_up: Vec<Span> = Vec::new();
        let mut lacking: Vec<Digest> = Vec::new();
        let mut covered: Vec<(Key, Key)> = Vec::new();
        let tuning = self.cfg.tuning.clone();
        for run in &response.runs {
            let mut lower = run.lower;
            for item in &run.items {
                let (lo, hi) = (lower, item.upper);
                lower = item.upper;
                covered.push((lo, hi));
                match &item.mode {
                    Mode::Done => {}
                    Mode::Fingerprint(theirs) => {
                        let mine = self.ledger.range_fingerprint(lo, hi);
                        if mine == *theirs {
                            continue;
                        }
                        if theirs.count == 0 {
                            self.queue_range_push(lo, hi, &HashSet::new());
                        } else if mine.count as usize <= tuning.id_list_threshold {
                            follow_up.push(Span {
                                lower: lo,
                                upper: hi,
                                kind: SpanKind::Ids,
                            });
                        } else {
                            for (a, b) in self.ledger.split(lo, hi, tuning.split_parts) {
                                follow_up.push(Span {
                                    lower: a,
                                    upper: b,
                                    kind: SpanKind::Fingerprint,
                                });
                            }
                        }
                    }
                    Mode::Ids(theirs) => {
                        let theirs: HashSet<Digest> = theirs.iter().copied().collect();
                        lacking.extend(theirs.iter().filter(|id| !self.ledger.contains(id)));
                        self.queue_range_push(lo, hi, &theirs);
                    }
                }
            }
        }
        for id in &response.want {
            if self.ledger.contains(id) {
                self.queue_push(*id);
            }
        }
        let Some(session) = self.requester.session.as_mut() else {
            return;
        };
        session.received += received as u64;
        session.silent_requests = 0;
        let cap = self.cfg.tuning.max_session_queue.max(1);
        let room = cap.saturating_sub(session.todo.len());
        session.todo.extend(follow_up.into_iter().take(room));
        for id in lacking {
            if session.want.len() >= cap {
                break;
            }
            session.want.insert(id);
        }
        let complete = match session.inflight.get_mut(&response.request_id) {
            Some(inflight) => {
                inflight.covered.extend(covered);
                inflight.parts_seen.insert(response.part);
                inflight.parts_total = Some(response.parts);
                inflight.parts_seen.len() >= response.parts as usize
            }
            None => false,
        };
        if complete {
            self.complete_request(response.request_id);
        }
        if self.push.due(now) {
            self.push_some(now);
        }
        self.pump(now);
    }

    /// Retires a request: spans no datagram answered go back to the front of the queue, and
    /// wanted digests that did not arrive are wanted again.
    fn complete_request(&mut self, request_id: u64) {
        let Some(session) = self.requester.session.as_mut() else {
            return;
        };
        let Some(inflight) = session.inflight.remove(&request_id) else {
            return;
        };
        let uncovered = subtract_spans(&inflight.spans, inflight.covered);
        for span in uncovered.into_iter().rev() {
            session.todo.push_front(span);
        }
        for id in inflight.want {
            if !self.ledger.contains(&id) {
                session.want.insert(id);
            }
        }
    }

    /// Retires the requests that timed out (their unanswered spans are asked again) and
    /// gives the session up after too many went wholly unanswered.
    pub(super) fn expire_requests(&mut self, now: Now) {
        let Some(session) = self.requester.session.as_mut() else {
            return;
        };
        let expired: Vec<(u64, bool)> = session
            .inflight
            .iter()
            .filter(|(_, f)| f.deadline_ms <= now.mono_ms)
            .map(|(id, f)| (*id, f.parts_seen.is_empty()))
            .collect();
        if expired.is_empty() {
            return;
        }
        // Once per round of timeouts, not per request: a window of requests sent together
        // times out together.
        session.rto.back_off();
        for (id, silent) in &expired {
            if *silent {
                session.silent_requests += 1;
                if let Some(inflight) = session.inflight.get(id) {
                    session.expired.insert(*id, inflight.sent_ms);
                }
            }
            debug!(
                target: "sync",
                "SYNC request {id} to {} timed out; asking again (now waiting {} ms)",
                session.label,
                session.rto.timeout_ms()
            );
        }
        while session.expired.len() > MAX_EXPIRED_REMEMBERED {
            session.expired.pop_first();
        }
        let give_up = session.silent_requests > self.cfg.tuning.max_silent_requests;
        for (id, _) in expired {
            self.complete_request(id);
        }
        if give_up {
            self.abort_session("no answer");
            return;
        }
        self.pump(now);
    }
}

/// How many timed-out requests a session remembers, to learn from their late answers.
const MAX_EXPIRED_REMEMBERED: usize = 64;

/// Removes the covered parts from a list of spans; what is left must be asked again.
pub(super) fn subtract_spans(spans: &[Span], mut covered: Vec<(Key, Key)>) -> Vec<Span> {
    covered.sort();
    let mut left = Vec::new();
    for span in spans {
        let mut cursor = span.lower;
        for &(lo, hi) in &covered {
            if hi <= cursor || lo >= span.upper {
                continue;
            }
            if lo > cursor {
                left.push(Span {
                    lower: cursor,
                    upper: lo,
                    kind: span.kind,
                });
            }
            cursor = cursor.max(hi);
            if cursor >= span.upper {
                break;
            }
        }
        if cursor < span.upper {
            left.push(Span {
                lower: cursor,
                upper: span.upper,
                kind: span.kind,
            });
        }
    }
    left
}
