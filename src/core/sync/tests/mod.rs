//! Unit tests of the sync core, one file per topic. Peers that reconcile run in a
//! [`World`]; tests of one decision feed a peer datagrams by hand.

mod admission;
mod convergence;
mod forwarding;
mod hub;
mod local;
mod merge;
mod officers;
mod partner;
mod peer_table;
mod pipeline;
mod requester;
mod responder;
mod sealing;
mod unicast;

use super::*;
use crate::proto::batch::EncodedBatch;
use crate::proto::entry::{AdjustRequest, EntryError};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::hlc::Hlc;
use crate::proto::limits::MAX_MESSAGE;
use crate::proto::seal::{GroupKey, Keyring, NoncePrefix};
use crate::proto::wire::{
    Cookie, Envelope, Hello, Mode, RangeItem, RangesRequest, RangesResponse, Run,
};
use crate::testing::{EntryBuilder, PeerConfigBuilder, World};

/// Node `node`'s config in a test world; the nodes are named "a", "b", ...
fn config(node: usize) -> PeerConfig {
    config_builder(node).build()
}

fn config_builder(node: usize) -> PeerConfigBuilder {
    let name = char::from(b'a' + u8::try_from(node).expect("few test nodes"));
    PeerConfigBuilder::new(name).world_node(node)
}

/// The time at monotonic `ms`.
fn now(ms: u64) -> Now {
    Now {
        mono_ms: ms,
        unix_ms: crate::testing::BASE_UNIX_MS + ms,
    }
}

/// Entry number `i` of the tests' shared history: one point for `target`, `i` ms after a
/// fixed origin well before [`now`]`(0)`.
fn entry_builder(i: u64, target: &str) -> EntryBuilder {
    EntryBuilder::at_ms(1_600_000_000_000 + i)
        .id_random([(i % 251) as u8; 10])
        .target(target)
        .reason(format!("entry {i}"))
}

fn entry(i: u64, target: &str) -> Entry {
    entry_builder(i, target).build()
}

/// Node `node` holding `entries`, its choices drawn from `seed`.
fn peer(node: usize, entries: Vec<Entry>, seed: u64) -> Peer {
    Peer::new(config(node), entries, SeededRng::new(seed), now(0))
}

/// A world whose clock already reads `ms` when `peers` join it (they were used by hand
/// until then), each started in turn.
fn world_at(ms: u64, peers: Vec<Peer>) -> World {
    let mut world = World::new(SeededRng::new(0));
    world.run_until(ms);
    for peer in peers {
        world.insert(peer);
    }
    for i in 0..world.len() {
        world.start(i);
    }
    world
}

/// The two peers of a world, taken out of it.
fn two(world: World) -> (Peer, Peer) {
    let mut peers = world.into_peers().into_iter();
    let a = peers.next().expect("two peers");
    let b = peers.next().expect("two peers");
    (a, b)
}

// ---- sealing and abuse limits ---------------------------------------------------------------

/// Seals `peer`'s datagrams with group key `key`; `seed` makes its nonces and cookies.
fn sealed(peer: &mut Peer, key: u8, seed: u8) {
    let keyring = Keyring::new(GroupKey::from_bytes(&[key; 32]), vec![]);
    peer.set_group_key(Sealer::new(keyring, NoncePrefix([seed; 16])), [seed; 32]);
}

/// Two peers holding group key 7: `a` with `a_entries`, `b` with `b_entries`.
fn sealed_pair(a_entries: Vec<Entry>, b_entries: Vec<Entry>) -> (Peer, Peer) {
    let mut a = peer(0, a_entries, 1);
    let mut b = peer(1, b_entries, 2);
    sealed(&mut a, 7, 1);
    sealed(&mut b, 7, 2);
    (a, b)
}

/// A datagram from a (possibly hostile) member holding group key `key`.
fn forged(key: u8, from: NodeId, whisper_port: u16, body: Body) -> Vec<u8> {
    let keyring = Keyring::new(GroupKey::from_bytes(&[key; 32]), vec![]);
    let mut sealer = Sealer::new(keyring, NoncePrefix([0xee; 16]));
    sealer
        .seal(clear_datagram(from, whisper_port, body))
        .unwrap()
}

/// An unsealed datagram for group "raid".
fn clear_datagram(from: NodeId, whisper_port: u16, body: Body) -> Vec<u8> {
    wire::encode(&Envelope {
        group: "raid".into(),
        from,
        whisper_port,
        body,
    })
    .unwrap()
}

fn full_range_request(request_id: u64, cookie: Option<Cookie>) -> Body {
    Body::SyncRequest(SyncRequest::Ranges(full_ranges(request_id, cookie)))
}

/// The unicast datagrams `peer` has queued, in order (other actions are dropped).
fn unicasts(peer: &mut Peer) -> Vec<Vec<u8>> {
    peer.drain_actions()
        .into_iter()
        .filter_map(|action| match action {
            Action::SendTo(_, datagram) => Some(datagram),
            _ => None,
        })
        .collect()
}

/// `datagram` decoded as a ranges response; anything else fails the test.
fn ranges_response(datagram: &[u8]) -> RangesResponse {
    let Body::SyncResponse(SyncResponse::Ranges(response)) = wire::decode(datagram).unwrap().body
    else {
        panic!("expected ranges response")
    };
    response
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

/// `a` and `b`, used by hand until `ms`, started in a world at `ms` and run until they
/// agree and are quiet (entries made just before may wait for the settling rule: see
/// `partner`); taken back out.
fn reconcile_at(ms: u64, a: Peer, b: Peer) -> (Peer, Peer) {
    let mut world = world_at(ms, vec![a, b]);
    world.run_until_converged(60_000, 10);
    world.settle();
    two(world)
}
