//! Unicast peers beyond the multicast LAN: the addresses the operator listed (`[peers]
//! addresses`, handed in by [`Peer::set_listed_peers`]) and the peers we learned because they
//! sent us a HELLO over whisper (a peer that lists us, typically a spoke behind NAT talking
//! to a hub).
//!
//! * A listed peer is contacted every heartbeat while it answers (its HELLOs also keep the
//!   NAT mappings between us open), and while it is silent with a HELLO after a wait that
//!   starts at one heartbeat and doubles up to [`Tuning::listed_retry_max_ms`], forever: it
//!   may be a hub that restarts, or a home whose address comes back.
//! * A learned peer is kept while it is heard within the peer timeout, at most
//!   [`Tuning::max_learned_peers`] of them (the stalest is forgotten first). Until its
//!   address is proven (it echoed our cookie from there) it gets at most 3x the bytes it
//!   sent us, like every unproven source: a member forging HELLOs "from" a bystander cannot
//!   make us flood it.
//!
//! Both are destinations of everything we send "to the group" (see `fanout`), unless the
//! peer is heard on the group channel: then our multicast reaches it already, unless it
//! asks for unicast. A peer asks by sending us HELLOs over whisper while we send it none (it
//! does not hear our multicast: one-way multicast); it then gets unicast copies for as long
//! as its whisper HELLOs keep coming. Whisper HELLOs that answer ours are no such request:
//! two peers on one LAN that list each other greet each other by unicast once at start,
//! then hear each other on the group and stop.

use super::{Channel, Now, Peer};
use crate::proto::wire::{Body, Cookie, Hello, NodeId, RangesRequest, SyncRequest, SyncResponse};
use ::core::net::SocketAddr;
use std::collections::BTreeMap;
use tracing::{debug, info};

#[cfg(doc)]
use super::Tuning;

/// A listed unicast peer as status output shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPeer {
    /// The address, as resolved by the driver.
    pub address: SocketAddr,
    /// The node that answered from it, once one did.
    pub node: Option<NodeId>,
    /// When something last came from it (monotonic ms); `None`: never since it was listed.
    pub last_heard_ms: Option<u64>,
}

/// What we track about one listed address.
#[derive(Clone, Debug)]
struct Listed {
    node: Option<NodeId>,
    last_heard_ms: Option<u64>,
    /// When it last asked for unicast (see the module docs).
    wants_unicast_ms: Option<u64>,
    /// When to look at it again: it falls silent then, or its next retry is due.
    next_contact_ms: u64,
    /// The wait before the retry after next while it stays silent.
    backoff_ms: u64,
    /// When we last sent it a retry.
    last_contact_ms: Option<u64>,
}

/// What we track about one learned peer (keyed by the address its datagrams come from).
#[derive(Clone, Debug)]
struct Learned {
    node: NodeId,
    last_heard_ms: u64,
    /// When it last asked for unicast (see the module docs).
    wants_unicast_ms: Option<u64>,
    /// When we last greeted it (sent it a cookie to prove its address with).
    greeted_ms: Option<u64>,
}

/// One unicast destination of a group-bound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// Where to send.
    pub(super) addr: SocketAddr,
    /// The node there, when known.
    pub(super) node: Option<NodeId>,
    /// A learned peer whose address is unproven: within its 3x allowance only.
    pub(super) limited: bool,
}

/// The listed and learned unicast peers.
#[derive(Debug, Default)]
pub(super) struct Unicast {
    /// Ordered by address, so fan-out order (and so a simulation) replays.
    listed: BTreeMap<SocketAddr, Listed>,
    learned: BTreeMap<SocketAddr, Learned>,
}

impl Unicast {
    /// Whether `addr` is a listed address.
    pub(super) fn is_listed(&self, addr: SocketAddr) -> bool {
        self.listed.contains_key(&addr)
    }

