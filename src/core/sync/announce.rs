//! What a peer tells the whole group unasked: a HELLO with its set fingerprint every
//! heartbeat, and a probe (a SYNC_REQUEST carrying the fingerprint) when it joins, which
//! every peer holding a different set answers with a summary.

use super::{Now, Peer};
use crate::proto::wire::{Body, Hello, SyncRequest};

/// When the next HELLO is due and when we last probed.
#[derive(Debug)]
pub(super) struct Announcer {
    next_hello_ms: u64,
    last_probe_ms: Option<u64>,
}

impl Announcer {
    /// The first HELLO is due at once.
    pub(super) fn new(now: Now) -> Announcer {
        Announcer {
            next_hello_ms: now.mono_ms,
            last_probe_ms: None,
        }
    }

    /// When the next HELLO is due (monotonic ms).
    pub(super) fn next_hello_ms(&self) -> u64 {
        self.next_hello_ms
    }
}

impl Peer {
    /// Multicasts a HELLO and schedules the next one.
    pub(super) fn send_hello(&mut self, now: Now) {
        let body = Body::Hello(Hello {
            name: self.cfg.node_name.clone(),
            fingerprint: self.ledger.fingerprint(),
            newest: self.ledger.newest(),
        });
        self.outbox.send_group(&mut self.stats, body);
        // +-10% jitter so peers started together do not beat in step.
        let base = self.cfg.heartbeat_ms.max(1);
        let jitter = self.rng.below(base / 5 + 1);
        self.announcer.next_hello_ms = now.mono_ms + base - base / 10 + jitter;
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
        self.outbox.send_group(&mut self.stats, body);
    }
}
