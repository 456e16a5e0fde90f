//! The sync protocol as a sans-IO state machine.
//!
//! A [`Peer`] owns the replayed [`Ledger`] and the protocol state. It is driven by plain
//! calls — a datagram arrived, a timer fired, a local adjust — each with the current time,
//! and answers with [`Action`]s: datagrams to send, entries to persist. It owns no sockets,
//! clocks or entropy (a seeded RNG is passed in), so the daemon and the deterministic
//! simulator in `tests/` drive exactly the same code.
//!
//! # How peers converge
//! * Every peer multicasts `HELLO` (its set fingerprint) every heartbeat, with jitter, and
//!   sends it by unicast to its listed and learned unicast peers (peers beyond the LAN).
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
//! * Beyond one LAN: everything sent "to the group" also goes by unicast to the listed and
//!   learned peers; a datagram that came over whisper is answered at its actual source
//!   address (behind NAT the advertised whisper port is not the visible one); entries new to
//!   us are forwarded to the peers that did not hear them, so an always-on hub is just a
//!   peer; and a difference that persists is reconciled even against the majority rule, so
//!   some side always starts (see `partner`).
//!
//! # Where each concern lives
//! This file holds the [`Peer`] and turns each input into calls on the concerns, each in its
//! own file with the state it owns:
//! * `config`: what a peer is told about itself ([`PeerConfig`], [`Tuning`]);
//! * `driver`: what passes between a peer and its driver ([`Now`], [`Channel`], [`Action`]);
//! * `stats`: the counters ([`Stats`]);
//! * `peer_table`: the peers we hear ([`PeerInfo`], [`Reach`]);
//! * `unicast`: listed and learned unicast peers, retries with backoff ([`ListedPeer`]);
//! * `fanout`: where group-bound messages go, and forwarding new entries;
//! * `announce`: HELLO and probe;
//! * `admission`: cookies, token buckets and the anti-amplification limit;
//! * `outbox`: envelopes, encoding, sealing and the queue of actions;
//! * `merge`: entries taken in from peers, and the memory of forgeries;
//! * `push`: multicasting entries the group lacks;
//! * `partner`: whom to reconcile with (the majority rule, the stalemate rule);
//! * `requester` and `responder`: the two sides of a session;
//! * `local`: entries made on this machine.

mod admission;
mod announce;
mod config;
mod driver;
mod fanout;
mod local;
mod merge;
mod outbox;
mod partner;
mod peer_table;
mod push;
mod requester;
mod responder;
mod rto;
mod stats;
mod unicast;

#[cfg(test)]
mod tests;

pub use config::{PeerConfig, Tuning};
pub use driver::{Action, Channel, Now};
pub use peer_table::{PeerInfo, Reach};
pub use stats::Stats;
pub use unicast::ListedPeer;

use crate::core::ledger::{Ledger, ReplayJob, ReplayResult};
use crate::core::rng::SeededRng;
use crate::proto::digest::Key;
use crate::proto::entry::Entry;
use crate::proto::hlc::HlcClock;
use crate::proto::keys::PublicKey;
use crate::proto::seal::Sealer;
use crate::proto::signature::{SecretKey, Verifier};
use crate::proto::wire::{self, Body, NodeId, SyncRequest, SyncResponse};
use ::core::net::SocketAddr;
use admission::Admission;
use announce::Announcer;
use fanout::Origin;
use merge::ForgeryMemory;
use outbox::Outbox;
use partner::Stalemates;
use peer_table::PeerTable;
use push::PushQueue;
use requester::Requester;
use std::sync::Arc;
use tracing::{debug, info};
use unicast::Unicast;

