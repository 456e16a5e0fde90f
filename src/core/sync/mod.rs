//! The sync protocol as a sans-IO state machine.
//!
//! A [`Peer`] owns the replayed [`Ledger`] and the protocol state. It is driven by plain
//! calls — a datagram arrived, a timer fired, a local adjust — each with the current time,
//! and answers with [`Action`]s: datagrams to send, entries to persist. It owns no sockets,
//! clocks or entropy (a seeded RNG is passed in), so the tokio daemon and the deterministic
//! simulator in `tests/` drive exactly the same code.
//!
//! # How peers converge
//! * Every peer multicasts `HELLO` (its set fingerprint) every heartbeat, with jitter.
//! * A peer that hears fingerprints different from its own starts a reconciliation *session*
//!   with one chosen peer over whisper, unless its own fingerprint is held by a strict
//!   majority of the peers it hears (then the minority comes to it). So 40 raiders never all
//!   stream at one joiner: the joiner (the minority) pulls from one of them.
//! * A session is range-based set reconciliation: the key space (at, digest) is cut into ranges;
//!   for each the two sides compare fingerprints, split the ones that differ, and swap id
//!   lists once a range is small. Nothing depends on timestamps being right: offline edits
//!   made with a wrong clock sit in some range whose fingerprint differs.
//! * The responder is stateless: every response datagram says which key spans it answers,
//!   so a lost datagram is repaired by asking again for the spans nobody answered. Each
//!   request gets at most a fixed budget of datagrams back, and the requester keeps at most a
//!   small window of requests in flight: transfers are paced by round trips, so a large
//!   catch-up never overflows a socket buffer.
//! * Entries the requester holds and the responder lacks are multicast as `LOG_ENTRY` (the
//!   rest of the group probably lacks them too: the seed's offline-officer flow).

use crate::core::ledger::{Fingerprint, Ledger};
use crate::core::rng::SeededRng;
use crate::proto::entry::{new_entry_id, AdjustRequest, Digest, Entry, EntryError, HlcClock, Key};
use crate::proto::seal::Sealer;
use crate::proto::signature::{PublicKey, SecretKey};
use crate::proto::wire::{
    self, Body, Cookie, Envelope, Hello, Mode, NodeId, RangeItem, RangesRequest, RangesResponse,
    Run, SyncRequest, SyncResponse, MAX_DATAGRAM, MAX_IDS, MAX_MESSAGE,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Protocol knobs that users rarely touch; the simulator tightens them for speed.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// How long to wait for a response before asking again for the unanswered spans.
    pub request_timeout_ms: u64,
    /// Consecutive requests with no answer at all before a session is abandoned.
    pub max_silent_requests: u32,
    /// Most datagrams a responder sends back for one request (paces big transfers).
    pub response_budget: usize,
    /// Most requests a requester keeps in flight.
    pub window: usize,
    /// How many sub-ranges a differing range is split into.
    pub split_parts: usize,
    /// Ranges holding at most this many entries are exchanged as lists of entry digests.
    pub id_list_threshold: usize,
    /// Most LOG_ENTRY datagrams multicast per push tick when pushing many entries.
    pub push_burst: usize,
    /// Time between push ticks.
    pub push_interval_ms: u64,
    /// A peer that recently sent us a request is not picked as a partner for this long
    /// (it is already reconciling with us).
    pub serving_holdoff_ms: u64,
    /// Token bucket per source address for SYNC_REQUESTs that do not echo a valid cookie
    /// (probes, a requester's first request, spoofed sources): requests per second.
    pub request_rate_per_s: u32,
    /// Size of that bucket: such requests a source may send in a burst.
    pub request_burst: u32,
    /// A second bucket per source for requests that echo a valid cookie (a proven address):
    /// requests per second. Generous, so an honest catch-up is never throttled.
    pub proven_request_rate_per_s: u32,
    /// Size of the proven bucket.
    pub proven_request_burst: u32,
    /// Until a source echoes our cookie (proving it receives at its address), we send it
    /// at most this many times the bytes it sent us (anti-amplification).
    pub amplification_factor: u64,
    /// Most peers tracked; a new one beyond this evicts the longest-silent peer.
    pub max_peers: usize,
    /// Most source addresses tracked for rate limits; beyond this the oldest half is
    /// forgotten (a forgotten source starts again with no allowance).
    pub max_sources: usize,
    /// Most spans and most wanted digests a session keeps queued; the rest wait for the next
    /// session (the fingerprints still differ, so one starts).
    pub max_session_queue: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            request_timeout_ms: 300,
            max_silent_requests: 8,
            response_budget: 32,
            window: 2,
            split_parts: 16,
            id_list_threshold: 32,
            push_burst: 16,
            push_interval_ms: 2,
            serving_holdoff_ms: 1_000,
            // An honest peer sends one unproven request per partner (then echoes the cookie)
            // plus a probe per heartbeat; a flood beyond this is dropped.
            request_rate_per_s: 100,
            request_burst: 50,
            // An honest catch-up sends `window` requests per round trip: about 900 per
            // second on loopback today. 10x headroom, still a cap on what one source costs.
            proven_request_rate_per_s: 10_000,
            proven_request_burst: 1_000,
            amplification_factor: 3,
            max_peers: 256,
            max_sources: 1_024,
            max_session_queue: 1 << 16,
        }
    }
}

/// Everything a [`Peer`] needs to know about itself.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// This node's name (shown to peers).
    pub node_name: String,
    /// Group (ledger) name; datagrams for other groups are dropped.
    pub group: String,
    /// Our whisper port, advertised in every datagram.
    pub whisper_port: u16,
    /// Whether sync starts switched on.
    pub sync_enabled: bool,
    /// HELLO interval.
    pub heartbeat_ms: u64,
    /// A peer not heard from for this long is forgotten.
    pub peer_timeout_ms: u64,
    /// How far beyond our wall clock a peer's timestamp may push our HLC.
    pub max_clock_drift_ms: u64,
    /// Protocol knobs.
    pub tuning: Tuning,
}

/// The time, as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (timers).
    pub mono_ms: u64,
    /// Wall-clock Unix milliseconds (entry timestamps). May be wrong; nothing depends on it
    /// for correctness.
    pub unix_ms: u64,
}

/// Which socket a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The multicast group channel.
    Group,
    /// Our unicast whisper socket.
    Whisper,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Multicast this datagram on the group channel.
    SendGroup(Vec<u8>),
    /// Send this datagram to one peer's whisper socket.
    SendTo(SocketAddr, Vec<u8>),
    /// Append these entries (learned from peers) to the log, then tell [`Peer::mark_stored`]
    /// where each went (their keys come along, so the driver need not hash them again). They
    /// are already applied in memory; the driver may group-commit them.
    Persist {
        /// The entries, in merge order.
        entries: Vec<Entry>,
        /// `keys[i]` is `entries[i].key()`.
        keys: Vec<Key>,
    },
}

/// Counters, for status output, tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the driver to send.
    pub datagrams_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams received (including dropped ones).
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Dropped datagrams by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Entries learned from peers.
    pub entries_merged: u64,
    /// Entries multicast because a sync found a peer lacking them.
    pub entries_pushed: u64,
    /// Reconciliation sessions started / completed / abandoned.
    pub sessions_started: u64,
    /// Sessions that ran to completion.
    pub sessions_completed: u64,
    /// Sessions abandoned (partner silent or gone).
    pub sessions_aborted: u64,
    /// Range requests sent.
    pub requests_sent: u64,
    /// Messages that could not be encoded (over [`MAX_MESSAGE`]: a packing bug, so the
    /// tests require this to stay 0).
    pub encode_failures: u64,
    /// Peers forgotten early because the peer table was full.
    pub peers_evicted: u64,
    /// Answers cut short (or reduced to a cookie) by the anti-amplification limit.
    pub answers_limited: u64,
}

/// What we know about another peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id.
    pub node: NodeId,
    /// Its name, once heard in a HELLO or summary.
    pub name: Option<String>,
    /// Its whisper address.
    pub whisper: SocketAddr,
    /// Its whole-set fingerprint, as last reported.
    pub fingerprint: Option<Fingerprint>,
    /// When we last heard anything from it (monotonic ms).
    pub last_heard_ms: u64,
}

impl PeerInfo {
    /// "name" or the node id in hex, for logs.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{:016x}", self.node),
        }
    }
}

/// How a requester asks about a span it has not resolved yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpanKind {
    Fingerprint,
    Ids,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    lower: Key,
    upper: Key,
    kind: SpanKind,
}

#[derive(Debug)]
struct Inflight {
    sent_ms: u64,
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
    silent_requests: u32,
    started_ms: u64,
    requests: u64,
    received: u64,
    pushed: u64,
    start_fingerprint: Fingerprint,
}

/// The sans-IO peer: ledger, clock, peer table, sessions and timers.
pub struct Peer {
    cfg: PeerConfig,
    node_id: NodeId,
    ledger: Ledger,
    clock: HlcClock,
    rng: SeededRng,
    sync_enabled: bool,
    peers: BTreeMap<NodeId, PeerInfo>,
    serving: HashMap<NodeId, u64>,
    session: Option<Session>,
    push_queue: VecDeque<Digest>,
    push_queued: HashSet<Digest>,
    next_hello_ms: u64,
    next_push_ms: u64,
    last_probe_ms: Option<u64>,
    next_request_id: u64,
    stats: Stats,
    out: Vec<Action>,
    /// This machine's officer key: local adjusts are signed with it.
    officer_key: Option<Arc<SecretKey>>,
    /// Digests of entries whose seal failed to verify, most recent last, so a member
    /// replaying the same forgery costs a hash lookup instead of a signature check each time.
    bad_seals: VecDeque<Digest>,
    bad_seal_set: HashSet<Digest>,
    sealer: Sealer,
    cookie_key: [u8; 32],
    sources: HashMap<SocketAddr, Source>,
    /// Cookies peers gave us, by their whisper address, echoed in our requests to them.
    /// Kept apart from the peer table so they survive sync off/on.
    cookies: HashMap<SocketAddr, Cookie>,
}

/// Rate-limit state for one requester address (where our answers would go).
#[derive(Clone, Debug)]
struct Source {
    tokens: f64,
    proven_tokens: f64,
    refilled_ms: u64,
    /// Bytes of requests received from this address.
    received: u64,
    /// Bytes answered to it while it was unproven.
    sent_unproven: u64,
}

fn kind_of(body: &Body) -> &'static str {
    body.kind()
}

impl Peer {
    /// A peer holding `entries` (from the log, any order). Entry timestamps seed the HLC, so
    /// a restart or a clock stepped back never stamps a new entry before ones already seen.
    pub fn new(cfg: PeerConfig, entries: Vec<Entry>, rng: SeededRng, now: Now) -> Peer {
        let (ledger, _duplicates) = Ledger::from_entries(entries);
        Peer::with_ledger(cfg, ledger, rng, now)
    }

