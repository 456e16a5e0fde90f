//! How often a failure that repeats with every attempt is logged. On a full disk every batch
//! of merged entries fails to append; one error line per batch buried the log (880 lines in
//! under four minutes in the soak test). A streak is reported once at its start, then at
//! most once per interval with how many failures went unreported, and once when it ends.
//! Pure: the caller passes the monotonic time in, so the rate limit is tested without
//! waiting.

/// How often an ongoing streak is reminded of in the daemon's log: a minute.
pub(super) const REMINDER_INTERVAL_MS: u64 = 60_000;

/// What the caller should log for one attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StreakLog {
    /// Nothing: the outcome is already covered by an earlier line.
    Quiet,
    /// The first failure after a success (or ever): log it in full, at error.
    First,
    /// A reminder that the streak goes on: `suppressed` failures since the last line.
    Ongoing { suppressed: u64 },
    /// A success ended a streak of `failures` failures.
    Recovered { failures: u64 },
}

/// A streak of consecutive failures of one operation, and when it was last reported.
#[derive(Debug)]
pub(super) struct FailureStreak {
    interval_ms: u64,
    /// Failures in the current streak; 0 while things work.
    failures: u64,
    /// Failures since the last line logged about the streak.
    unreported: u64,
    last_logged_ms: u64,
}

impl FailureStreak {
    /// A streak reminded of at most once per `interval_ms`.
    pub(super) fn new(interval_ms: u64) -> FailureStreak {
        FailureStreak {
            interval_ms,
            failures: 0,
            unreported: 0,
            last_logged_ms: 0,
        }
    }

    /// Records a failure at `now_ms` (monotonic) and says what to log.
    pub(super) fn failed(&mut self, now_ms: u64) -> StreakLog {
        self.failures += 1;
        if self.failures == 1 {
            self.unreported = 0;
            self.last_logged_ms = now_ms;
            return StreakLog::First;
        }
        self.unreported += 1;
        if now_ms.saturating_sub(self.last_logged_ms) < self.interval_ms {
            return StreakLog::Quiet;
        }
        let suppressed = std::mem::take(&mut self.unreported);
        self.last_logged_ms = now_ms;
        StreakLog::Ongoing { suppressed }
    }

    /// Records a success and says whether it ended a streak.
    pub(super) fn succeeded(&mut self) -> StreakLog {
        self.unreported = 0;
        match std::mem::take(&mut self.failures) {
            0 => StreakLog::Quiet,
            failures => StreakLog::Recovered { failures },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_during_a_streak() {
        let mut streak = FailureStreak::new(60_000);
        assert_eq!(streak.failed(1_000), StreakLog::First);
        // A failure every 250 ms for just under a minute: nothing more is logged.
        for t in (1_250..61_000).step_by(250) {
            assert_eq!(streak.failed(t), StreakLog::Quiet, "at {t} ms");
        }
        // The minute is up: one reminder counting every failure it stood for.
        assert_eq!(
            streak.failed(61_000),
            StreakLog::Ongoing { suppressed: 240 }
        );
        assert_eq!(streak.failed(61_500), StreakLog::Quiet);
        assert_eq!(streak.failed(121_000), StreakLog::Ongoing { suppressed: 2 });
    }

    #[test]
    fn success_ends_the_streak_and_the_next_failure_is_first_again() {
        let mut streak = FailureStreak::new(60_000);
        assert_eq!(streak.succeeded(), StreakLog::Quiet);
        assert_eq!(streak.failed(0), StreakLog::First);
        assert_eq!(streak.failed(10), StreakLog::Quiet);
        assert_eq!(streak.failed(20), StreakLog::Quiet);
        assert_eq!(streak.succeeded(), StreakLog::Recovered { failures: 3 });
        assert_eq!(streak.succeeded(), StreakLog::Quiet);
        // A new streak soon after is reported at once, not held back by the last one.
        assert_eq!(streak.failed(30), StreakLog::First);
        assert_eq!(streak.failed(40), StreakLog::Quiet);
    }
}
