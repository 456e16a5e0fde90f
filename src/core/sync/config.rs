//! What a [`Peer`](super::Peer) is told about itself: its identity in the group, its timers
//! and the protocol knobs.

#[cfg(doc)]
use super::Action;

/// Protocol knobs that users rarely touch; the simulator tightens them for speed.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Shortest wait for a response before asking again for the unanswered spans, and the
    /// wait before the partner's round trip is known; the wait adapts to the round trips
    /// measured (see `rto`) and doubles on every timeout.
    pub request_timeout_ms: u64,
    /// Longest wait for a response, however slow the partner or however many timeouts.
    pub request_timeout_max_ms: u64,
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
    /// Longest wait between two HELLOs to a listed unicast peer that does not answer. The
    /// wait starts at one heartbeat and doubles up to this; a listed peer is never given up
    /// (it may be a hub that restarts, or a home whose address changed back).
    pub listed_retry_max_ms: u64,
    /// Most learned unicast peers (peers that reached us over whisper with a HELLO) kept as
    /// destinations; beyond this the one heard from longest ago is forgotten, so a member
    /// inventing addresses cannot make us send to ever more of them.
    pub max_learned_peers: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            request_timeout_ms: 300,
            // A starved responder answered after more than a second in the soak test; with
            // `max_silent_requests` this bounds how long a silent partner is waited for.
            request_timeout_max_ms: 3_000,
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
            listed_retry_max_ms: 15_000,
            max_learned_peers: 256,
        }
    }
}

/// Everything a [`Peer`](super::Peer) needs to know about itself.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// This node's name (shown to peers).
    pub node_name: String,
    /// Group (ledger) name; datagrams for other groups are dropped.
    pub group: String,
    /// Our whisper port, advertised in every datagram.
    pub whisper_port: u16,
    /// Whether this peer uses the multicast group. `false` (no `[group] address`): it never
    /// emits [`Action::SendGroup`] and reaches its peers by unicast only.
    pub multicast: bool,
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