    /// A peer over an already built ledger (the daemon's index-only ledger over the log).
    pub fn with_ledger(cfg: PeerConfig, ledger: Ledger, mut rng: SeededRng, now: Now) -> Peer {
        let mut clock = HlcClock::new(cfg.max_clock_drift_ms);
        if let Some(newest) = ledger.newest() {
            clock.observe(newest.at, now.unix_ms);
        }
        let node_id = rng.next_u64();
        // A stand-in cookie secret for simulations, derived without drawing from `rng` (so
        // seeds replay as before). The daemon installs an OS-random one: see set_group_key.
        let cookie_key = SeededRng::new(node_id ^ 0xc00c_1e5e_c2e7_0000).bytes();
        Peer {
            sync_enabled: cfg.sync_enabled,
            cfg,
            node_id,
            ledger,
            clock,
            rng,
            peers: BTreeMap::new(),
            serving: HashMap::new(),
            session: None,
            push_queue: VecDeque::new(),
            push_queued: HashSet::new(),
            next_hello_ms: now.mono_ms,
            next_push_ms: now.mono_ms,
            last_probe_ms: None,
            next_request_id: 1,
            stats: Stats::default(),
            out: Vec::new(),
            officer_key: None,
            bad_seals: VecDeque::new(),
            bad_seal_set: HashSet::new(),
            sealer: Sealer::clear(),
            cookie_key,
            sources: HashMap::new(),
            cookies: HashMap::new(),
        }
    }

    /// Installs the group key and the cookie secret. Both come from the driver, not from
    /// the seeded RNG: that generator's state is revealed by the node id it broadcasts, so
    /// secrets drawn from it would be predictable. The daemon uses OS entropy; tests and
    /// the simulator may pass seeded bytes.
    pub fn set_group_key(&mut self, sealer: Sealer, cookie_key: [u8; 32]) {
        self.sealer = sealer;
        self.cookie_key = cookie_key;
    }

    /// Number of source addresses tracked for rate limiting (bounded by
    /// [`Tuning::max_sources`]).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Sets the group's root key (`None`: open roster, any peer may author) and this
    /// machine's officer key. With a root key, local adjusts need the officer key, entries
    /// from peers must be signed, and only officers' entries count.
    pub fn set_roster(&mut self, root: Option<PublicKey>, officer_key: Option<Arc<SecretKey>>) {
        self.ledger.set_root(root);
        self.officer_key = officer_key;
    }

    /// This process's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Tells the ledger that the entry at `key` is in the log at byte `offset`, so it can
    /// drop the body from memory and read it back when needed (the driver calls this after
    /// appending what a [`Action::Persist`] or a local adjust asked for).
    pub fn mark_stored(&mut self, key: &Key, offset: u64) {
        self.ledger.mark_stored(key, offset);
    }

