//! [`PeerConfigBuilder`]: a [`PeerConfig`] for tests, the shipped defaults' shape with
//! shorter timers, changed only where a test needs it.

use super::world::node_addr;
use crate::core::sync::{PeerConfig, Tuning};

/// Builds a [`PeerConfig`]. Starts in group `raid`, whisper port 1000, multicast, sync on, a HELLO
/// every second, peers forgotten after 5 s of silence, clocks pulled at most an hour ahead,
/// default [`Tuning`].
///
/// ```
/// use loot_sync::testing::PeerConfigBuilder;
/// let config = PeerConfigBuilder::new("a").heartbeat_ms(500).build();
/// assert_eq!((config.node_name.as_str(), config.heartbeat_ms), ("a", 500));
/// ```
#[derive(Clone, Debug)]
pub struct PeerConfigBuilder {
    config: PeerConfig,
}

impl PeerConfigBuilder {
    /// A config for the node called `node_name`.
    pub fn new(node_name: impl Into<String>) -> PeerConfigBuilder {
        PeerConfigBuilder {
            config: PeerConfig {
                node_name: node_name.into(),
                group: "raid".into(),
                whisper_port: 1000,
                multicast: true,
                sync_enabled: true,
                heartbeat_ms: 1000,
                peer_timeout_ms: 5000,
                max_clock_drift_ms: 3_600_000,
                tuning: Tuning::default(),
            },
        }
    }

    /// Node `index` of a [`World`](super::World): it answers on the whisper port the world
    /// delivers that node's datagrams to.
    pub fn world_node(self, index: usize) -> PeerConfigBuilder {
        self.whisper_port(node_addr(index).port())
    }

    /// The group (ledger) name.
    pub fn group(mut self, group: impl Into<String>) -> PeerConfigBuilder {
        self.config.group = group.into();
        self
    }

    /// The whisper port advertised in every datagram.
    pub fn whisper_port(mut self, port: u16) -> PeerConfigBuilder {
        self.config.whisper_port = port;
        self
    }

    /// Whether sync starts switched on.
    pub fn sync_enabled(mut self, enabled: bool) -> PeerConfigBuilder {
        self.config.sync_enabled = enabled;
        self
    }

    /// HELLO interval.
    pub fn heartbeat_ms(mut self, ms: u64) -> PeerConfigBuilder {
        self.config.heartbeat_ms = ms;
        self
    }

    /// Silence after which a peer is forgotten.
    pub fn peer_timeout_ms(mut self, ms: u64) -> PeerConfigBuilder {
        self.config.peer_timeout_ms = ms;
        self
    }

    /// How far beyond our wall clock a peer's timestamp may push our clock.
    pub fn max_clock_drift_ms(mut self, ms: u64) -> PeerConfigBuilder {
        self.config.max_clock_drift_ms = ms;
        self
    }

    /// All protocol knobs at once.
    pub fn tuning(mut self, tuning: Tuning) -> PeerConfigBuilder {
        self.config.tuning = tuning;
        self
    }

    /// Whether the peer uses the multicast group (`false`: unicast only, never
    /// [`Action::SendGroup`](crate::core::sync::Action::SendGroup)).
    pub fn multicast(mut self, multicast: bool) -> PeerConfigBuilder {
        self.config.multicast = multicast;
        self
    }

    /// Longest wait between two HELLOs to a silent listed peer.
    pub fn listed_retry_max_ms(mut self, ms: u64) -> PeerConfigBuilder {
        self.config.tuning.listed_retry_max_ms = ms;
        self
    }

    /// Most learned unicast peers kept as destinations.
    pub fn max_learned_peers(mut self, max: usize) -> PeerConfigBuilder {
        self.config.tuning.max_learned_peers = max;
        self
    }

    /// How long a request waits for its answer before it is asked again.
    pub fn request_timeout_ms(mut self, ms: u64) -> PeerConfigBuilder {
        self.config.tuning.request_timeout_ms = ms;
        self
    }

    /// The config.
    pub fn build(self) -> PeerConfig {
        self.config
    }
}