    /// Whether there is any unicast peer at all (the common multicast-only case skips the
    /// fan-out work when there is none).
    pub(super) fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.learned.is_empty()
    }

    /// The listed addresses, for status output.
    pub(super) fn listed(&self) -> impl Iterator<Item = ListedPeer> + '_ {
        self.listed.iter().map(|(addr, l)| ListedPeer {
            address: *addr,
            node: l.node,
            last_heard_ms: l.last_heard_ms,
        })
    }

    /// The learned peers' addresses and nodes.
    #[cfg(test)]
    pub(super) fn learned(&self) -> Vec<(SocketAddr, NodeId)> {
        self.learned.iter().map(|(a, l)| (*a, l.node)).collect()
    }

    /// When the first listed address needs looking at (monotonic ms).
    pub(super) fn next_contact_ms(&self) -> Option<u64> {
        self.listed.values().map(|l| l.next_contact_ms).min()
    }

    /// Forgets the learned peers (sync switched off: they contact us again when it is back).
    pub(super) fn clear_learned(&mut self) {
        self.learned.clear();
    }

    /// Makes every listed address that is not answering due for a HELLO at `now`, its wait
    /// back at one heartbeat (start-up, sync switched on), unless it was just contacted.
    pub(super) fn contact_all_now(&mut self, now: Now, heartbeat_ms: u64) {
        let heartbeat = heartbeat_ms.max(1);
        for listed in self.listed.values_mut() {
            if listed
                .last_contact_ms
                .is_some_and(|at| at + heartbeat > now.mono_ms)
            {
                continue;
            }
            listed.next_contact_ms = now.mono_ms;
            listed.backoff_ms = heartbeat;
        }
    }

    /// Drops the learned peers silent for `peer_timeout_ms`.
    pub(super) fn expire_learned(&mut self, now: Now, peer_timeout_ms: u64) {
        self.learned
            .retain(|_, l| l.last_heard_ms + peer_timeout_ms > now.mono_ms);
    }
}

impl Peer {
    /// Replaces the listed unicast peer addresses (the driver resolves `[peers] addresses`
    /// and calls this at start and after every re-resolution; empty: none). Addresses kept
    /// from before keep their state; new ones are contacted at once.
    pub fn set_listed_peers(&mut self, now: Now, addrs: Vec<SocketAddr>) {
        let heartbeat = self.cfg.heartbeat_ms.max(1);
        let old = std::mem::take(&mut self.unicast.listed);
        for addr in addrs {
            if self.unicast.listed.contains_key(&addr) {
                continue;
            }
            let listed = old.get(&addr).cloned().unwrap_or_else(|| {
                info!(target: "sync", "SYNC listed peer {addr}");
                Listed {
                    node: None,
                    last_heard_ms: None,
                    wants_unicast_ms: None,
                    next_contact_ms: now.mono_ms,
                    backoff_ms: heartbeat,
                    last_contact_ms: None,
                }
            });
            // A listed address is not also a learned peer: one set of rules per address.
            self.unicast.learned.remove(&addr);
            self.unicast.listed.insert(addr, listed);
        }
        self.refresh_reach(now);
        if self.sync_enabled {
            self.contact_listed(now);
        }
    }