    /// The replayed ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Peers currently known.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.values()
    }

    /// Whether sync is switched on.
    pub fn sync_enabled(&self) -> bool {
        self.sync_enabled
    }

    /// Whether a reconciliation session is running.
    pub fn in_session(&self) -> bool {
        self.session.is_some()
    }

    /// Whether entries are still queued to be multicast.
    pub fn pushing(&self) -> bool {
        !self.push_queue.is_empty()
    }

    /// Takes the actions produced so far.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// Joins the group: announces ourselves and asks who differs. Call once at start-up.
    pub fn start(&mut self, now: Now) {
        if self.sync_enabled {
            info!(target: "sync", "SYNC joining group {}", self.cfg.group);
            self.send_hello(now);
            self.send_probe(now);
        }
    }

    /// Switches sync on (rejoin: HELLO + SYNC_REQUEST) or off (no group traffic at all;
    /// local adjusts are still recorded and spread when sync is back on).
    pub fn set_sync_enabled(&mut self, now: Now, enabled: bool) {
        if enabled == self.sync_enabled {
            return;
        }
        self.sync_enabled = enabled;
        if enabled {
            info!(target: "sync", "SYNC switched on");
            self.start(now);
        } else {
            info!(target: "sync", "SYNC switched off: no group traffic until switched on");
            self.session = None;
            self.peers.clear();
            self.serving.clear();
            self.push_queue.clear();
            self.push_queued.clear();
        }
    }

    /// Makes a new local entry (stamped by the HLC, id from the seeded RNG) without applying
    /// it. The driver persists it durably, then calls [`Peer::commit_local`].
    pub fn prepare_adjust(
        &mut self,
        now: Now,
        request: &AdjustRequest,
    ) -> Result<Entry, EntryError> {
        let at = self.clock.tick(now.unix_ms);
        let mut entry = Entry {
            id: new_entry_id(at.unix_ms(), self.rng.bytes()),
            at,
            actor: request.actor.clone(),
            target: request.target.clone(),
            delta: request.delta,
            new_total: self
                .ledger
                .total(&request.target)
                .wrapping_add(request.delta),
            reason: request.reason.clone(),
            kind: crate::proto::entry::EntryKind::Points,
            seal: None,
        };
        entry.validate()?;
        match &self.officer_key {
            // The new entry sorts after everything this peer has seen, so the roster at the
            // end of the log is the one that judges it (unless an older roster change is
            // still on its way, which is rare; then the entry is kept and judged again).
            Some(key) if self.ledger.root().is_some() => {
                let public = key.public();
                if self.ledger.is_revoked(&public) {
                    return Err(EntryError::RevokedOfficerKey(public.to_string()));
                }
                let officers = self.ledger.officers();
                if !officers.values().any(|k| *k == public) {
                    return Err(EntryError::NotAnOfficer(public.to_string()));
                }
                if self.ledger.impersonates(&entry.actor, &public) {
                    // It would count for nothing: one officer cannot sign as another.
                    return Err(EntryError::AnotherOfficersName(entry.actor));
                }
                key.sign(&mut entry);
            }
            Some(key) => key.sign(&mut entry),
            None if self.ledger.root().is_some() => return Err(EntryError::NoOfficerKey),
            None => {}
        }
        Ok(entry)
    }

    /// Applies a local entry that is now durable, and multicasts it at once.
    pub fn commit_local(&mut self, now: Now, entry: Entry) {
        // A roster change made by the CLI carries its own stamp: later local entries must
        // sort after it.
        self.clock.observe(entry.at, now.unix_ms);
        if !self.ledger.insert(entry.clone()) {
            return;
        }
        if self.sync_enabled {
            self.send_entries_to_group(now, &[entry]);
        }
    }

    /// The earliest monotonic time at which [`Peer::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.sync_enabled {
            return None;
        }
        let mut next = self.next_hello_ms;
        if !self.push_queue.is_empty() {
            next = next.min(self.next_push_ms);
        }
        if let Some(session) = &self.session {
            for inflight in session.inflight.values() {
                next = next.min(inflight.sent_ms + self.cfg.tuning.request_timeout_ms);
            }
        }
        for peer in self.peers.values() {
            next = next.min(peer.last_heard_ms + self.cfg.peer_timeout_ms);
        }
        Some(next)
    }

    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        if !self.sync_enabled {
            return;
        }
        if now.mono_ms >= self.next_hello_ms {
            self.send_hello(now);
        }
        self.expire_peers(now);
        self.serving
            .retain(|_, at| *at + self.cfg.tuning.serving_holdoff_ms > now.mono_ms);
        self.expire_requests(now);
        if !self.push_queue.is_empty() && now.mono_ms >= self.next_push_ms {
            self.push_some(now);
        }
    }

    /// Handles one received datagram. Bad datagrams are counted and dropped, never fatal.
    pub fn handle_datagram(&mut self, now: Now, channel: Channel, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if !self.sync_enabled {
            self.drop_datagram("sync_off");
            return;
        }
        let clear = match self.sealer.open(bytes) {
            Ok(clear) => clear,
            Err(err) => {
                debug!(target: "sync", "SYNC dropped datagram from {from} on {channel:?}: {err}");
                self.drop_datagram(err.label());
                return;
            }
        };
        let envelope = match wire::decode(&clear) {
            Ok(envelope) => envelope,
            Err(err) => {
                debug!(target: "sync", "SYNC dropped datagram from {from} on {channel:?}: {err}");
                self.drop_datagram(err.label());
                return;
            }
        };
        if envelope.from == self.node_id {
            self.drop_datagram("own");
            return;
        }
        if envelope.group != self.cfg.group {
            debug!(target: "sync", "SYNC dropped datagram from {from} for group {:?}", envelope.group);
            self.drop_datagram("wrong_group");
            return;
        }
        let whisper = SocketAddr::new(from.ip(), envelope.whisper_port);
        self.touch_peer(now, envelope.from, whisper);
        // Built only when the line is wanted: this runs for every datagram.
        if tracing::enabled!(target: "sync", tracing::Level::DEBUG) {
            let label = self.peer_label(envelope.from);
            // `entries=` is what this datagram carries; a HELLO also says what the sender
            // holds.
            let holds = match &envelope.body {
                Body::Hello(hello) => format!(" holds={}", hello.fingerprint.count),
                _ => String::new(),
            };
            debug!(
                target: "sync",
                "SYNC recv {} from {label} ({whisper}) entries={}{holds}",
                kind_of(&envelope.body),
                envelope.body.entry_count()
            );
        }
        let sender = envelope.from;
        match envelope.body {
            Body::Hello(hello) => {
                if let Some(peer) = self.peers.get_mut(&sender) {
                    peer.name = Some(hello.name);
                    peer.fingerprint = Some(hello.fingerprint);
                }
                self.maybe_start_session(now);
            }
            Body::LogEntry(entries) => {
                self.merge(now, entries);
            }
            Body::SyncRequest(request) => {
                let proven = match &request {
                    SyncRequest::Ranges(r) => self.cookie_valid(whisper, r.cookie),
                    SyncRequest::Probe { .. } => false,
                };
                if !self.admit_request(now, whisper, bytes.len(), proven) {
                    debug!(target: "sync", "SYNC rate-limited SYNC_REQUEST from {whisper}");
                    self.drop_datagram("rate_limited");
                    return;
                }
                match request {
                    SyncRequest::Probe { fingerprint } => {
                        if let Some(peer) = self.peers.get_mut(&sender) {
                            peer.fingerprint = Some(fingerprint);
                        }
                        if fingerprint != self.ledger.fingerprint() {
                            let body = Body::SyncResponse(SyncResponse::Summary {
                                name: self.cfg.node_name.clone(),
                                fingerprint: self.ledger.fingerprint(),
                                cookie: Some(self.cookie_for(whisper)),
                            });
                            // A probe proves nothing about its source: within the 3x limit.
                            let allowance = self.allowance(whisper);
                            self.send_limited(sender, whisper, body, allowance);
                        }
                    }
                    SyncRequest::Ranges(request) => {
                        self.serving.insert(sender, now.mono_ms);
                        self.answer(sender, whisper, request, proven);
                    }
                }
            }
            Body::SyncResponse(SyncResponse::Summary {
                name,
                fingerprint,
                cookie,
            }) => {
                if let Some(peer) = self.peers.get_mut(&sender) {
                    peer.name = Some(name);
                    peer.fingerprint = Some(fingerprint);
                }
                self.remember_cookie(whisper, cookie);
                self.maybe_start_session(now);
            }
            Body::SyncResponse(SyncResponse::Ranges(response)) => {
                self.remember_cookie(whisper, response.cookie);
                self.handle_response(now, sender, response);
            }
        }
    }

    fn drop_datagram(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_insert(0) += 1;
    }

    fn peer_label(&self, node: NodeId) -> String {
        self.peers
            .get(&node)
            .map(PeerInfo::label)
            .unwrap_or_else(|| format!("{node:016x}"))
    }

    fn live(&self, peer: &PeerInfo, now: Now) -> bool {
        peer.last_heard_ms + self.cfg.peer_timeout_ms > now.mono_ms
    }

    fn touch_peer(&mut self, now: Now, node: NodeId, whisper: SocketAddr) {
        let was_solo = !self.peers.values().any(|p| self.live(p, now));
        let known = match self.peers.get_mut(&node) {
            Some(peer) => {
                peer.last_heard_ms = now.mono_ms;
                peer.whisper = whisper;
                true
            }
            None => {
                // One process per whisper address: a new node id there is a restart. Forget
                // the old incarnation now, not after peer_timeout; else a session with it
                // drops every answer from the new one as stale, and the new one will not
                // start its own session with us while we keep asking it.
                let restarted: Vec<NodeId> = self
                    .peers
                    .values()
                    .filter(|p| p.whisper == whisper)
                    .map(|p| p.node)
                    .collect();
                for old in restarted {
                    self.peers.remove(&old);
                    self.serving.remove(&old);
                    if self.session.as_ref().is_some_and(|s| s.partner == old) {
                        self.abort_session("partner restarted");
                    }
                }
                if self.peers.len() >= self.cfg.tuning.max_peers.max(1) {
                    self.evict_stalest_peer();
                }
                self.peers.insert(
                    node,
                    PeerInfo {
                        node,
                        name: None,
                        whisper,
                        fingerprint: None,
                        last_heard_ms: now.mono_ms,
                    },
                );
                false
            }
        };
        if !known {
            info!(target: "sync", "SYNC peer {node:016x} joined ({whisper})");
            if was_solo {
                // Solo -> grouped is the seed's "group join": ask who differs.
                self.send_probe(now);
            }
        }
    }

    /// Makes room in a full peer table (a flood of made-up node ids must not grow memory):
    /// forgets the peer heard from longest ago, never the current session partner.
    fn evict_stalest_peer(&mut self) {
        let partner = self.session.as_ref().map(|s| s.partner);
        let stalest = self
            .peers
            .values()
            .filter(|p| Some(p.node) != partner)
            .min_by_key(|p| (p.last_heard_ms, p.node))
            .map(|p| p.node);
        if let Some(node) = stalest {
            self.peers.remove(&node);
            self.serving.remove(&node);
            self.stats.peers_evicted += 1;
            debug!(target: "sync", "SYNC peer table full: forgot {node:016x}");
        }
    }

    // ---- abuse limits -----------------------------------------------------------------------

    /// The cookie for requester address `addr`: a keyed hash with our per-process secret, so
    /// only someone receiving at `addr` can learn it, and we keep no state per address.
    fn cookie_for(&self, addr: SocketAddr) -> Cookie {
        let mac = self.cookie_mac(addr);
        let mut cookie = [0u8; 8];
        cookie.copy_from_slice(&mac.finalize().into_bytes()[..8]);
        cookie
    }

    fn cookie_mac(&self, addr: SocketAddr) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.cookie_key)
            .expect("HMAC takes keys of any length");
        mac.update(b"lootsync cookie v1\0");
        match addr.ip() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&addr.port().to_be_bytes());
        mac
    }

    /// Keeps the cookie a peer at `addr` gave us (bounded: a flood of answers from made-up
    /// addresses only makes honest peers prove themselves once more).
    fn remember_cookie(&mut self, addr: SocketAddr, cookie: Option<Cookie>) {
        let Some(cookie) = cookie else {
            return;
        };
        if !self.cookies.contains_key(&addr) && self.cookies.len() >= self.cfg.tuning.max_peers {
            self.cookies.clear();
        }
        self.cookies.insert(addr, cookie);
    }

    /// Whether `cookie` is the one we give `addr` (constant-time comparison).
    fn cookie_valid(&self, addr: SocketAddr, cookie: Option<Cookie>) -> bool {
        cookie.is_some_and(|c| self.cookie_mac(addr).verify_truncated_left(&c).is_ok())
    }

    /// Counts a SYNC_REQUEST of `len` bytes from `addr` and takes a token from its bucket
    /// (the proven one when it echoed a valid cookie); false when that bucket is empty (the
    /// request is dropped).
    fn admit_request(&mut self, now: Now, addr: SocketAddr, len: usize, proven: bool) -> bool {
        let tuning = &self.cfg.tuning;
        let (rate, burst) = (
            f64::from(tuning.request_rate_per_s),
            f64::from(tuning.request_burst.max(1)),
        );
        let (proven_rate, proven_burst) = (
            f64::from(tuning.proven_request_rate_per_s),
            f64::from(tuning.proven_request_burst.max(1)),
        );
        if !self.sources.contains_key(&addr) && self.sources.len() >= tuning.max_sources.max(2) {
            // Forget the older half at once (amortised O(1) per new source under a flood).
            let mut ages: Vec<u64> = self.sources.values().map(|s| s.refilled_ms).collect();
            let mid = ages.len() / 2;
            let (_, median, _) = ages.select_nth_unstable(mid);
            let median = *median;
            self.sources.retain(|_, s| s.refilled_ms > median);
        }
        let source = self.sources.entry(addr).or_insert(Source {
            tokens: burst,
            proven_tokens: proven_burst,
            refilled_ms: now.mono_ms,
            received: 0,
            sent_unproven: 0,
        });
        let elapsed = now.mono_ms.saturating_sub(source.refilled_ms) as f64;
        source.tokens = (source.tokens + elapsed * rate / 1000.0).min(burst);
        source.proven_tokens =
            (source.proven_tokens + elapsed * proven_rate / 1000.0).min(proven_burst);
        source.refilled_ms = now.mono_ms;
        source.received = source.received.saturating_add(len as u64);
        let tokens = if proven {
            &mut source.proven_tokens
        } else {
            &mut source.tokens
        };
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Bytes we may still send to the unproven address `addr`.
    fn allowance(&self, addr: SocketAddr) -> u64 {
        self.sources.get(&addr).map_or(0, |s| {
            s.received
                .saturating_mul(self.cfg.tuning.amplification_factor)
                .saturating_sub(s.sent_unproven)
        })
    }

    /// Sends to an unproven address only if the sealed datagram fits in `limit` bytes, and
    /// charges it to the address's allowance.
    fn send_limited(&mut self, node: NodeId, addr: SocketAddr, body: Body, limit: u64) {
        let kind = kind_of(&body);
        let Some(bytes) = self.encode_body(body) else {
            return;
        };
        if (bytes.len() + self.sealer.overhead()) as u64 > limit {
            self.stats.answers_limited += 1;
            debug!(target: "sync", "SYNC {kind} to unproven {addr} withheld: over the 3x limit");
            return;
        }
        debug!(target: "sync", "SYNC send {kind} to {} ({addr})", self.peer_label(node));
        let sent = self.emit(Action::SendTo(addr, bytes));
        self.charge(addr, sent);
    }

    fn charge(&mut self, addr: SocketAddr, bytes: usize) {
        if let Some(source) = self.sources.get_mut(&addr) {
            source.sent_unproven = source.sent_unproven.saturating_add(bytes as u64);
        }
    }

    fn expire_peers(&mut self, now: Now) {
        let timeout = self.cfg.peer_timeout_ms;
        let gone: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| p.last_heard_ms + timeout <= now.mono_ms)
            .map(|p| p.node)
            .collect();
        for node in gone {
            if let Some(peer) = self.peers.remove(&node) {
                info!(target: "sync", "SYNC peer {} left (silent for {timeout} ms)", peer.label());
            }
            if self.session.as_ref().is_some_and(|s| s.partner == node) {
                self.abort_session("partner left");
            }
        }
    }

    fn envelope(&self, body: Body) -> Envelope {
        Envelope {
            group: self.cfg.group.clone(),
            from: self.node_id,
            whisper_port: self.cfg.whisper_port,
            body,
        }
    }

    /// Seals and queues a datagram (entries to persist pass through); returns the bytes
    /// that go on the wire.
    fn emit(&mut self, action: Action) -> usize {
        let action = match action {
            Action::SendGroup(bytes) => match self.sealer.seal(bytes) {
                Ok(sealed) => Action::SendGroup(sealed),
                Err(err) => return self.seal_failed(err),
            },
            Action::SendTo(addr, bytes) => match self.sealer.seal(bytes) {
                Ok(sealed) => Action::SendTo(addr, sealed),
                Err(err) => return self.seal_failed(err),
            },
            persist => persist,
        };
        let mut len = 0;
        if let Action::SendGroup(bytes) | Action::SendTo(_, bytes) = &action {
            len = bytes.len();
            self.stats.datagrams_sent += 1;
            self.stats.bytes_sent += len as u64;
        }
        self.out.push(action);
        len
    }

    fn seal_failed(&mut self, err: crate::proto::seal::SealError) -> usize {
        self.stats.encode_failures += 1;
        warn!(target: "sync", "SYNC could not seal a datagram: {err}");
        0
    }

    /// Encodes a message in our envelope; a failure is counted and logged, never sent.
    fn encode_body(&mut self, body: Body) -> Option<Vec<u8>> {
        let kind = kind_of(&body);
        match wire::encode(&self.envelope(body)) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                self.stats.encode_failures += 1;
                warn!(target: "sync", "SYNC could not encode {kind}: {err}");
                None
            }
        }
    }

    fn send_group(&mut self, body: Body) {
        let kind = kind_of(&body);
        let count = body.entry_count();
        if let Some(bytes) = self.encode_body(body) {
            debug!(target: "sync", "SYNC send {kind} to group entries={count}");
            self.emit(Action::SendGroup(bytes));
        }
    }

    /// Sends one message over whisper; returns the bytes put on the wire (0 if none).
    fn send_to(&mut self, node: NodeId, addr: SocketAddr, body: Body) -> usize {
        let kind = kind_of(&body);
        let count = body.entry_count();
        match self.encode_body(body) {
            Some(bytes) => {
                debug!(
                    target: "sync",
                    "SYNC send {kind} to {} ({addr}) entries={count}",
                    self.peer_label(node)
                );
                self.emit(Action::SendTo(addr, bytes))
            }
            None => 0,
        }
    }

    fn send_hello(&mut self, now: Now) {
        let body = Body::Hello(Hello {
            name: self.cfg.node_name.clone(),
            fingerprint: self.ledger.fingerprint(),
            newest: self.ledger.newest(),
        });
        self.send_group(body);
        // +-10% jitter so peers started together do not beat in step.
        let base = self.cfg.heartbeat_ms.max(1);
        let jitter = self.rng.below(base / 5 + 1);
        self.next_hello_ms = now.mono_ms + base - base / 10 + jitter;
    }

    fn send_probe(&mut self, now: Now) {
        let recent = self
            .last_probe_ms
            .is_some_and(|at| at + self.cfg.heartbeat_ms > now.mono_ms);
        if recent {
            return;
        }
        self.last_probe_ms = Some(now.mono_ms);
        let body = Body::SyncRequest(SyncRequest::Probe {
            fingerprint: self.ledger.fingerprint(),
        });
        self.send_group(body);
    }

    fn send_entries_to_group(&mut self, _now: Now, entries: &[Entry]) {
        let datagrams = wire::pack_log_entries(
            &self.cfg.group,
            self.node_id,
            self.cfg.whisper_port,
            entries,
        );
        for (count, bytes) in datagrams {
            debug!(target: "sync", "SYNC send LOG_ENTRY to group entries={count}");
            self.emit(Action::SendGroup(bytes));
        }
    }

    /// Applies entries from a peer; returns how many were new.
    fn merge(&mut self, now: Now, entries: Vec<Entry>) -> usize {
        let mut fresh = Vec::new();
        let mut keys = Vec::new();
        self.ledger.begin_batch();
        for entry in entries {
            let key = entry.key();
            if self.ledger.contains(&key.digest) {
                continue;
            }
            // A forged or damaged signature is dropped before it can enter the set: that
            // depends on the entry alone, so every peer drops the same ones. An unsigned entry
            // (or one by a non-officer) is kept, counting for nothing while the group has a
            // root key: a peer that holds it, say from before the root key was set, offers it
            // to everyone, and refusing it would leave that range unreconciled forever.
            if self.bad_seal_set.contains(&key.digest) {
                *self.stats.dropped.entry("known_forgery").or_insert(0) += 1;
                continue;
            }
            if let Err(err) = crate::proto::signature::verify(&entry) {
                debug!(target: "sync", "SYNC dropped entry {}: {err}", entry.id);
                *self.stats.dropped.entry("bad_signature").or_insert(0) += 1;
                self.remember_bad_seal(key.digest);
                continue;
            }
            self.clock.observe(entry.at, now.unix_ms);
            if let Some(session) = self.session.as_mut() {
                session.want.remove(&key.digest);
            }
            self.ledger.insert_keyed(key, entry.clone());
            fresh.push(entry);
            keys.push(key);
        }
        self.ledger.end_batch();
        let count = fresh.len();
        if count > 0 {
            self.stats.entries_merged += count as u64;
            debug!(target: "sync", "SYNC merged {count} new entries; totals recalculated");
            self.out.push(Action::Persist {
                entries: fresh,
                keys,
            });
        }
        count
    }

    fn remember_bad_seal(&mut self, digest: Digest) {
        if self.bad_seal_set.insert(digest) {
            self.bad_seals.push_back(digest);
            if self.bad_seals.len() > MAX_BAD_SEALS {
                if let Some(oldest) = self.bad_seals.pop_front() {
                    self.bad_seal_set.remove(&oldest);
                }
            }
        }
    }

    fn queue_push(&mut self, id: Digest) {
        if self.push_queued.insert(id) {
            self.push_queue.push_back(id);
            if let Some(session) = self.session.as_mut() {
                session.pushed += 1;
            }
        }
    }

    fn push_some(&mut self, now: Now) {
        let budget = self.cfg.tuning.push_burst.max(1) * (MAX_MESSAGE - 100);
        let mut used = 0;
        let mut batch = Vec::new();
        while let Some(id) = self.push_queue.front().copied() {
            let Some(entry) = self.ledger.get(&id) else {
                self.push_queue.pop_front();
                self.push_queued.remove(&id);
                continue;
            };
            let size = wire::encoded_len(&entry);
            if !batch.is_empty() && used + size > budget {
                break;
            }
            used += size;
            batch.push(entry);
            self.push_queue.pop_front();
            self.push_queued.remove(&id);
        }
        if !batch.is_empty() {
            self.stats.entries_pushed += batch.len() as u64;
            debug!(target: "sync", "SYNC pushing {} entries the group lacks", batch.len());
            self.send_entries_to_group(now, &batch);
        }
        self.next_push_ms = now.mono_ms + self.cfg.tuning.push_interval_ms;
    }

    // ---- choosing a partner -------------------------------------------------------------

    fn maybe_start_session(&mut self, now: Now) {
        if !self.sync_enabled || self.session.is_some() {
            return;
        }
        let mine = self.ledger.fingerprint();
        let mut holders: HashMap<Fingerprint, usize> = HashMap::new();
        for peer in self.peers.values().filter(|p| self.live(p, now)) {
            if let Some(fp) = peer.fingerprint {
                *holders.entry(fp).or_insert(0) += 1;
            }
        }
        let my_holders = 1 + holders.get(&mine).copied().unwrap_or(0);
        // The most widely held other fingerprint; ties prefer the bigger set.
        let Some((target_fp, target_holders)) = holders
            .iter()
            .filter(|(fp, _)| **fp != mine)
            .max_by_key(|(fp, n)| (**n, fp.count, fp.sum))
            .map(|(fp, n)| (*fp, *n))
        else {
            return;
        };
        if my_holders > target_holders {
            // We hold the majority view: the minority will come to us.
            return;
        }
        if my_holders == target_holders && (mine.count, mine.sum) > (target_fp.count, target_fp.sum)
        {
            // No majority either way (two peers, say): the smaller set pulls, so a late
            // joiner fetches the log over whisper, paced by its own requests, instead of us
            // multicasting all of it. Both sides compare the same two fingerprints, so
            // exactly one of them starts.
            return;
        }
        let candidates: Vec<(NodeId, SocketAddr, String)> = self
            .peers
            .values()
            .filter(|p| self.live(p, now) && p.fingerprint == Some(target_fp))
            // Check the age here: expired hold-offs are only pruned when a timer runs.
            .filter(|p| {
                self.serving
                    .get(&p.node)
                    .is_none_or(|at| *at + self.cfg.tuning.serving_holdoff_ms <= now.mono_ms)
            })
            .map(|p| (p.node, p.whisper, p.label()))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let pick = self.rng.below(candidates.len() as u64) as usize;
        let (partner, addr, label) = candidates[pick].clone();
        info!(
            target: "sync",
            "SYNC reconciling with {label} (theirs {}, ours {})",
            target_fp.short(),
            mine.short()
        );
        self.stats.sessions_started += 1;
        self.session = Some(Session {
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
            silent_requests: 0,
            started_ms: now.mono_ms,
            requests: 0,
            received: 0,
            pushed: 0,
            start_fingerprint: mine,
        });
        self.pump(now);
    }

    fn abort_session(&mut self, why: &str) {
        if let Some(session) = self.session.take() {
            self.stats.sessions_aborted += 1;
            info!(target: "sync", "SYNC abandoned reconciliation with {}: {why}", session.label);
        }
    }

    // ---- requester ------------------------------------------------------------------------

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
    fn pump(&mut self, now: Now) {
        loop {
            let Some(session) = self.session.as_ref() else {
                return;
            };
            if session.inflight.len() >= self.cfg.tuning.window.max(1)
                || (session.todo.is_empty() && session.want.is_empty())
            {
                break;
            }
            let (partner, addr) = (session.partner, session.addr);
            // Room left after the version byte and the envelope (which grows with the group
            // name); 4 more bytes for the list lengths, whose varints grow as lists fill.
            let limit = MAX_MESSAGE - 1 - self.request_overhead() - 4;
            let mut size = 0;
            let mut spans = Vec::new();
            let mut runs: Vec<Run> = Vec::new();
            while let Some(span) = self.session.as_ref().and_then(|s| s.todo.front().copied()) {
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
                if !spans.is_empty() && size + cost > limit {
                    break;
                }
                size += cost;
                if let Some(s) = self.session.as_mut() {
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
            let session = self.session.as_mut().expect("checked above");
            let mut want = Vec::new();
            while want.len() < MAX_IDS && size + 20 <= limit {
                let Some(id) = session.want.pop_first() else {
                    break;
                };
                size += 17;
                want.push(id);
            }
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            session.requests += 1;
            session.inflight.insert(
                request_id,
                Inflight {
                    sent_ms: now.mono_ms,
                    spans,
                    want: want.clone(),
                    covered: Vec::new(),
                    parts_seen: BTreeSet::new(),
                    parts_total: None,
                },
            );
            self.stats.requests_sent += 1;
            let cookie = self.cookies.get(&addr).copied();
            let mut request = RangesRequest {
                request_id,
                runs,
                want,
                cookie,
                padding: Vec::new(),
            };
            if cookie.is_none() {
                // Unproven with this partner: fill the datagram, so its 3x allowance pays
                // for a first answer of several datagrams (which bring us the cookie).
                let used = wire::encoded_len(
                    &self.envelope(Body::SyncRequest(SyncRequest::Ranges(request.clone()))),
                );
                request.padding = vec![0; (MAX_MESSAGE - 1).saturating_sub(used + 2)];
            }
            self.send_to(
                partner,
                addr,
                Body::SyncRequest(SyncRequest::Ranges(request)),
            );
        }
        self.finish_session_if_done(now);
    }

    fn finish_session_if_done(&mut self, now: Now) {
        let done = self
            .session
            .as_ref()
            .is_some_and(|s| s.todo.is_empty() && s.want.is_empty() && s.inflight.is_empty());
        if !done {
            return;
        }
        let Some(session) = self.session.take() else {
            return;
        };
        self.stats.sessions_completed += 1;
        info!(
            target: "sync",
            "SYNC reconciled with {} in {} ms: {} requests, {} entries received, {} multicast to the group",
            session.label,
            now.mono_ms.saturating_sub(session.started_ms),
            session.requests,
            session.received,
            session.pushed
        );
        if session.start_fingerprint != self.ledger.fingerprint() {
            // Tell the group at once, so peers still differing from us can act.
            self.send_hello(now);
        }
    }

    fn handle_response(&mut self, now: Now, sender: NodeId, response: RangesResponse) {
        let received = self.merge(now, response.entries);
        let is_ours = self
            .session
            .as_ref()
            .is_some_and(|s| s.partner == sender && s.inflight.contains_key(&response.request_id));
        if !is_ours {
            self.drop_datagram("stale_response");
            return;
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
        let Some(session) = self.session.as_mut() else {
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
        if !self.push_queue.is_empty() && now.mono_ms >= self.next_push_ms {
            self.push_some(now);
        }
        self.pump(now);
    }

    /// Queues for multicast our entries in `[lo, hi)` whose digests are not in `theirs`.
    fn queue_range_push(&mut self, lo: Key, hi: Key, theirs: &HashSet<Digest>) {
        let ids: Vec<Digest> = self
            .ledger
            .range_keys(lo, hi)
            .map(|key| key.digest)
            .filter(|digest| !theirs.contains(digest))
            .collect();
        for id in ids {
            self.queue_push(id);
        }
    }

    /// Retires a request: spans no datagram answered go back to the front of the queue, and
    /// wanted digests that did not arrive are wanted again.
    fn complete_request(&mut self, request_id: u64) {
        let Some(session) = self.session.as_mut() else {
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

    fn expire_requests(&mut self, now: Now) {
        let timeout = self.cfg.tuning.request_timeout_ms;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let expired: Vec<(u64, bool)> = session
            .inflight
            .iter()
            .filter(|(_, f)| f.sent_ms + timeout <= now.mono_ms)
            .map(|(id, f)| (*id, f.parts_seen.is_empty()))
            .collect();
        if expired.is_empty() {
            return;
        }
        for (id, silent) in &expired {
            if *silent {
                session.silent_requests += 1;
            }
            debug!(target: "sync", "SYNC request {id} to {} timed out; asking again", session.label);
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

    // ---- responder (stateless) ------------------------------------------------------------

    fn answer(&mut self, sender: NodeId, to: SocketAddr, request: RangesRequest, proven: bool) {
        let tuning = self.cfg.tuning.clone();
        let mut budget = tuning.response_budget;
        let mut cookie = None;
        if !proven {
            // Unproven source (maybe spoofed): at most `amplification_factor` times what it
            // sent, counting every datagram at full size, and hand it a cookie to echo.
            let allowance = self.allowance(to);
            budget = budget.min((allowance / MAX_DATAGRAM as u64) as usize);
            cookie = Some(self.cookie_for(to));
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
        let mut builder = ResponseBuilder::new(request.request_id, budget);
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
                self.answer_range(&mut builder, lo, hi, &item.mode, &tuning);
            }
        }
        for mut part in builder.finish() {
            part.cookie = cookie;
            let body = Body::SyncResponse(SyncResponse::Ranges(part));
            if proven {
                self.send_to(sender, to, body);
            } else {
                let allowance = self.allowance(to);
                self.send_limited(sender, to, body, allowance);
            }
        }
    }

    fn answer_range(
        &self,
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
                    b.entries_covering(lo, hi, self.ledger.range(lo, hi));
                    return;
                }
                let mine = self.ledger.range_fingerprint(lo, hi);
                if mine == *theirs {
                    b.item(lo, hi, Mode::Done);
                } else if mine.count as usize <= tuning.id_list_threshold.min(MAX_IDS) {
                    let ids = self.ledger.range_keys(lo, hi).map(|k| k.digest).collect();
                    b.item(lo, hi, Mode::Ids(ids));
                } else {
                    for (a, c) in self.ledger.split(lo, hi, tuning.split_parts) {
                        let fp = self.ledger.range_fingerprint(a, c);
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
                    if !self.ledger.contains(id) && asked.insert(*id) {
                        b.want(*id);
                    }
                }
                b.entries_covering(
                    lo,
                    hi,
                    self.ledger
                        .range_where(lo, hi, |key| !theirs.contains(&key.digest)),
                );
            }
        }
    }
}

/// Removes the covered parts from a list of spans; what is left must be asked again.
fn subtract_spans(spans: &[Span], mut covered: Vec<(Key, Key)>) -> Vec<Span> {
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

/// Packs a response into datagrams that each stand alone, within a datagram budget.
struct ResponseBuilder {
    request_id: u64,
    budget: usize,
    full: Vec<RangesResponse>,
    current: RangesResponse,
    size: usize,
    exhausted: bool,
}

/// Room for a closing `Done` item plus a new run header.
const RESERVE: usize = 64;
/// How many forged entries' digests a peer remembers (16 bytes each, twice over).
const MAX_BAD_SEALS: usize = 4096;
/// Payload limit for the variable parts of one response datagram: room for the version
/// byte, the envelope, the cookie (9) and slack, inside the room sealing leaves.
const RESPONSE_LIMIT: usize = MAX_MESSAGE - 1 - 64 - 16 - 9;

impl ResponseBuilder {
    fn new(request_id: u64, budget: usize) -> ResponseBuilder {
        ResponseBuilder {
            request_id,
            budget: budget.max(1),
            full: Vec::new(),
            current: Self::blank(request_id),
            size: 0,
            exhausted: false,
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
        self.size = 0;
        self.full.push(done);
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
        self.size += cost;
        self.current.entries.push(entry.clone());
        true
    }

    /// Sends `entries` (all within `[lo, hi)`, in key order) and marks the span answered.
    /// When a datagram fills, the part answered so far is closed in it, so every datagram
    /// covers exactly the entries it carries; when the budget runs out, the rest of the span
    /// stays unanswered and the requester asks for it again.
    fn entries_covering(&mut self, lo: Key, hi: Key, entries: impl Iterator<Item = Entry>) {
        let mut cursor = lo;
        for entry in entries {
            if self.exhausted {
                return;
            }
            let cost = wire::encoded_len(&entry);
            if !self.fits(cost + RESERVE) {
                let key = entry.key();
                if cursor < key {
                    let item = RangeItem {
                        upper: key,
                        mode: Mode::Done,
                    };
                    let (item_cost, contiguous) = self.item_cost(cursor, &item);
                    self.push_item(cursor, item, contiguous, item_cost);
                    cursor = key;
                }
                if !self.flush() {
                    return;
                }
            }
            self.size += cost;
            self.current.entries.push(entry);
        }
        self.item(cursor, hi, Mode::Done);
    }

    fn finish(mut self) -> Vec<RangesResponse> {
        let current = std::mem::replace(&mut self.current, Self::blank(self.request_id));
        let has_content =
            !current.runs.is_empty() || !current.entries.is_empty() || !current.want.is_empty();
        if (has_content || self.full.is_empty()) && self.full.len() < self.budget {
            self.full.push(current);
        }
        let parts = self.full.len() as u16;
        for (index, part) in self.full.iter_mut().enumerate() {
            part.part = index as u16;
            part.parts = parts;
        }
        self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::entry::Hlc;

    fn config(name: &str) -> PeerConfig {
        PeerConfig {
            node_name: name.into(),
            group: "raid".into(),
            whisper_port: 1000,
            sync_enabled: true,
            heartbeat_ms: 1000,
            peer_timeout_ms: 5000,
            max_clock_drift_ms: 3_600_000,
            tuning: Tuning::default(),
        }
    }

    fn now(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            unix_ms: 1_700_000_000_000 + ms,
        }
    }

    fn entry(i: u64, target: &str) -> Entry {
        Entry {
            id: new_entry_id(1_600_000_000_000 + i, [(i % 251) as u8; 10]),
            at: Hlc::new(1_600_000_000_000 + i, 0),
            actor: "officer".into(),
            target: target.into(),
            delta: 1,
            new_total: 0,
            reason: format!("entry {i}"),
            kind: crate::proto::entry::EntryKind::Points,
            seal: None,
        }
    }

    /// Delivers every datagram between two peers until both are quiet; returns datagrams.
    fn exchange(a: &mut Peer, b: &mut Peer, mut t: u64) -> (usize, u64) {
        let addr_a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let addr_b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        let mut count = 0;
        for _ in 0..100_000 {
            let from_a = a.drain_actions();
            let from_b = b.drain_actions();
            if from_a.is_empty() && from_b.is_empty() {
                if !a.pushing() && !b.pushing() {
                    break;
                }
                t += 5;
                a.handle_timeout(now(t));
                b.handle_timeout(now(t));
                continue;
            }
            for action in from_a {
                if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
                    count += 1;
                    b.handle_datagram(now(t), Channel::Whisper, addr_a, &d);
                }
            }
            for action in from_b {
                if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
                    count += 1;
                    a.handle_datagram(now(t), Channel::Whisper, addr_b, &d);
                }
            }
        }
        (count, t)
    }

    #[test]
    fn two_peers_with_disjoint_offline_edits_converge() {
        let common: Vec<Entry> = (0..500).map(|i| entry(i, "P")).collect();
        let mut a_entries = common.clone();
        a_entries.extend((1000..1040).map(|i| entry(i, "A")));
        let mut b_entries = common;
        // B's offline edits carry *older* timestamps (clock behind): must still arrive.
        b_entries.extend((100..130).map(|i| entry(i + 10_000_000, "B")));
        b_entries.push(Entry {
            id: new_entry_id(1_600_000_000_005, [0xee; 10]),
            ..entry(5, "old-clock")
        });
        let mut a = Peer::new(config("a"), a_entries, SeededRng::new(1), now(0));
        let mut b = Peer::new(config("b"), b_entries, SeededRng::new(2), now(0));
        a.start(now(0));
        b.start(now(0));
        exchange(&mut a, &mut b, 0);
        assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
        assert_eq!(a.ledger().len(), 500 + 40 + 31);
        assert_eq!(a.ledger().totals(), b.ledger().totals());
    }

    #[test]
    fn longest_group_name_still_fits_every_datagram() {
        // Requests full of id lists and fingerprints must leave room for a 32-byte group
        // name; an over-long datagram cannot be sent and the session would stall.
        let long = |name: &str| PeerConfig {
            group: "g".repeat(crate::proto::wire::MAX_GROUP_BYTES),
            ..config(name)
        };
        let common: Vec<Entry> = (0..4000).map(|i| entry(i, "P")).collect();
        let mut a_entries = common.clone();
        let mut b_entries = common;
        // Many scattered differences: deep splits and full id lists on both sides.
        for i in 0..300u64 {
            let e = Entry {
                id: new_entry_id(1_700_000_000_000 + i, [7; 10]),
                ..entry(i * 13, "X")
            };
            if i % 2 == 0 {
                a_entries.push(e);
            } else {
                b_entries.push(e);
            }
        }
        // Node ids (from the seeds) and split points change every packing, so try many.
        for seed in 0..40 {
            let mut a = Peer::new(long("a"), a_entries.clone(), SeededRng::new(seed), now(0));
            let mut b = Peer::new(long("b"), b_entries.clone(), SeededRng::new(!seed), now(0));
            a.start(now(0));
            b.start(now(0));
            exchange(&mut a, &mut b, 0);
            assert_eq!(a.stats().encode_failures + b.stats().encode_failures, 0);
            assert_eq!(a.ledger().len(), 4300);
            assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
        }
    }

    #[test]
    fn empty_joiner_catches_up_from_large_peer() {
        let entries: Vec<Entry> = (0..5000).map(|i| entry(i, "P")).collect();
        let mut a = Peer::new(config("a"), entries, SeededRng::new(1), now(0));
        let mut b = Peer::new(config("b"), vec![], SeededRng::new(2), now(0));
        a.start(now(0));
        b.start(now(0));
        exchange(&mut a, &mut b, 0);
        assert_eq!(b.ledger().len(), 5000);
        assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
        assert_eq!(b.stats().sessions_completed, 1);
    }

    #[test]
    fn with_no_majority_the_smaller_set_pulls_and_nothing_is_multicast() {
        // Two peers: neither view is a majority. Whichever hears the other first, only the
        // joiner starts a session, and the big log travels over whisper, not the group.
        for a_starts_first in [true, false] {
            let entries: Vec<Entry> = (0..2000).map(|i| entry(i, "P")).collect();
            let mut a = Peer::new(config("a"), entries, SeededRng::new(1), now(0));
            let mut b = Peer::new(config("b"), vec![], SeededRng::new(2), now(0));
            if a_starts_first {
                a.start(now(0));
                b.start(now(0));
            } else {
                b.start(now(0));
                a.start(now(0));
            }
            exchange(&mut a, &mut b, 0);
            assert_eq!(b.ledger().len(), 2000);
            assert_eq!(a.stats().sessions_started, 0);
            assert_eq!(b.stats().sessions_started, 1);
            assert_eq!(a.stats().entries_pushed + b.stats().entries_pushed, 0);
        }
    }

    #[test]
    fn response_datagrams_stay_under_limit_and_cover_request() {
        let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
        let mut a = Peer::new(config("a"), entries, SeededRng::new(1), now(0));
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // A proven requester (it echoes our cookie) gets the full budget.
        let request = full_ranges(9, Some(a.cookie_for(to)));
        a.answer(77, to, request, true);
        let actions = a.drain_actions();
        assert_eq!(actions.len(), Tuning::default().response_budget);
        let mut last_upper = Key::MIN;
        let mut entries_seen = 0;
        for action in actions {
            let Action::SendTo(_, bytes) = action else {
                panic!("expected unicast")
            };
            assert!(bytes.len() <= MAX_MESSAGE, "{}", bytes.len());
            let Body::SyncResponse(SyncResponse::Ranges(r)) = wire::decode(&bytes).unwrap().body
            else {
                panic!("expected ranges response")
            };
            // Every datagram's coverage starts where the previous one's ended, and covers
            // exactly the entries it carries.
            assert_eq!(r.runs[0].lower, last_upper);
            last_upper = r.runs.last().unwrap().items.last().unwrap().upper;
            for e in &r.entries {
                assert!(e.key() >= r.runs[0].lower && e.key() < last_upper);
            }
            entries_seen += r.entries.len();
        }
        assert!(entries_seen > 100);
        assert!(last_upper < Key::MAX, "budget leaves the rest unanswered");
    }

    #[test]
    fn subtract_spans_leaves_gaps() {
        let k = |i: u64| Key {
            at: Hlc(i),
            digest: Digest::default(),
        };
        let span = Span {
            lower: k(0),
            upper: k(100),
            kind: SpanKind::Fingerprint,
        };
        let left = subtract_spans(&[span], vec![(k(10), k(20)), (k(0), k(5)), (k(50), k(200))]);
        let bounds: Vec<(u64, u64)> = left.iter().map(|s| (s.lower.at.0, s.upper.at.0)).collect();
        assert_eq!(bounds, vec![(5, 10), (20, 50)]);
        assert!(subtract_spans(&[span], vec![(k(0), k(100))]).is_empty());
    }

    #[test]
    fn local_adjust_is_multicast_and_stamped_after_seen_entries() {
        let far_future = Entry {
            at: Hlc::new(1_700_000_000_000 + 10_000, 0),
            ..entry(1, "X")
        };
        let mut a = Peer::new(
            config("a"),
            vec![far_future.clone()],
            SeededRng::new(3),
            now(0),
        );
        let request = AdjustRequest {
            actor: "a".into(),
            target: "Bob".into(),
            delta: 7,
            reason: "test".into(),
        };
        let e = a.prepare_adjust(now(0), &request).unwrap();
        assert!(e.key() > far_future.key());
        assert_eq!(e.new_total, 7);
        a.commit_local(now(0), e.clone());
        let actions = a.drain_actions();
        assert!(matches!(actions.as_slice(), [Action::SendGroup(_)]));
        assert_eq!(a.ledger().total("Bob"), 7);
    }

    #[test]
    fn serving_holdoff_ends_on_time_even_before_a_timer_runs() {
        let mut a = Peer::new(config("a"), vec![entry(1, "P")], SeededRng::new(3), now(0));
        a.start(now(0));
        let from: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        let datagram = |body| {
            wire::encode(&Envelope {
                group: "raid".into(),
                from: 42,
                whisper_port: 1002,
                body,
            })
            .unwrap()
        };
        let request = RangesRequest {
            request_id: 1,
            runs: vec![],
            want: vec![],
            cookie: None,
            padding: vec![],
        };
        let request = datagram(Body::SyncRequest(SyncRequest::Ranges(request)));
        a.handle_datagram(now(100), Channel::Whisper, from, &request);
        let hello = datagram(Body::Hello(Hello {
            name: "b".into(),
            fingerprint: Fingerprint { count: 2, sum: 5 },
            newest: None,
        }));
        a.handle_datagram(now(600), Channel::Group, from, &hello);
        assert!(!a.in_session(), "b is asking us: held off");
        // The hold-off is over; no timer has run since.
        let after = 100 + Tuning::default().serving_holdoff_ms;
        a.handle_datagram(now(after), Channel::Group, from, &hello);
        assert!(a.in_session(), "hold-off over: b is a partner again");
    }

    #[test]
    fn sync_off_sends_nothing_and_ignores_traffic() {
        let mut cfg = config("a");
        cfg.sync_enabled = false;
        let mut a = Peer::new(cfg, vec![], SeededRng::new(3), now(0));
        a.start(now(0));
        a.handle_timeout(now(10_000));
        let e = a
            .prepare_adjust(
                now(0),
                &AdjustRequest {
                    actor: "a".into(),
                    target: "Bob".into(),
                    delta: 1,
                    reason: String::new(),
                },
            )
            .unwrap();
        a.commit_local(now(0), e);
        assert!(a.drain_actions().is_empty());
        a.handle_datagram(
            now(1),
            Channel::Group,
            "127.0.0.1:1".parse().unwrap(),
            b"junk",
        );
        assert_eq!(a.stats().dropped.get("sync_off"), Some(&1));
        a.set_sync_enabled(now(2), true);
        assert!(
            !a.drain_actions().is_empty(),
            "HELLO + probe on switching on"
        );
    }

    mod officers {
        use super::*;
        use crate::proto::entry::EntryKind;
        use crate::proto::signature::SecretKey;

        fn root() -> SecretKey {
            SecretKey::from_seed([100; 32])
        }

        fn roster_change(ms: u64, seed: u8, name: &str, kind: EntryKind) -> Entry {
            let mut e = entry(0, name);
            e.id = new_entry_id(ms, [seed; 10]);
            e.at = Hlc::new(ms, 0);
            e.delta = 0;
            e.kind = kind;
            root().sign(&mut e);
            e
        }

        fn secured_peer(name: &str, seed: u64, officer: Option<SecretKey>) -> Peer {
            let mut peer = Peer::new(config(name), Vec::new(), SeededRng::new(seed), now(0));
            peer.set_roster(Some(root().public()), officer.map(Arc::new));
            peer
        }

        /// Peers `a` (no officer key) and `b` (holding `alice`'s key), both knowing that
        /// alice is an officer.
        fn alice_officer_on_b(alice: &SecretKey) -> (Peer, Peer) {
            let add = roster_change(
                1_700_000_000_000,
                1,
                "alice",
                EntryKind::OfficerAdd {
                    public_key: alice.public(),
                },
            );
            let mut a = secured_peer("a", 1, None);
            let mut b = secured_peer("b", 2, Some(SecretKey::from_seed([1; 32])));
            a.commit_local(now(1), add.clone());
            b.commit_local(now(1), add);
            (a, b)
        }

        fn log_entry_datagram(entries: Vec<Entry>) -> Vec<u8> {
            wire::encode(&Envelope {
                group: "raid".into(),
                from: 0xbad,
                whisper_port: 9,
                body: Body::LogEntry(entries),
            })
            .unwrap()
        }

        #[test]
        fn adjust_without_an_officer_key_fails_once_a_root_key_is_set() {
            let mut peer = secured_peer("a", 1, None);
            let request = AdjustRequest {
                actor: "a".into(),
                target: "Ann".into(),
                delta: 5,
                reason: "raid".into(),
            };
            assert_eq!(
                peer.prepare_adjust(now(1), &request),
                Err(EntryError::NoOfficerKey)
            );
            let mut open = Peer::new(config("b"), Vec::new(), SeededRng::new(2), now(0));
            let entry = open.prepare_adjust(now(1), &request).unwrap();
            assert_eq!(entry.seal, None, "an open roster signs nothing");
        }

        #[test]
        fn forged_entries_are_dropped_and_unsigned_ones_kept_but_rejected() {
            let officer = SecretKey::from_seed([1; 32]);
            let mut peer = secured_peer("a", 1, None);
            let mut forged = entry(1, "Ann");
            officer.sign(&mut forged);
            forged.delta = 1_000; // changed after signing
            let unsigned = entry(2, "Ann");
            let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
            peer.handle_datagram(
                now(1),
                Channel::Group,
                from,
                &log_entry_datagram(vec![forged, unsigned.clone()]),
            );
            assert_eq!(peer.stats().dropped.get("bad_signature"), Some(&1));
            assert_eq!(peer.ledger().len(), 1, "the forgery is not stored");
            assert!(peer.ledger().contains(&unsigned.digest()));
            assert_eq!(
                peer.ledger().rejected(),
                1,
                "the unsigned entry counts for nothing"
            );
            assert_eq!(peer.ledger().total("Ann"), 0);
        }

        /// The same forgery arriving again is dropped from memory of it, without another
        /// signature check (counted apart, so this test sees which path dropped it); the
        /// memory is bounded.
        #[test]
        fn a_repeated_forgery_is_remembered_within_a_bound() {
            let officer = SecretKey::from_seed([1; 32]);
            let mut peer = secured_peer("a", 1, None);
            let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let forgery = |i: u64| {
                let mut e = entry(i, "Ann");
                officer.sign(&mut e);
                e.delta = 1_000;
                e
            };
            for round in 0..3 {
                peer.handle_datagram(
                    now(round),
                    Channel::Group,
                    from,
                    &log_entry_datagram(vec![forgery(1)]),
                );
            }
            assert_eq!(peer.stats().dropped.get("bad_signature"), Some(&1));
            assert_eq!(peer.stats().dropped.get("known_forgery"), Some(&2));
            assert_eq!(peer.bad_seals.len(), 1);
            for i in 0..(MAX_BAD_SEALS as u64 + 10) {
                peer.remember_bad_seal(forgery(i + 2).digest());
            }
            assert_eq!(peer.bad_seals.len(), MAX_BAD_SEALS);
            assert_eq!(peer.bad_seal_set.len(), MAX_BAD_SEALS);
            assert!(peer.ledger().is_empty());
        }

        /// A peer that held unsigned entries before the group set a root key still
        /// reconciles with one that never had them: they end up on both, counting nowhere.
        #[test]
        fn unsigned_entries_from_before_the_root_key_still_reconcile() {
            let old: Vec<Entry> = (0..50).map(|i| entry(i, "Ann")).collect();
            let mut a = Peer::new(config("a"), old, SeededRng::new(1), now(0));
            a.set_roster(Some(root().public()), None);
            let mut b = secured_peer("b", 2, None);
            assert_eq!(a.ledger().total("Ann"), 0);
            a.start(now(0));
            b.start(now(0));
            exchange(&mut a, &mut b, 0);
            assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
            assert_eq!(b.ledger().len(), 50);
            assert_eq!(b.ledger().rejected(), 50);
            assert_eq!(b.ledger().total("Ann"), 0);
        }

        /// A group member without an officer key copies an officer entry's id into a body of
        /// its own and races it to one peer. Entries are identified by content, so both
        /// bodies end up everywhere, the officer's counting and the copy rejected, instead of
        /// the first one seen hiding the other for good.
        #[test]
        fn a_second_body_under_an_entrys_id_cannot_hide_the_first() {
            let alice = SecretKey::from_seed([1; 32]);
            let mallory = SecretKey::from_seed([66; 32]);
            let (mut a, mut b) = alice_officer_on_b(&alice);
            let request = AdjustRequest {
                actor: "alice".into(),
                target: "Ann".into(),
                delta: 5,
                reason: "raid".into(),
            };
            let legit = b.prepare_adjust(now(10), &request).unwrap();
            b.commit_local(now(10), legit.clone());
            let mut copy = legit.clone();
            copy.delta = 1_000;
            copy.target = "Mallory".into();
            mallory.sign(&mut copy);
            assert_eq!(copy.id, legit.id);
            let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
            a.handle_datagram(
                now(11),
                Channel::Group,
                from,
                &log_entry_datagram(vec![copy.clone()]),
            );
            a.drain_actions();
            b.drain_actions();
            a.start(now(200));
            b.start(now(200));
            exchange(&mut a, &mut b, 200);
            for peer in [&a, &b] {
                assert!(peer.ledger().contains(&legit.digest()));
                assert!(peer.ledger().contains(&copy.digest()));
                assert_eq!(peer.ledger().total("Ann"), 5);
                assert_eq!(peer.ledger().total("Mallory"), 0);
                assert_eq!(peer.ledger().rejected(), 1);
            }
            assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
        }

        /// Alice is an officer; the root removes her on peer A while she keeps adjusting on
        /// peer B, partitioned. Once they sync, both agree exactly which of her entries count,
        /// whichever way the timestamps fall.
        #[test]
        fn a_removal_racing_with_adjusts_resolves_identically_on_both_peers() {
            let alice = SecretKey::from_seed([1; 32]);
            let (mut a, mut b) = alice_officer_on_b(&alice);
            a.drain_actions();
            b.drain_actions();
            // B adjusts before and after the moment of the removal (its HLC follows now()).
            let request = |delta| AdjustRequest {
                actor: "alice".into(),
                target: "Ann".into(),
                delta,
                reason: "raid".into(),
            };
            let before = b.prepare_adjust(now(10), &request(1)).unwrap();
            b.commit_local(now(10), before);
            let remove =
                roster_change(1_700_000_000_000 + 50, 2, "alice", EntryKind::OfficerRemove);
            a.commit_local(now(50), remove);
            let after = b.prepare_adjust(now(100), &request(10)).unwrap();
            b.commit_local(now(100), after);
            assert_eq!(
                b.ledger().total("Ann"),
                11,
                "B has not heard of the removal"
            );
            a.drain_actions();
            b.drain_actions();
            a.start(now(200));
            b.start(now(200));
            exchange(&mut a, &mut b, 200);
            assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
            assert_eq!(
                a.ledger().total("Ann"),
                1,
                "only the entry before the removal counts"
            );
            assert_eq!(b.ledger().totals(), a.ledger().totals());
            assert_eq!(b.ledger().rejected(), 1);
            assert_eq!(a.ledger().history(None), b.ledger().history(None));
            // Now that B has heard of the removal, it refuses to sign for alice at all.
            assert!(matches!(
                b.prepare_adjust(now(5_000), &request(3)),
                Err(EntryError::NotAnOfficer(_))
            ));
        }
    }

    // ---- security: sealing and abuse limits ------------------------------------------------

    fn sealed(peer: &mut Peer, key: u8, seed: u8) {
        use crate::proto::seal::{GroupKey, Keyring, NoncePrefix};
        let keyring = Keyring::new(GroupKey::from_bytes(&[key; 32]), vec![]);
        peer.set_group_key(Sealer::new(keyring, NoncePrefix([seed; 16])), [seed; 32]);
    }

    /// Two peers holding group key 7: `a` with `a_entries`, `b` with `b_entries`.
    fn sealed_pair(a_entries: Vec<Entry>, b_entries: Vec<Entry>) -> (Peer, Peer) {
        let mut a = Peer::new(config("a"), a_entries, SeededRng::new(1), now(0));
        let mut b = Peer::new(config("b"), b_entries, SeededRng::new(2), now(0));
        sealed(&mut a, 7, 1);
        sealed(&mut b, 7, 2);
        (a, b)
    }

    /// A datagram from a (possibly hostile) member holding group key `key`.
    fn forged(key: u8, from: NodeId, whisper_port: u16, body: Body) -> Vec<u8> {
        use crate::proto::seal::{GroupKey, Keyring, NoncePrefix};
        let keyring = Keyring::new(GroupKey::from_bytes(&[key; 32]), vec![]);
        let mut sealer = Sealer::new(keyring, NoncePrefix([0xee; 16]));
        let clear = wire::encode(&Envelope {
            group: "raid".into(),
            from,
            whisper_port,
            body,
        })
        .unwrap();
        sealer.seal(clear).unwrap()
    }

    fn full_range_request(request_id: u64, cookie: Option<Cookie>) -> Body {
        Body::SyncRequest(SyncRequest::Ranges(full_ranges(request_id, cookie)))
    }

    /// A request for the whole key space from a peer holding nothing.
    fn full_ranges(request_id: u64, cookie: Option<Cookie>) -> RangesRequest {
        RangesRequest {
            request_id,
            runs: vec![Run {
                lower: Key::MIN,
                items: vec![RangeItem {
                    upper: Key::MAX,
                    mode: Mode::Fingerprint(Fingerprint::default()),
                }],
            }],
            want: vec![],
            cookie,
            padding: vec![],
        }
    }

    #[test]
    fn sealed_peers_converge_and_other_keys_or_clear_text_are_dropped() {
        let entries: Vec<Entry> = (0..2000).map(|i| entry(i, "P")).collect();
        let (mut a, mut b) = sealed_pair(entries, vec![]);
        a.start(now(0));
        b.start(now(0));
        exchange(&mut a, &mut b, 0);
        assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
        assert_eq!(a.stats().encode_failures + b.stats().encode_failures, 0);
        // Outsiders: another key, and no key at all. Each sends everything it would.
        let mut other_key = Peer::new(
            config("x"),
            vec![entry(99_999, "X")],
            SeededRng::new(3),
            now(0),
        );
        sealed(&mut other_key, 8, 3);
        let mut clear = Peer::new(
            config("y"),
            vec![entry(88_888, "Y")],
            SeededRng::new(4),
            now(0),
        );
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let before = a.ledger().fingerprint();
        for outsider in [&mut other_key, &mut clear] {
            outsider.start(now(10));
            outsider.commit_local(now(10), entry(77_777, "Z"));
            for action in outsider.drain_actions() {
                if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
                    a.handle_datagram(now(20), Channel::Group, from, &d);
                }
            }
        }
        assert_eq!(a.ledger().fingerprint(), before);
        assert_eq!(a.peers().count(), 1, "only b is known");
        assert!(a.stats().dropped.get("unknown_key").copied().unwrap_or(0) >= 3);
        assert!(a.stats().dropped.get("unsealed").copied().unwrap_or(0) >= 3);
        // And what a sealed peer sends teaches an outsider nothing.
        a.commit_local(now(30), entry(66_666, "Secret"));
        for action in a.drain_actions() {
            if let Action::SendGroup(d) = action {
                assert!(
                    !d.windows(6).any(|w| w == b"Secret"),
                    "plaintext on the wire"
                );
                clear.handle_datagram(now(30), Channel::Group, from, &d);
                other_key.handle_datagram(now(30), Channel::Group, from, &d);
            }
        }
        assert_eq!(clear.ledger().len(), 2);
        assert_eq!(other_key.ledger().len(), 2);
        assert_eq!(clear.stats().dropped.get("sealed_no_key"), Some(&1));
        assert_eq!(other_key.stats().dropped.get("unknown_key"), Some(&1));
    }

    #[test]
    fn replayed_datagrams_change_nothing() {
        let a_entries: Vec<Entry> = (0..300).map(|i| entry(i, "A")).collect();
        let b_entries: Vec<Entry> = (300..400).map(|i| entry(i, "B")).collect();
        let (mut a, mut b) = sealed_pair(a_entries, b_entries);
        a.start(now(0));
        b.start(now(0));
        // Record every datagram of a whole reconciliation, as an eavesdropper would.
        let addr: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let mut recorded: Vec<Vec<u8>> = Vec::new();
        let mut t = 0;
        for _ in 0..10_000 {
            let mut quiet = true;
            for (from_a, actions) in [(true, a.drain_actions()), (false, b.drain_actions())] {
                for action in actions {
                    if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
                        quiet = false;
                        recorded.push(d.clone());
                        let to = if from_a { &mut b } else { &mut a };
                        to.handle_datagram(now(t), Channel::Whisper, addr, &d);
                    }
                }
            }
            if quiet && !a.pushing() && !b.pushing() {
                break;
            }
            t += 5;
            a.handle_timeout(now(t));
            b.handle_timeout(now(t));
        }
        assert_eq!(a.ledger().len(), 400);
        assert_eq!(a.ledger().fingerprint(), b.ledger().fingerprint());
        assert!(recorded.len() > 10);
        let (fa, fb) = (a.ledger().fingerprint(), b.ledger().fingerprint());
        let (ma, mb) = (a.stats().entries_merged, b.stats().entries_merged);
        // Replay all of it, twice, at both peers, much later.
        for round in 0..2 {
            for d in &recorded {
                a.handle_datagram(now(t + 60_000 + round), Channel::Whisper, addr, d);
                b.handle_datagram(now(t + 60_000 + round), Channel::Whisper, addr, d);
            }
        }
        assert_eq!(
            (a.ledger().fingerprint(), b.ledger().fingerprint()),
            (fa, fb)
        );
        assert_eq!(
            (a.stats().entries_merged, b.stats().entries_merged),
            (ma, mb)
        );
        let persisted = a
            .drain_actions()
            .into_iter()
            .chain(b.drain_actions())
            .filter(|x| matches!(x, Action::Persist { .. }))
            .count();
        assert_eq!(persisted, 0, "a replay stored something");
    }

    #[test]
    fn spoofed_request_flood_gets_answers_within_3x_budget() {
        let entries: Vec<Entry> = (0..3000).map(|i| entry(i, "P")).collect();
        let mut a = Peer::new(config("a"), entries, SeededRng::new(1), now(0));
        sealed(&mut a, 7, 1);
        // A member spoofs requests "from" 40 victims (same victims again and again) and
        // from fresh addresses, with no cookie or a made-up one.
        let mut received: HashMap<SocketAddr, u64> = HashMap::new();
        let mut sent: HashMap<SocketAddr, u64> = HashMap::new();
        let mut rng = SeededRng::new(99);
        for i in 0..5_000u64 {
            let victim = if i % 2 == 0 {
                format!("10.0.0.{}", i % 40).parse().unwrap()
            } else {
                std::net::IpAddr::from((i as u32).to_be_bytes())
            };
            let port = 2000 + (i % 3) as u16;
            let cookie = (i % 3 == 0).then(|| rng.bytes::<8>());
            let body = if i % 5 == 0 {
                Body::SyncRequest(SyncRequest::Probe {
                    fingerprint: Fingerprint::default(),
                })
            } else {
                full_range_request(i, cookie)
            };
            let d = forged(7, 1_000_000 + i, port, body);
            let reply_to = SocketAddr::new(victim, port);
            *received.entry(reply_to).or_insert(0) += d.len() as u64;
            a.handle_datagram(now(i), Channel::Whisper, SocketAddr::new(victim, 9), &d);
            for action in a.drain_actions() {
                if let Action::SendTo(to, bytes) = action {
                    *sent.entry(to).or_insert(0) += bytes.len() as u64;
                }
            }
        }
        assert!(
            !sent.is_empty(),
            "unproven requesters still get a cookie back"
        );
        for (to, bytes) in &sent {
            let got = received.get(to).copied().unwrap_or(0);
            assert!(*bytes <= 3 * got, "{to}: sent {bytes} for {got} received");
        }
        let total_sent: u64 = sent.values().sum();
        let total_received: u64 = received.values().sum();
        assert!(total_sent <= 3 * total_received);
        assert!(a.stats().answers_limited > 0);
        assert!(a.tracked_sources() <= Tuning::default().max_sources);
        assert!(a.peers().count() <= Tuning::default().max_peers);
    }

    #[test]
    fn request_token_bucket_limits_one_source() {
        let mut a = Peer::new(config("a"), vec![entry(1, "P")], SeededRng::new(1), now(0));
        let from: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let burst = Tuning::default().request_burst as u64;
        // A burst at one instant: the bucket's size gets through, the rest is dropped.
        for i in 0..burst + 50 {
            let d = wire::encode(&Envelope {
                group: "raid".into(),
                from: 5,
                whisper_port: 1001,
                body: full_range_request(i, None),
            })
            .unwrap();
            a.handle_datagram(now(10), Channel::Whisper, from, &d);
        }
        assert_eq!(a.stats().dropped.get("rate_limited"), Some(&50));
        // Tokens come back with time.
        let d = wire::encode(&Envelope {
            group: "raid".into(),
            from: 5,
            whisper_port: 1001,
            body: full_range_request(9999, None),
        })
        .unwrap();
        a.handle_datagram(now(1_010), Channel::Whisper, from, &d);
        assert_eq!(a.stats().dropped.get("rate_limited"), Some(&50));
        // A proven source draws from its own, bigger bucket: the empty unproven one does
        // not hold it back.
        let whisper: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let cookie = Some(a.cookie_for(whisper));
        let proven_burst = Tuning::default().proven_request_burst as u64;
        for i in 0..proven_burst + 7 {
            let d = wire::encode(&Envelope {
                group: "raid".into(),
                from: 5,
                whisper_port: 1001,
                body: full_range_request(10_000 + i, cookie),
            })
            .unwrap();
            a.handle_datagram(now(1_010), Channel::Whisper, from, &d);
        }
        // The proven bucket admits its burst and drops the rest.
        assert_eq!(a.stats().dropped.get("rate_limited"), Some(&(50 + 7)));
    }

    #[test]
    fn honest_requester_proves_its_address_once_and_gets_the_full_budget() {
        let entries: Vec<Entry> = (0..5000).map(|i| entry(i, "P")).collect();
        let (mut a, mut b) = sealed_pair(entries, vec![]);
        a.start(now(0));
        b.start(now(0));
        exchange(&mut a, &mut b, 0);
        assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
        // b learnt a's cookie from its summary or first answer; from then on every answer
        // was full size, so at most one answer was ever cut.
        assert!(a.stats().answers_limited <= 1, "{:?}", a.stats());
        assert!(b.peers().all(|p| b.cookies.contains_key(&p.whisper)));
        assert_eq!(b.stats().sessions_completed, 1);
        assert!(b.stats().requests_sent <= 80, "{}", b.stats().requests_sent);
    }

    #[test]
    fn peer_and_source_tables_stay_bounded_under_fake_node_id_flood() {
        let entries: Vec<Entry> = (0..500).map(|i| entry(i, "P")).collect();
        let mut a = Peer::new(config("a"), entries.clone(), SeededRng::new(1), now(0));
        sealed(&mut a, 7, 1);
        let tuning = Tuning::default();
        let flood = 20_000u64;
        for i in 0..flood {
            let ip = std::net::IpAddr::from((0x0a00_0000u32 + i as u32).to_be_bytes());
            let body = if i % 2 == 0 {
                Body::Hello(Hello {
                    name: format!("fake{i}"),
                    fingerprint: Fingerprint {
                        count: i,
                        sum: i as u128,
                    },
                    newest: None,
                })
            } else {
                Body::SyncRequest(SyncRequest::Probe {
                    fingerprint: Fingerprint { count: i, sum: 1 },
                })
            };
            let d = forged(7, i + 10, 3000, body);
            a.handle_datagram(now(i / 10), Channel::Group, SocketAddr::new(ip, 3000), &d);
            a.drain_actions();
            assert!(a.peers().count() <= tuning.max_peers);
            assert!(a.tracked_sources() <= tuning.max_sources);
        }
        assert!(a.stats().peers_evicted >= flood - tuning.max_peers as u64);
        // An honest peer still reconciles afterwards.
        let mut b = Peer::new(
            config("b"),
            entries[..100].to_vec(),
            SeededRng::new(2),
            now(0),
        );
        sealed(&mut b, 7, 2);
        let t = flood;
        b.start(now(t));
        exchange(&mut a, &mut b, t);
        assert_eq!(b.ledger().fingerprint(), a.ledger().fingerprint());
    }

    #[test]
    fn key_rotation_keeps_peers_talking_at_every_step() {
        use crate::proto::seal::{GroupKey, Keyring, NoncePrefix};
        let (old, new) = (
            GroupKey::from_bytes(&[1; 32]),
            GroupKey::from_bytes(&[2; 32]),
        );
        let install = |peer: &mut Peer, current: &GroupKey, previous: &[&GroupKey], seed: u8| {
            let keyring = Keyring::new(
                current.clone(),
                previous.iter().map(|k| (*k).clone()).collect(),
            );
            peer.set_group_key(Sealer::new(keyring, NoncePrefix([seed; 16])), [seed; 32]);
        };
        let mut a = Peer::new(config("a"), vec![], SeededRng::new(1), now(0));
        let mut b = Peer::new(config("b"), vec![], SeededRng::new(2), now(0));
        a.start(now(0));
        b.start(now(0));
        // Each step reconfigures one side at a time (a rolling restart) and both must still
        // exchange a new entry each way.
        let steps: [(&GroupKey, &[&GroupKey], &GroupKey, &[&GroupKey]); 4] = [
            (&old, &[], &old, &[]),
            (&old, &[&new], &old, &[]),     // a learns the new key first
            (&old, &[&new], &old, &[&new]), // then everyone does
            (&new, &[&old], &old, &[&new]), // a sends with the new key before b switches
        ];
        let mut t = 0;
        for (step, (a_cur, a_prev, b_cur, b_prev)) in steps.iter().enumerate() {
            install(&mut a, a_cur, a_prev, 10 + step as u8);
            install(&mut b, b_cur, b_prev, 20 + step as u8);
            let i = step as u64 * 2;
            let e = a.prepare_adjust(
                now(t),
                &AdjustRequest {
                    actor: "a".into(),
                    target: "P".into(),
                    delta: 1,
                    reason: format!("step {step}"),
                },
            );
            a.commit_local(now(t), e.unwrap());
            let e = b.prepare_adjust(
                now(t),
                &AdjustRequest {
                    actor: "b".into(),
                    target: "Q".into(),
                    delta: 1,
                    reason: format!("step {step}"),
                },
            );
            b.commit_local(now(t), e.unwrap());
            t = exchange(&mut a, &mut b, t).1 + 10;
            assert_eq!(a.ledger().len() as u64, i + 2, "step {step}");
            assert_eq!(
                a.ledger().fingerprint(),
                b.ledger().fingerprint(),
                "step {step}"
            );
        }
        let dropped = |p: &Peer| {
            p.stats()
                .dropped
                .keys()
                .filter(|k| k.contains("key"))
                .count()
        };
        assert_eq!(
            dropped(&a) + dropped(&b),
            0,
            "no datagram lost to the rotation"
        );
    }

    #[test]
    fn first_request_without_a_cookie_is_padded_and_its_answer_carries_entries() {
        let entries: Vec<Entry> = (0..5000).map(|i| entry(i, "P")).collect();
        let (mut a, mut b) = sealed_pair(entries, vec![]);
        let addr: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        // b hears a's HELLO (no probe, so no summary cookie) and starts reconciling.
        a.start(now(0));
        for action in a.drain_actions() {
            if let Action::SendGroup(d) = action {
                let clear = a.sealer.open(&d).unwrap().into_owned();
                if matches!(wire::decode(&clear).unwrap().body, Body::Hello(_)) {
                    b.handle_datagram(now(1), Channel::Group, addr, &d);
                }
            }
        }
        assert!(b.in_session());
        let requests: Vec<Vec<u8>> = b
            .drain_actions()
            .into_iter()
            .filter_map(|x| match x {
                Action::SendTo(_, d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].len() > MAX_DATAGRAM - 8 && requests[0].len() <= MAX_DATAGRAM,
            "padded to a full datagram: {}",
            requests[0].len()
        );
        a.handle_datagram(now(2), Channel::Whisper, addr, &requests[0]);
        let answers: Vec<Vec<u8>> = a
            .drain_actions()
            .into_iter()
            .filter_map(|x| match x {
                Action::SendTo(_, d) => Some(d),
                _ => None,
            })
            .collect();
        let sent: usize = answers.iter().map(Vec::len).sum();
        assert!(
            answers.len() >= 2 && sent <= 3 * requests[0].len(),
            "{sent}"
        );
        for d in &answers {
            b.handle_datagram(now(3), Channel::Whisper, addr, d);
        }
        assert!(
            b.ledger().len() >= 10,
            "first answer carried {}",
            b.ledger().len()
        );
        assert!(
            b.peers().all(|p| b.cookies.contains_key(&p.whisper)),
            "cookie learnt"
        );
    }
}
