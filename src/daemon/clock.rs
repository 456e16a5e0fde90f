//! Wall-clock time for entry timestamps, behind a trait so tests can run a daemon whose
//! clock is wrong (hours off) without touching the machine's clock.

use crate::node;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the daemon reads wall-clock time. Tests inject a skewed clock through this.
pub trait Clock: Send + Sync + 'static {
    /// Current wall-clock time in Unix milliseconds.
    fn unix_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        node::system_unix_ms()
    }
}

/// The system clock shifted by an adjustable offset (a wrong clock, for tests and demos).
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    /// A clock `offset_ms` ahead of the system clock (negative: behind).
    pub fn new(offset_ms: i64) -> OffsetClock {
        OffsetClock {
            offset_ms: AtomicI64::new(offset_ms),
        }
    }

    /// Changes the offset.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn unix_ms(&self) -> u64 {
        let now = node::system_unix_ms() as i64;
        now.saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .max(0) as u64
    }
}
