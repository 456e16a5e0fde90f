//! Quiet under load (sans-IO, `loot_sync::testing::Burst`): while officers adjust, the group
//! sends about one LOG_ENTRY datagram per entry plus its heartbeats, and starts no
//! reconciliation session unless something was lost; what was lost is still repaired
//! within two heartbeats.
//!
//! 100 and 200 peers too: `LOOTSYNC_QUIET_PEERS=10,40,100,200 cargo test --release --test
//! quiet`. The figures beside their floors, up to 200 peers: `LOOTSYNC_BENCH_ONLY=quiet
//! cargo bench --bench sync`.

use loot_sync::testing::{Burst, BurstCost};

/// The goal on datagrams and bytes: at most this times the floor.
const MAX_RATIO: f64 = 1.2;

/// Checks a lossless run: no session, converged as the burst ended, within the floor goal.
fn assert_quiet(what: &str, cost: &BurstCost) {
    assert_eq!(cost.sessions, 0, "{what}: sessions started: {cost:?}");
    assert_eq!(cost.missed, 0, "{what}: nothing is lost: {cost:?}");
    assert!(
        cost.converged_after_ms.is_some_and(|ms| ms <= 100),
        "{what}: every peer held every entry as the burst ended: {cost:?}"
    );
    assert!(
        cost.datagrams as f64 <= MAX_RATIO * cost.floor_datagrams as f64,
        "{what}: {} datagrams vs floor {}: {cost:?}",
        cost.datagrams,
        cost.floor_datagrams
    );
    assert!(
        cost.bytes as f64 <= MAX_RATIO * cost.floor_bytes as f64,
        "{what}: {} bytes vs floor {}: {cost:?}",
        cost.bytes,
        cost.floor_bytes
    );
}

/// The group sizes of the burst test: 10 and 40, or `LOOTSYNC_QUIET_PEERS` (e.g.
/// "10,40,100,200": a minute or more in a debug build).
fn group_sizes() -> Vec<usize> {
    match std::env::var("LOOTSYNC_QUIET_PEERS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("LOOTSYNC_QUIET_PEERS: numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![10, 40],
    }
}

#[test]
fn a_burst_of_300_adjusts_starts_no_session() {
    for peers in group_sizes() {
        let cost = Burst::new(peers, 300, 4_500).run();
        assert_quiet(&format!("{peers} peers"), &cost);
    }
}

#[test]
fn a_batch_of_40_entries_at_once_starts_no_session() {
    let cost = Burst::new(40, 40, 0).run();
    assert_quiet("batch of 40 among 40 peers", &cost);
    // Daemons started together send their HELLOs in a cluster: whenever the batch falls,
    // the first HELLOs after it must not make the others' older reports look like a
    // majority to pull from.
    for offset_ms in (0..2_000).step_by(250) {
        let cost = Burst {
            starts_over_ms: 50,
            offset_ms,
            ..Burst::new(10, 40, 0)
        }
        .run();
        assert_quiet(
            &format!("batch of 40 among 10 peers started together, +{offset_ms} ms"),
            &cost,
        );
    }
}

#[test]
fn two_officers_bursting_at_once_start_no_session() {
    let cost = Burst {
        officers: 2,
        ..Burst::new(40, 150, 4_500)
    }
    .run();
    assert_quiet("two officers, 150 adjusts each, among 40 peers", &cost);
}

#[test]
fn with_loss_only_peers_that_missed_something_reconcile_and_within_two_heartbeats() {
    for seed in 1..=2 {
        let burst = Burst {
            loss: 0.05,
            seed,
            ..Burst::new(40, 300, 4_500)
        };
        let cost = burst.run();
        assert!(cost.missed > 0, "5 % loss loses something: {cost:?}");
        assert!(cost.sessions > 0, "the losses are repaired: {cost:?}");
        assert_eq!(
            cost.sessions_without_loss, 0,
            "seed {seed}: a peer that missed nothing started a session: {cost:?}"
        );
        assert!(
            cost.converged_after_ms
                .is_some_and(|ms| ms <= 2 * burst.heartbeat_ms),
            "seed {seed}: repaired within two heartbeats of the burst's end: {cost:?}"
        );
    }
}
