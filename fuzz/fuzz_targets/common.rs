// Shared set-up for the datagram targets: a small peer, as the daemon would hold one.
use loot_sync::core::rng::SeededRng;
use loot_sync::core::sync::{Action, Now, Peer};
use loot_sync::testing::{EntryBuilder, PeerConfigBuilder};

pub const NOW: Now = Now {
    mono_ms: 10_000,
    unix_ms: 1_700_000_010_000,
};

pub fn peer() -> Peer {
    let entries = (0..40u64)
        .map(|i| {
            EntryBuilder::at_ms(1_700_000_000_000 + i)
                .id_random([i as u8; 10])
                .target(format!("P{}", i % 4))
                .reason("fuzz")
                .build()
        })
        .collect();
    let cfg = PeerConfigBuilder::new("fuzz").whisper_port(1000).build();
    let mut peer = Peer::new(cfg, entries, SeededRng::new(1), NOW);
    peer.start(NOW);
    peer.drain_actions();
    peer
}

/// Every datagram a peer sends stays within the limit.
pub fn check_actions(peer: &mut Peer) {
    for action in peer.drain_actions() {
        if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
            assert!(
                d.len() <= loot_sync::proto::limits::MAX_DATAGRAM,
                "{} bytes",
                d.len()
            );
        }
    }
    assert_eq!(peer.stats().encode_failures, 0);
}
