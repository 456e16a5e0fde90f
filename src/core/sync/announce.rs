//! What a peer tells the whole group unasked: a HELLO with its set fingerprint every
//! heartbeat, and a probe (a SYNC_REQUEST carrying the fingerprint) when it joins, which
//! every peer holding a different set answers with a summary. Both go to the group and to
//! the unicast peers (see `fanout`); a HELLO every heartbeat also keeps the NAT mappings to
//! unicast peers open.

use super::{Now, Peer};
use crate::proto::wire::{Body, SyncRequest};

/// When the next HELLO is due and when we last probed or answered a probe with a HELLO.
#[derive(Debug)]
pub(super) struct Announcer {
    next_hello_ms: u64,
    last_probe_ms: Option<u64>,
    last_early_hello_ms: Option<u64>,
}

impl Announcer {
    /// The first HELLO is due at once.
    pub(super) fn new(now: Now) -> Announcer {
        Announcer {
            next_hello_ms: now.mono_ms,
            last_probe_ms: None,
            last_early_hello_ms: None,
        }
    }

    /// When the next HELLO is due (monotonic ms).
    pub(super) fn next_hello_ms(&self) -> u64 {
        self.next_hello_ms
    }
}

impl Peer {
    /// Sends a HELLO to the group and the unicast peers, and schedules the next one.
    pub(super) fn send_hello(&mut self, now: Now) {
        let body = self.hello_body();
        self.send_group_bound(now, body);
        // +-10% jitter so peers started together do not beat in step.
        let base = self.cfg.heartbeat_ms.max(1);
        let jitter = self.rng.below(base / 5 + 1);
        self.announcer.next_hello_ms = now.mono_ms + base - base / 10 + jitter;
    }

    /// Answers a probe heard on the group from a peer whose set differs with our HELLO now
    /// rather than at the next heartbeat: a joiner trusts an address it heard on the group
    /// (see `request_allowance`), so it can start pulling from us at once instead of up to a
    /// heartbeat later. Probes cost at most one such HELLO per tenth of a heartbeat.
    ///
    /// It goes to the group only: the prober heard its probe's answer there, and a copy to
    /// every unicast peer would let anyone on the LAN multiply our WAN traffic tenfold with
    /// made-up probes. The heartbeat's schedule is left alone, so probes cannot shift it.
    pub(super) fn hello_for_probe(&mut self, now: Now) {
        let gap = self.cfg.heartbeat_ms / 10;
        let recent = self
            .announcer
            .last_early_hello_ms
            .is_some_and(|at| at + gap > now.mono_ms);
        if recent || !self.cfg.multicast {
            return;
        }
        self.announcer.last_early_hello_ms = Some(now.mono_ms);
        let body = self.hello_body();
        self.send_to_group(body);
    }

    /// Asks the group who differs from us, at most once a heartbeat.
    pub(super) fn send_probe(&mut self, now: Now) {
        let recent = self
            .announcer
            .last_probe_ms
            .is_some_and(|at| at + self.cfg.heartbeat_ms > now.mono_ms);
        if recent {
            return;
        }
        self.announcer.last_probe_ms = Some(now.mono_ms);
        let body = Body::SyncRequest(SyncRequest::Probe {
            fingerprint: self.ledger.fingerprint(),
        });
        self.send_group_bound(now, body);
    }
}
