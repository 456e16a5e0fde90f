// Shared set-up for the datagram targets: a small peer, as the daemon would hold one.
use loot_sync::proto::entry::{new_entry_id, Entry, EntryKind, Hlc};
use loot_sync::core::rng::SeededRng;
use loot_sync::core::sync::{Now, Peer, PeerConfig, Tuning};

pub const NOW: Now = Now {
    mono_ms: 10_000,
    unix_ms: 1_700_000_010_000,
};

pub fn peer() -> Peer {
    let entries = (0..40u64)
        .map(|i| Entry {
            id: new_entry_id(1_700_000_000_000 + i, [i as u8; 10]),
            at: Hlc::new(1_700_000_000_000 + i, 0),
            actor: "officer".into(),
            target: format!("P{}", i % 4),
            delta: 1,
            new_total: 0,
            reason: "fuzz".into(),
            kind: EntryKind::Points,
            seal: None,
        })
        .collect();
    let cfg = PeerConfig {
        node_name: "fuzz".into(),
        group: "raid".into(),
        whisper_port: 1000,
        sync_enabled: true,
        heartbeat_ms: 1000,
        peer_timeout_ms: 5000,
        max_clock_drift_ms: 3_600_000,
        tuning: Tuning::default(),
    };
    let mut peer = Peer::new(cfg, entries, SeededRng::new(1), NOW);
    peer.start(NOW);
    peer.drain_actions();
    peer
}

/// Every datagram a peer sends stays within the limit.
pub fn check_actions(peer: &mut Peer) {
    use loot_sync::core::sync::Action;
    for action in peer.drain_actions() {
        if let Action::SendGroup(d) | Action::SendTo(_, d) = action {
            assert!(
                d.len() <= loot_sync::proto::wire::MAX_DATAGRAM,
                "{} bytes",
                d.len()
            );
        }
    }
    assert_eq!(peer.stats().encode_failures, 0);
}