    /// The listed unicast peers, answering or not.
    pub fn listed(&self) -> impl Iterator<Item = ListedPeer> + '_ {
        self.unicast.listed()
    }

    /// Whether the listed address `addr` answered within the peer timeout.
    fn answering(&self, addr: SocketAddr, now: Now) -> bool {
        self.unicast.listed.get(&addr).is_some_and(|l| {
            l.last_heard_ms
                .is_some_and(|at| at + self.cfg.peer_timeout_ms > now.mono_ms)
        })
    }

    /// Notes a datagram from `node` that opened with the group key and is answered at
    /// `reply`: a listed address answers, a whisper HELLO makes (or keeps) a learned peer,
    /// and bytes that came over whisper raise what we may send back before the address is
    /// proven. Returns true when `reply` became a learned peer just now.
    pub(super) fn note_unicast(
        &mut self,
        now: Now,
        channel: Channel,
        node: NodeId,
        reply: SocketAddr,
        body: &Body,
        len: usize,
    ) -> bool {
        let heartbeat = self.cfg.heartbeat_ms.max(1);
        let timeout = self.cfg.peer_timeout_ms;
        let whisper_hello = channel == Channel::Whisper && matches!(body, Body::Hello(_));
        // A whisper HELLO while we send this address nothing by unicast asks for unicast;
        // once asked, every further one keeps asking.
        let asks = whisper_hello && !self.sends_unicast_to(now, reply);
        let fresh = |at: Option<u64>| at.is_some_and(|at| at + timeout > now.mono_ms);
        if let Some(listed) = self.unicast.listed.get_mut(&reply) {
            if listed.last_heard_ms.is_none() || listed.node != Some(node) {
                info!(target: "sync", "SYNC listed peer {reply} answered ({node:016x})");
            }
            listed.node = Some(node);
            listed.last_heard_ms = Some(now.mono_ms);
            listed.backoff_ms = heartbeat;
            if asks || whisper_hello && fresh(listed.wants_unicast_ms) {
                listed.wants_unicast_ms = Some(now.mono_ms);
            }
            // Looked at again when it would fall silent.
            listed.next_contact_ms = now.mono_ms + timeout;
        }
        if channel != Channel::Whisper {
            return false;
        }
        if matches!(body, Body::Hello(_) | Body::LogEntry(_)) {
            // What a unicast peer sends us unasked raises what we may send it unasked
            // (SYNC_REQUESTs are counted by their admission; answers to our own requests
            // are not counted: they would let a requester's partner be answered beyond 3x
            // what it asked with).
            self.admission.credit(now, reply, len, &self.cfg.tuning);
        }
        if self.unicast.is_listed(reply) {
            return false;
        }
        if let Some(learned) = self.unicast.learned.get_mut(&reply) {
            learned.node = node;
            learned.last_heard_ms = now.mono_ms;
            if asks || whisper_hello && fresh(learned.wants_unicast_ms) {
                learned.wants_unicast_ms = Some(now.mono_ms);
            }
            return false;
        }
        // Only a HELLO makes a learned peer: a peer sends HELLOs over whisper to the peers it
        // reaches by unicast, so it wants ours back. A session's requests and answers do not
        // (on a LAN they are whisper traffic between peers that hear each other's multicast).
        if !whisper_hello {
            return false;
        }
        let max = self.cfg.tuning.max_learned_peers;
        if max == 0 {
            return false;
        }
        if self.unicast.learned.len() >= max {
            let stalest = self
                .unicast
                .learned
                .iter()
                .min_by_key(|(addr, l)| (l.last_heard_ms, **addr))
                .map(|(addr, _)| *addr);
            if let Some(addr) = stalest {
                self.unicast.learned.remove(&addr);
                self.stats.learned_evicted += 1;
                debug!(target: "sync", "SYNC learned peers full: forgot {addr}");
            }
        }
        info!(target: "sync", "SYNC learned peer {reply} ({node:016x})");
        self.unicast.learned.insert(
            reply,
            Learned {
                node,
                last_heard_ms: now.mono_ms,
                wants_unicast_ms: Some(now.mono_ms),
                greeted_ms: None,
            },
        );
        true
    }

    /// Whether our multicast reaches `node` and it does not ask for unicast (heard on the
    /// group channel, no fresh request: see the module docs).
    fn multicast_suffices(
        &self,
        now: Now,
        node: Option<NodeId>,
        wants_unicast_ms: Option<u64>,
    ) -> bool {
        let timeout = self.cfg.peer_timeout_ms;
        node.is_some_and(|n| self.peers.multicast_reached(n, now, timeout))
            && wants_unicast_ms.is_none_or(|at| at + timeout <= now.mono_ms)
    }

    /// Whether a listed address is a destination of group-bound messages at `now`.
    fn listed_target(&self, now: Now, addr: SocketAddr, listed: &Listed) -> bool {
        self.answering(addr, now)
            && !self.multicast_suffices(now, listed.node, listed.wants_unicast_ms)
    }

    /// Whether a learned peer is a destination of group-bound messages at `now`.
    fn learned_target(&self, now: Now, learned: &Learned) -> bool {
        learned.last_heard_ms + self.cfg.peer_timeout_ms > now.mono_ms
            && !self.multicast_suffices(now, Some(learned.node), learned.wants_unicast_ms)
    }

    /// Whether we send `addr` anything by unicast at `now`: it is a destination of
    /// group-bound messages, or a silent listed address we keep retrying.
    fn sends_unicast_to(&self, now: Now, addr: SocketAddr) -> bool {
        if let Some(listed) = self.unicast.listed.get(&addr) {
            return !self.answering(addr, now) || self.listed_target(now, addr, listed);
        }
        self.unicast
            .learned
            .get(&addr)
            .is_some_and(|learned| self.learned_target(now, learned))
    }

    /// The unicast destinations of a group-bound message at `now`: listed addresses that
    /// answer and live learned peers, except peers our multicast reaches (see the module
    /// docs). A silent listed address only gets its retries.
    pub(super) fn unicast_targets(&self, now: Now) -> Vec<Target> {
        if self.unicast.is_empty() {
            return Vec::new();
        }
        let mut targets = Vec::new();
        for (addr, listed) in &self.unicast.listed {
            if self.listed_target(now, *addr, listed) {
                targets.push(Target {
                    addr: *addr,
                    node: listed.node,
                    limited: false,
                });
            }
        }
        for (addr, learned) in &self.unicast.learned {
            if self.learned_target(now, learned) {
                targets.push(Target {
                    addr: *addr,
                    node: Some(learned.node),
                    limited: !self.admission.proven(*addr),
                });
            }
        }
        targets
    }

    /// Sends a HELLO to every listed address that is silent and due, and schedules its next
    /// retry (the wait doubles up to `listed_retry_max_ms`; it is never given up).
    pub(super) fn contact_listed(&mut self, now: Now) {
        let timeout = self.cfg.peer_timeout_ms;
        let max = self.cfg.tuning.listed_retry_max_ms.max(1);
        let mut due = Vec::new();
        for (addr, listed) in self.unicast.listed.iter_mut() {
            if listed.next_contact_ms > now.mono_ms {
                continue;
            }
            let answering = listed
                .last_heard_ms
                .is_some_and(|at| at + timeout > now.mono_ms);
            if answering {
                // Its heartbeat HELLOs go with everyone's; look again when it falls silent.
                listed.next_contact_ms = listed.last_heard_ms.unwrap_or(0) + timeout;
                continue;
            }
            listed.next_contact_ms = now.mono_ms + listed.backoff_ms.clamp(1, max);
            listed.backoff_ms = listed.backoff_ms.saturating_mul(2).clamp(1, max);
            listed.last_contact_ms = Some(now.mono_ms);
            due.push((*addr, listed.node));
        }
        for (addr, node) in due {
            debug!(target: "sync", "SYNC listed peer {addr} silent: HELLO");
            self.stats.listed_retries += 1;
            let body = self.hello_body();
            let target = Target {
                addr,
                node,
                limited: false,
            };
            self.send_to_targets(body, &[target]);
        }
    }

    /// Answers a peer that just became learned at once, so it sees us answering (and our
    /// fingerprint) without waiting a heartbeat: with a summary, which is a HELLO carrying
    /// a cookie, so the peer can prove its address (see [`Peer::take_cookie`]) and get what
    /// we forward beyond 3x what it sends us.
    pub(super) fn greet_learned(&mut self, now: Now, node: NodeId, addr: SocketAddr) {
        if let Some(learned) = self.unicast.learned.get_mut(&addr) {
            learned.greeted_ms = Some(now.mono_ms);
        }
        let body = Body::SyncResponse(SyncResponse::Summary {
            name: self.cfg.node_name.clone(),
            fingerprint: self.ledger.fingerprint(),
            cookie: Some(self.admission.cookie_for(addr)),
        });
        let target = Target {
            addr,
            node: Some(node),
            limited: !self.admission.proven(addr),
        };
        self.send_to_targets(body, &[target]);
    }

    /// Greets the learned peer `node` at `addr` again if its address is still unproven and
    /// it was last greeted a heartbeat ago or more: the first greeting may have been lost,
    /// and without a proven address a session we start with it cannot get far (see
    /// `requester::request_allowance`).
    pub(super) fn greet_again_if_unproven(&mut self, now: Now, node: NodeId, addr: SocketAddr) {
        let heartbeat = self.cfg.heartbeat_ms;
        let due = self.unicast.learned.get(&addr).is_some_and(|learned| {
            learned
                .greeted_ms
                .is_none_or(|at| at + heartbeat <= now.mono_ms)
        });
        if due && !self.admission.proven(addr) {
            self.greet_learned(now, node, addr);
        }
    }

    /// Keeps the cookie the peer `node` at `addr` gave us. A new cookie from a unicast peer
    /// we are not reconciling with is echoed at once in a request that asks nothing: it
    /// proves that we receive at this address (behind NAT: at this mapping), so the peer
    /// forwards to us without the 3x limit. A session echoes cookies on its own.
    pub(super) fn take_cookie(
        &mut self,
        now: Now,
        node: NodeId,
        addr: SocketAddr,
        cookie: Option<Cookie>,
    ) {
        let new = cookie.is_some() && self.admission.cookie_from(addr) != cookie;
        self.admission
            .remember_cookie(addr, cookie, self.cfg.tuning.max_peers);
        if !new || self.requester.partner() == Some(node) || !self.unicast_target(now, addr) {
            return;
        }
        let request_id = self.requester.take_request_id();
        let body = Body::SyncRequest(SyncRequest::Ranges(RangesRequest {
            request_id,
            runs: Vec::new(),
            want: Vec::new(),
            cookie,
            padding: Vec::new(),
        }));
        debug!(target: "sync", "SYNC proving our address to {addr}");
        self.stats.address_proofs += 1;
        let target = Target {
            addr,
            node: Some(node),
            limited: false,
        };
        self.send_to_targets(body, &[target]);
    }

    /// Whether `addr` is a destination of group-bound messages at `now`.
    fn unicast_target(&self, now: Now, addr: SocketAddr) -> bool {
        if let Some(listed) = self.unicast.listed.get(&addr) {
            return self.listed_target(now, addr, listed);
        }
        self.unicast
            .learned
            .get(&addr)
            .is_some_and(|learned| self.learned_target(now, learned))
    }

    /// Our HELLO as it is now.
    pub(super) fn hello_body(&self) -> Body {
        Body::Hello(Hello {
            name: self.cfg.node_name.clone(),
            fingerprint: self.ledger.fingerprint(),
            newest: self.ledger.newest(),
        })
    }
}
