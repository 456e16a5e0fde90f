//! How long a requester waits for an answer before asking again: TCP's retransmission
//! timeout (RFC 6298) over the round trips of answered requests. A fixed 300 ms wait gave up
//! on partners that were only slow (a CPU-starved responder answering after a second or
//! more: the soak test saw 39 of 120 sessions abandoned while answers were on their way);
//! learning the round trip waits for such a partner, and doubling the wait on every timeout
//! still gives up on one that went silent, within a bounded time.
//!
//! Every request carries an id of its own and asking again uses a new id, so an answer's
//! round trip is never ambiguous (the problem Karn's algorithm solves for TCP): late answers
//! are measured too.

/// The smoothed round trip and its variation, and the timeout derived from them.
#[derive(Clone, Debug)]
pub(super) struct Rto {
    /// Smoothed round trip (ms, times 8 to keep the fractions of the 1/8 gain); `None`
    /// until the first answer.
    srtt8: Option<u64>,
    /// Smoothed mean deviation of the round trip (ms, times 4 for the 1/4 gain).
    rttvar4: u64,
    /// The current timeout (ms), backed off by timeouts until the next sample.
    rto_ms: u64,
    floor_ms: u64,
    ceiling_ms: u64,
}

impl Rto {
    /// An estimator that starts at `floor_ms` (no round trip measured yet: a fast partner
    /// is treated as before) and never waits longer than `ceiling_ms`.
    pub(super) fn new(floor_ms: u64, ceiling_ms: u64) -> Rto {
        Rto {
            srtt8: None,
            rttvar4: 0,
            rto_ms: floor_ms,
            floor_ms,
            ceiling_ms: ceiling_ms.max(floor_ms),
        }
    }

    /// How long to wait for the answer to a request sent now.
    pub(super) fn timeout_ms(&self) -> u64 {
        self.rto_ms
    }

    /// An answer came `rtt_ms` after its request was sent (RFC 6298 section 2.3, with
    /// alpha 1/8 and beta 1/4 in integer arithmetic); ends any backoff.
    pub(super) fn sample(&mut self, rtt_ms: u64) {
        match self.srtt8 {
            None => {
                self.srtt8 = Some(rtt_ms * 8);
                self.rttvar4 = rtt_ms * 2;
            }
            Some(srtt8) => {
                let srtt = srtt8 / 8;
                // rttvar = 3/4 rttvar + 1/4 |srtt - rtt|
                self.rttvar4 = self.rttvar4 - self.rttvar4 / 4 + srtt.abs_diff(rtt_ms);
                // srtt = 7/8 srtt + 1/8 rtt
                self.srtt8 = Some(srtt8 - srtt8 / 8 + rtt_ms);
            }
        }
        let srtt = self.srtt8.unwrap_or(0) / 8;
        // RTO = srtt + 4 rttvar (rttvar4 is already 4 rttvar).
        self.rto_ms = (srtt + self.rttvar4).clamp(self.floor_ms, self.ceiling_ms);
    }

    /// A request went unanswered: wait twice as long for the next (section 5.5).
    pub(super) fn back_off(&mut self) {
        self.rto_ms = self.rto_ms.saturating_mul(2).min(self.ceiling_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_answers_keep_the_floor() {
        let mut rto = Rto::new(300, 3_000);
        assert_eq!(rto.timeout_ms(), 300);
        for _ in 0..20 {
            rto.sample(2);
        }
        assert_eq!(rto.timeout_ms(), 300);
    }

    #[test]
    fn slow_steady_answers_raise_the_timeout_above_their_round_trip() {
        let mut rto = Rto::new(300, 3_000);
        rto.sample(1_000);
        // First sample: srtt 1000, rttvar 500, RTO 3000.
        assert_eq!(rto.timeout_ms(), 3_000);
        for _ in 0..50 {
            rto.sample(1_000);
        }
        // The deviation decays; the timeout stays above the round trip.
        let settled = rto.timeout_ms();
        assert!((1_000..1_200).contains(&settled), "{settled}");
    }

    #[test]
    fn timeouts_double_up_to_the_ceiling_and_a_sample_ends_the_backoff() {
        let mut rto = Rto::new(300, 3_000);
        let mut seen = Vec::new();
        for _ in 0..5 {
            rto.back_off();
            seen.push(rto.timeout_ms());
        }
        assert_eq!(seen, vec![600, 1_200, 2_400, 3_000, 3_000]);
        rto.sample(10);
        assert_eq!(rto.timeout_ms(), 300);
    }
}
