//! Abuse limits on what we answer: address cookies, a token bucket per requester address,
//! and the anti-amplification rule (an address that has not proven it receives there gets
//! at most [`Tuning::amplification_factor`] times the bytes it sent us).
//!
//! A datagram's source address can be forged, so an answer sent to it may hit a bystander.
//! A requester proves its address by echoing the cookie we sent there: a keyed hash of the
//! address, so we keep no state per cookie and only someone receiving at the address learns
//! it.

use super::{Now, Peer, Tuning};
use crate::proto::wire::{Body, Cookie, NodeId};
use ::core::net::{IpAddr, SocketAddr};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use tracing::debug;

/// Cookies we give and cookies we were given, and what each requester address may still
/// cost us.
#[derive(Debug)]
pub(super) struct Admission {
    /// The per-process secret our cookies are keyed with.
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
    /// When a datagram from it last counted here: the oldest are forgotten first.
    seen_ms: u64,
    /// Bytes received from this address (requests, and over whisper anything else).
    received: u64,
    /// Bytes answered to it while it was unproven.
    sent_unproven: u64,
    /// Whether it echoed our cookie from this address: it receives there, so sending to it
    /// cannot hit a bystander.
    proven: bool,
}

impl Admission {
    /// Cookies keyed with `cookie_key`; nothing tracked yet.
    pub(super) fn new(cookie_key: [u8; 32]) -> Admission {
        Admission {
            cookie_key,
            sources: HashMap::new(),
            cookies: HashMap::new(),
        }
    }

    /// Keys our cookies with a new secret (cookies handed out before stop matching).
    pub(super) fn set_cookie_key(&mut self, cookie_key: [u8; 32]) {
        self.cookie_key = cookie_key;
    }

