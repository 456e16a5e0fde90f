//! The peer's counters: what it sent, received, dropped and achieved.

use crate::core::histogram::Histogram;
use std::collections::BTreeMap;

#[cfg(doc)]
use crate::proto::limits::MAX_MESSAGE;

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
    /// Entries new to us that we forwarded to peers that had not heard them (hub
    /// behaviour: see `fanout`).
    pub entries_forwarded: u64,
    /// Datagrams not sent to an unproven learned peer because its 3x allowance was spent.
    pub unicast_withheld: u64,
    /// Session requests not sent (and their session given up) because the partner's
    /// address was unproven and its 3x allowance spent.
    pub requests_withheld: u64,
    /// HELLOs sent to silent listed peers (retries with backoff).
    pub listed_retries: u64,
    /// Learned peers forgotten early because there were `max_learned_peers` of them.
    pub learned_evicted: u64,
    /// Sessions started by the stalemate rule rather than the majority rule.
    pub stalemates_broken: u64,
    /// Requests that asked nothing, sent to prove our address to a unicast peer that gave
    /// us a new cookie.
    pub address_proofs: u64,
    /// Peers found using our own node name (each warned about once).
    pub name_clashes: u64,
    /// How long completed reconciliation sessions (catch-ups) took, start to finish.
    pub catch_up: Histogram,
}

impl Stats {
    /// Counts one datagram (or entry) dropped for `reason`.
    pub(super) fn dropped(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_insert(0) += 1;
    }
}