/// The sans-IO peer: ledger, clock, peer table, sessions and timers.
pub struct Peer {
    cfg: PeerConfig,
    node_id: NodeId,
    ledger: Ledger,
    clock: HlcClock,
    /// Node id, entry ids, heartbeat jitter and partner choice: every random decision, so a
    /// seed replays.
    rng: SeededRng,
    sync_enabled: bool,
    /// This machine's officer key: local adjusts are signed with it.
    officer_key: Option<Arc<SecretKey>>,
    peers: PeerTable,
    /// Listed and learned unicast peers.
    unicast: Unicast,
    /// Differences from peers that nobody reconciles (see `partner`).
    stalemates: Stalemates,
    /// When our set last changed (monotonic ms): a peer's report from before then may
    /// differ only by what we just received (see `partner`).
    changed_ms: u64,
    announcer: Announcer,
    admission: Admission,
    outbox: Outbox,
    forgeries: ForgeryMemory,
    signatures: Verifier,
    push: PushQueue,
    requester: Requester,
    stats: Stats,
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
            outbox: Outbox::new(cfg.group.clone(), node_id, cfg.whisper_port),
            cfg,
            node_id,
            ledger,
            clock,
            rng,
            officer_key: None,
            peers: PeerTable::default(),
            unicast: Unicast::default(),
            stalemates: Stalemates::default(),
            changed_ms: 0,
            announcer: Announcer::new(now),
            admission: Admission::new(cookie_key),
            forgeries: ForgeryMemory::default(),
            signatures: Verifier::default(),
            push: PushQueue::new(now),
            requester: Requester::default(),
            stats: Stats::default(),
        }
    }

    /// Installs the group key and the cookie secret. Both come from the driver, not from
    /// the seeded RNG: that generator's state is revealed by the node id it broadcasts, so
    /// secrets drawn from it would be predictable. The daemon uses OS entropy; tests and
    /// the simulator may pass seeded bytes.
    pub fn set_group_key(&mut self, sealer: Sealer, cookie_key: [u8; 32]) {
        self.outbox.set_sealer(sealer);
        self.admission.set_cookie_key(cookie_key);
    }

    /// Id of the group key datagrams are sealed with (what `status` shows); `None` in the
    /// clear.
    pub fn group_key_id(&self) -> Option<crate::proto::seal::KeyId> {
        self.outbox.sealer().key_id()
    }

    /// Number of source addresses tracked for rate limiting (bounded by
    /// [`Tuning::max_sources`]).
    pub fn tracked_sources(&self) -> usize {
        self.admission.tracked_sources()
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

    /// Hands the ledger's replays to the caller instead of running them inside the call
    /// that needs one (see [`Ledger::defer_replays`]): the daemon runs them on a thread of
    /// their own, so a roster change merged at a heal never stalls its core thread.
    pub fn defer_replays(&mut self, on: bool) {
        self.ledger.defer_replays(on);
    }

    /// The replay to run, if the ledger needs one and none is running (only when
    /// deferred): poll it after every call, as [`Peer::drain_actions`], run it anywhere, and
    /// give the result to [`Peer::handle_replay`].
    pub fn poll_replay(&mut self) -> Option<ReplayJob> {
        self.ledger.take_replay()
    }

    /// Takes in a replay's result; returns whether it was used. One overtaken by another
    /// roster change is not (and [`Peer::poll_replay`] then hands out a new job), nor one
    /// from before the ledger replayed at once (a new root key with replays not deferred).
    pub fn handle_replay(&mut self, result: ReplayResult) -> bool {
        let used = self.ledger.finish_replay(result);
        tracing::debug!(
            target: "sync",
            "SYNC replay result {}",
            if used { "taken in: totals are current" } else { "not used" }
        );
        used
    }

    /// Tells a replay handed out to stop early; the totals stay stale (a daemon shutting
    /// down will not take its result in).
    pub fn abandon_replay(&mut self) {
        self.ledger.abandon_replay();
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
        self.peers.iter()
    }

    /// Whether sync is switched on.
    pub fn sync_enabled(&self) -> bool {
        self.sync_enabled
    }

    /// Whether a reconciliation session is running.
    pub fn in_session(&self) -> bool {
        self.requester.in_session()
    }

    /// Whether entries are still queued to be multicast.
    pub fn pushing(&self) -> bool {
        !self.push.is_empty()
    }

    /// Takes the actions produced so far.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        self.outbox.drain()
    }

    /// Joins the group: announces ourselves and asks who differs, on the group and to the
    /// unicast peers; listed peers that have not answered are contacted at once. Call once
    /// at start-up.
    pub fn start(&mut self, now: Now) {
        if self.sync_enabled {
            info!(target: "sync", "SYNC joining group {}", self.cfg.group);
            self.send_hello(now);
            self.send_probe(now);
            self.unicast.contact_all_now(now, self.cfg.heartbeat_ms);
            self.contact_listed(now);
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
            self.requester.drop_session();
            self.peers.clear();
            self.push.clear();
            self.unicast.clear_learned();
            self.stalemates.clear();
        }
    }

    /// The earliest monotonic time at which [`Peer::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.sync_enabled {
            return None;
        }
        let due = [
            Some(self.announcer.next_hello_ms()),
            self.push.next_due(),
            self.requester.next_timeout(),
            self.peers.next_expiry(self.cfg.peer_timeout_ms),
            self.unicast.next_contact_ms(),
        ];
        due.into_iter().flatten().min()
    }

    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        if !self.sync_enabled {
            return;
        }
        if now.mono_ms >= self.announcer.next_hello_ms() {
            self.send_hello(now);
        }
        self.expire_peers(now);
        self.unicast.expire_learned(now, self.cfg.peer_timeout_ms);
        self.contact_listed(now);
        self.refresh_reach(now);
        self.peers
            .prune_holdoffs(now, self.cfg.tuning.serving_holdoff_ms);
        self.expire_requests(now);
        if self.push.due(now) {
            self.push_some(now);
        }
    }

    /// Handles one received datagram. Bad datagrams are counted and dropped, never fatal.
    pub fn handle_datagram(&mut self, now: Now, channel: Channel, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if !self.sync_enabled {
            self.stats.dropped("sync_off");
            return;
        }
        let clear = match self.outbox.sealer().open(bytes) {
            Ok(clear) => clear,
            Err(err) => {
                debug!(target: "sync", "SYNC dropped datagram from {from} on {channel:?}: {err}");
                self.stats.dropped(err.label());
                return;
            }
        };
        let envelope = match wire::decode(&clear) {
            Ok(envelope) => envelope,
            Err(err) => {
                debug!(target: "sync", "SYNC dropped datagram from {from} on {channel:?}: {err}");
                self.stats.dropped(err.label());
                return;
            }
        };
        if envelope.from == self.node_id {
            self.stats.dropped("own");
            return;
        }
        if envelope.group != self.cfg.group {
            debug!(target: "sync", "SYNC dropped datagram from {from} for group {:?}", envelope.group);
            self.stats.dropped("wrong_group");
            return;
        }
        // Where an answer goes: a whisper datagram's actual source (behind NAT the advertised
        // port is not the visible one); a multicast datagram's source IP with the whisper
        // port it advertises (it was sent from the sender's whisper socket, but on some
        // systems through another one).
        let whisper = match channel {
            Channel::Whisper => from,
            Channel::Group => SocketAddr::new(from.ip(), envelope.whisper_port),
        };
        let learned = self.note_unicast(
            now,
            channel,
            envelope.from,
            whisper,
            &envelope.body,
            bytes.len(),
        );
        self.touch_peer(now, envelope.from, whisper, channel);
        if learned {
            self.greet_learned(now, envelope.from, whisper);
        }
        // Built only when the line is wanted: this runs for every datagram.
        if tracing::enabled!(target: "sync", tracing::Level::DEBUG) {
            let label = self.peers.label(envelope.from);
            // `entries=` is what this datagram carries; a HELLO also says what the sender
            // holds.
            let holds = match &envelope.body {
                Body::Hello(hello) => format!(" holds={}", hello.fingerprint.count),
                _ => String::new(),
            };
            debug!(
                target: "sync",
                "SYNC recv {} from {label} ({whisper}) entries={}{holds}",
                envelope.body.kind(),
                envelope.body.entry_count()
            );
        }
        let sender = envelope.from;
        match envelope.body {
            Body::Hello(hello) => {
                self.learn_name(sender, hello.name);
                if let Some(peer) = self.peers.get_mut(sender) {
                    peer.fingerprint = Some(hello.fingerprint);
                    peer.newest = hello.newest;
                    peer.reported_ms = Some(now.mono_ms);
                }
                self.observe_difference(now, sender);
                self.maybe_start_session(now);
            }
            Body::LogEntry(entries) => {
                let origin = Origin {
                    node: sender,
                    addr: whisper,
                    answer: false,
                };
                self.merge(now, entries, origin);
            }
            Body::SyncRequest(request) => {
                let proven = match &request {
                    SyncRequest::Ranges(r) => self.admission.cookie_valid(whisper, r.cookie),
                    SyncRequest::Probe { .. } => false,
                };
                let admitted = self.admission.admit_request(
                    now,
                    whisper,
                    bytes.len(),
                    proven,
                    &self.cfg.tuning,
                );
                if !admitted {
                    debug!(target: "sync", "SYNC rate-limited SYNC_REQUEST from {whisper}");
                    self.stats.dropped("rate_limited");
                    return;
                }
                match request {
                    SyncRequest::Probe { fingerprint } => {
                        if let Some(peer) = self.peers.get_mut(sender) {
                            peer.fingerprint = Some(fingerprint);
                            peer.reported_ms = Some(now.mono_ms);
                        }
                        self.observe_difference(now, sender);
                        if fingerprint != self.ledger.fingerprint() {
                            if channel == Channel::Group {
                                self.hello_for_probe(now);
                            }
                            let body = Body::SyncResponse(SyncResponse::Summary {
                                name: self.cfg.node_name.clone(),
                                fingerprint: self.ledger.fingerprint(),
                                cookie: Some(self.admission.cookie_for(whisper)),
                            });
                            // A probe proves nothing about its source: within the 3x limit.
                            let allowance = self.allowance(whisper);
                            self.send_limited(sender, whisper, body, allowance);
                        }
                    }
                    SyncRequest::Ranges(request) => {
                        // It is reconciling with us: no stalemate to break.
                        self.peers.serving(sender, now);
                        self.stalemates.forget(sender);
                        self.answer(sender, whisper, request, proven);
                    }
                }
            }
            Body::SyncResponse(SyncResponse::Summary {
                name,
                fingerprint,
                cookie,
            }) => {
                self.learn_name(sender, name);
                if let Some(peer) = self.peers.get_mut(sender) {
                    peer.fingerprint = Some(fingerprint);
                    peer.reported_ms = Some(now.mono_ms);
                }
                self.take_cookie(now, sender, whisper, cookie);
                self.observe_difference(now, sender);
                self.maybe_start_session(now);
            }
            Body::SyncResponse(SyncResponse::Ranges(response)) => {
                self.take_cookie(now, sender, whisper, response.cookie);
                self.handle_response(now, sender, whisper, response);
            }
        }
    }
}
