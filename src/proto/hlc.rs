//! The hybrid logical clock that stamps entries: wall-clock milliseconds with a counter, so
//! every new local entry sorts after everything its node has seen, even when the wall clock
//! steps back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest HLC value an entry may carry; `u64::MAX` is reserved as the open upper bound of
/// the key space used by sync ranges.
pub const MAX_AT: u64 = u64::MAX - 1;

/// A hybrid-logical-clock timestamp: the top 48 bits are Unix milliseconds, the low 16 bits a
/// counter that orders entries made within one millisecond (or after a clock step back).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Hlc(pub u64);

impl Hlc {
    /// Builds an HLC value from Unix milliseconds and a counter.
    pub fn new(unix_ms: u64, counter: u16) -> Hlc {
        Hlc((unix_ms << 16) | counter as u64)
    }

    /// The wall-clock part, in Unix milliseconds.
    pub fn unix_ms(self) -> u64 {
        self.0 >> 16
    }

    /// The logical counter part.
    pub fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl Hlc {
    /// The wall-clock part as an RFC 3339 time in UTC with milliseconds (a valid timestamp
    /// for spreadsheets), or `@<ms>ms` past the year 9999.
    pub fn wall_time(self) -> String {
        // RFC 3339 ends at year 9999 (humantime panics past it), but a peer's entry may carry
        // any timestamp up to MAX_AT: print those as raw milliseconds.
        const LAST_RFC3339_MS: u64 = 253_402_300_799_999;
        if self.unix_ms() > LAST_RFC3339_MS {
            format!("@{}ms", self.unix_ms())
        } else {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.unix_ms());
            humantime::format_rfc3339_millis(time).to_string()
        }
    }
}

impl fmt::Display for Hlc {
    /// The wall time, then `+N` when the logical counter is not zero (entries made within
    /// one millisecond, or after a clock stepped back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wall_time())?;
        if self.counter() != 0 {
            write!(f, "+{}", self.counter())?;
        }
        Ok(())
    }
}

/// The hybrid logical clock of one node. New local entries are stamped after everything the
/// node has seen; entries from peers advance the clock, but by at most `max_drift_ms` beyond
/// the local wall clock, so one peer with a clock hours ahead cannot drag everyone's clocks.
#[derive(Clone, Debug)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
}

impl HlcClock {
    /// A clock that has seen nothing yet.
    pub fn new(max_drift_ms: u64) -> HlcClock {
        HlcClock {
            last: Hlc(0),
            max_drift_ms,
        }
    }

    /// The highest timestamp issued or observed so far.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Stamps a new local event at wall time `now_ms`: strictly after everything seen.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let physical = Hlc::new(now_ms, 0);
        self.last = if physical > self.last {
            physical
        } else {
            Hlc(self.last.0.saturating_add(1).min(MAX_AT))
        };
        self.last
    }

    /// Folds in a timestamp seen on a stored or received entry, capped at `now_ms +
    /// max_drift_ms` so a far-future peer cannot run the clock away.
    pub fn observe(&mut self, seen: Hlc, now_ms: u64) {
        let cap = Hlc::new(now_ms.saturating_add(self.max_drift_ms), u16::MAX);
        let seen = seen.min(cap);
        if seen > self.last {
            self.last = seen;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_valid_timestamp_prints_without_panicking() {
        // A hostile peer may send timestamps far in the future; history must still print.
        let far = Hlc(MAX_AT);
        assert_eq!(
            far.to_string(),
            format!("@{}ms+{}", far.unix_ms(), far.counter())
        );
        assert_eq!(
            Hlc::new(253_402_300_799_999, 0).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(Hlc::new(0, 2).to_string(), "1970-01-01T00:00:00.000Z+2");
    }

    #[test]
    fn hlc_packs_ms_and_counter() {
        let h = Hlc::new(1_700_000_000_123, 5);
        assert_eq!(h.unix_ms(), 1_700_000_000_123);
        assert_eq!(h.counter(), 5);
        assert!(Hlc::new(10, 0) > Hlc::new(9, u16::MAX));
    }

    #[test]
    fn tick_is_strictly_increasing_even_when_wall_clock_steps_back() {
        let mut c = HlcClock::new(60_000);
        let a = c.tick(1_000_000);
        let b = c.tick(1_000_000);
        let d = c.tick(500_000); // clock stepped back
        assert!(a < b && b < d, "{a:?} {b:?} {d:?}");
        assert_eq!(d.unix_ms(), 1_000_000);
    }

    #[test]
    fn observe_advances_but_is_capped_by_drift() {
        let mut c = HlcClock::new(60_000);
        c.observe(Hlc::new(2_000_000, 3), 1_000_000);
        // capped at now + 60 s
        assert_eq!(c.last().unix_ms(), 1_060_000);
        let next = c.tick(1_000_000);
        assert!(next > Hlc::new(1_060_000, 0));
        // a past timestamp does not move the clock back
        c.observe(Hlc::new(5, 0), 1_000_000);
        assert!(c.last() >= next);
    }

    #[test]
    fn new_local_entry_sorts_after_everything_seen() {
        let mut c = HlcClock::new(3_600_000);
        // peer an hour ahead of us (within drift)
        let remote = Hlc::new(1_000_000 + 3_000_000, 0);
        c.observe(remote, 1_000_000);
        assert!(c.tick(1_000_000) > remote);
    }
}