    /// Number of source addresses tracked for rate limiting.
    pub(super) fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// The cookie for requester address `addr`: a keyed hash with our per-process secret, so
    /// only someone receiving at `addr` can learn it, and we keep no state per address.
    pub(super) fn cookie_for(&self, addr: SocketAddr) -> Cookie {
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
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&addr.port().to_be_bytes());
        mac
    }

    /// Whether `cookie` is the one we give `addr` (constant-time comparison).
    pub(super) fn cookie_valid(&self, addr: SocketAddr, cookie: Option<Cookie>) -> bool {
        cookie.is_some_and(|c| self.cookie_mac(addr).verify_truncated_left(&c).is_ok())
    }

    /// Keeps the cookie a peer at `addr` gave us (at most `max_peers` of them: a flood of
    /// answers from made-up addresses only makes honest peers prove themselves once more).
    pub(super) fn remember_cookie(
        &mut self,
        addr: SocketAddr,
        cookie: Option<Cookie>,
        max_peers: usize,
    ) {
        let Some(cookie) = cookie else {
            return;
        };
        if !self.cookies.contains_key(&addr) && self.cookies.len() >= max_peers {
            self.cookies.clear();
        }
        self.cookies.insert(addr, cookie);
    }

    /// The cookie the peer at `addr` gave us, to echo in our requests to it.
    pub(super) fn cookie_from(&self, addr: SocketAddr) -> Option<Cookie> {
        self.cookies.get(&addr).copied()
    }

    /// The rate-limit state of `addr`, made (with full buckets) if it is new; when the table
    /// is full the older half is forgotten first.
    fn source(&mut self, now: Now, addr: SocketAddr, tuning: &Tuning) -> &mut Source {
        if !self.sources.contains_key(&addr) && self.sources.len() >= tuning.max_sources.max(2) {
            // Forget the older half at once (amortised O(1) per new source under a flood).
            let mut ages: Vec<u64> = self.sources.values().map(|s| s.seen_ms).collect();
            let mid = ages.len() / 2;
            let (_, median, _) = ages.select_nth_unstable(mid);
            let median = *median;
            self.sources.retain(|_, s| s.seen_ms > median);
        }
        let source = self.sources.entry(addr).or_insert(Source {
            tokens: f64::from(tuning.request_burst.max(1)),
            proven_tokens: f64::from(tuning.proven_request_burst.max(1)),
            refilled_ms: now.mono_ms,
            seen_ms: now.mono_ms,
            received: 0,
            sent_unproven: 0,
            proven: false,
        });
        source.seen_ms = now.mono_ms;
        source
    }

    /// Counts `len` bytes of a datagram other than a SYNC_REQUEST that came from `addr` over
    /// whisper: they raise what we may send there before it is proven (3x what it sent us).
    pub(super) fn credit(&mut self, now: Now, addr: SocketAddr, len: usize, tuning: &Tuning) {
        let source = self.source(now, addr, tuning);
        source.received = source.received.saturating_add(len as u64);
    }

    /// Whether `addr` has echoed our cookie (and is still tracked).
    pub(super) fn proven(&self, addr: SocketAddr) -> bool {
        self.sources.get(&addr).is_some_and(|s| s.proven)
    }

    /// Counts a SYNC_REQUEST of `len` bytes from `addr` and takes a token from its bucket
    /// (the proven one when it echoed a valid cookie); false when that bucket is empty (the
    /// request is dropped).
    pub(super) fn admit_request(
        &mut self,
        now: Now,
        addr: SocketAddr,
        len: usize,
        proven: bool,
        tuning: &Tuning,
    ) -> bool {
        let (rate, burst) = (
            f64::from(tuning.request_rate_per_s),
            f64::from(tuning.request_burst.max(1)),
        );
        let (proven_rate, proven_burst) = (
            f64::from(tuning.proven_request_rate_per_s),
            f64::from(tuning.proven_request_burst.max(1)),
        );
        let source = self.source(now, addr, tuning);
        let elapsed = now.mono_ms.saturating_sub(source.refilled_ms) as f64;
        source.tokens = (source.tokens + elapsed * rate / 1000.0).min(burst);
        source.proven_tokens =
            (source.proven_tokens + elapsed * proven_rate / 1000.0).min(proven_burst);
        source.refilled_ms = now.mono_ms;
        source.received = source.received.saturating_add(len as u64);
        source.proven |= proven;
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

    /// Bytes we may still send to the unproven address `addr`: `factor` times what it sent.
    pub(super) fn allowance(&self, addr: SocketAddr, factor: u64) -> u64 {
        self.sources.get(&addr).map_or(0, |s| {
            s.received
                .saturating_mul(factor)
                .saturating_sub(s.sent_unproven)
        })
    }

    /// Charges `bytes` sent to the unproven address `addr` to its allowance.
    pub(super) fn charge(&mut self, addr: SocketAddr, bytes: usize) {
        if let Some(source) = self.sources.get_mut(&addr) {
            source.sent_unproven = source.sent_unproven.saturating_add(bytes as u64);
        }
    }
}

impl Peer {
    /// Bytes we may still send to the unproven address `addr`.
    pub(super) fn allowance(&self, addr: SocketAddr) -> u64 {
        self.admission
            .allowance(addr, self.cfg.tuning.amplification_factor)
    }

    /// Sends to an unproven address only if the sealed datagram fits in `limit` bytes, and
    /// charges it to the address's allowance.
    pub(super) fn send_limited(&mut self, node: NodeId, addr: SocketAddr, body: Body, limit: u64) {
        let kind = body.kind();
        if let Some(bytes) = self.outbox.encode_body(&mut self.stats, body) {
            self.send_limited_encoded(node, addr, kind, bytes, limit);
        }
    }

    /// [`Peer::send_limited`] for a message of `kind` already encoded.
    pub(super) fn send_limited_encoded(
        &mut self,
        node: NodeId,
        addr: SocketAddr,
        kind: &str,
        bytes: Vec<u8>,
        limit: u64,
    ) {
        if (bytes.len() + self.outbox.seal_overhead()) as u64 > limit {
            self.stats.answers_limited += 1;
            debug!(target: "sync", "SYNC {kind} to unproven {addr} withheld: over the 3x limit");
            return;
        }
        debug!(target: "sync", "SYNC send {kind} to {} ({addr})", self.peers.label(node));
        let sent = self.outbox.send_to_addr(&mut self.stats, addr, bytes);
        self.admission.charge(addr, sent);
    }
}
