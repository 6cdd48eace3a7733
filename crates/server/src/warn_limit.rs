//! A limit on warnings about bad traffic, so a flood of bad datagrams cannot
//! flood the log too.

use std::time::{Duration, Instant};

/// Lets at most `per_window` warnings through per `window`; the first one let
/// through after some were held back says how many.
///
/// Each worker thread owns one, so it needs no lock. Time is passed in, so
/// the tests need no clock.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// What a worker uses: a few lines per second are enough to see what is
/// going on, and few enough not to matter however hard the server is hit.
pub(crate) const WARNINGS_PER_SECOND: u32 = 5;

impl Default for WarnLimiter {
    fn default() -> Self {
        WarnLimiter::new(WARNINGS_PER_SECOND, Duration::from_secs(1))
    }
}

impl WarnLimiter {
    pub(crate) fn new(per_window: u32, window: Duration) -> Self {
        WarnLimiter {
            per_window,
            window,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Asks to log one warning at `now`. `Some(n)` means log it, and say
    /// that `n` warnings were suppressed since the last one logged (when
    /// `n > 0`); `None` means drop it (it is counted).
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        let window_over = match self.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.window,
        };
        if window_over {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Warnings suppressed and not yet reported by a later one, which the
    /// caller reports before it stops; resets the count.
    pub(crate) fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// `" (N similar warnings suppressed)"`, or nothing when none were.
pub(crate) fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar warnings suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_is_cut_to_the_limit_and_the_rest_is_counted() {
        let mut limiter = WarnLimiter::new(3, SEC);
        let t0 = Instant::now();
        let decisions: Vec<_> = (0..10).map(|_| limiter.allow(t0)).collect();
        assert_eq!(
            decisions,
            [
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ]
        );
        // The next window's first line reports the seven held back, once.
        assert_eq!(limiter.allow(t0 + SEC), Some(7));
        assert_eq!(limiter.allow(t0 + SEC), Some(0));
    }

    #[test]
    fn the_window_restarts_only_after_it_has_passed() {
        let mut limiter = WarnLimiter::new(1, SEC);
        let t0 = Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0 + SEC / 2), None);
        assert_eq!(limiter.allow(t0 + SEC - Duration::from_nanos(1)), None);
        assert_eq!(limiter.allow(t0 + SEC), Some(2));
        assert_eq!(limiter.allow(t0 + SEC + SEC / 2), None);
        assert_eq!(limiter.allow(t0 + 3 * SEC), Some(1));
    }

    #[test]
    fn a_steady_trickle_is_never_suppressed() {
        let mut limiter = WarnLimiter::new(2, SEC);
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(limiter.allow(t0 + i * SEC / 2), Some(0));
        }
    }

    #[test]
    fn a_long_flood_logs_at_most_the_limit_per_window() {
        let mut limiter = WarnLimiter::new(5, SEC);
        let t0 = Instant::now();
        let mut logged = 0;
        let mut reported = 0;
        let total = 100_000u32;
        // 100,000 warnings spread evenly over 10 seconds.
        for i in 0..total {
            if let Some(n) = limiter.allow(t0 + i * (10 * SEC / total)) {
                logged += 1;
                reported += n;
            }
        }
        assert_eq!(logged, 50);
        assert_eq!(
            reported + limiter.take_suppressed() + logged,
            u64::from(total),
            "every warning is either logged or counted as suppressed"
        );
        assert_eq!(limiter.take_suppressed(), 0);
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let mut limiter = WarnLimiter::new(1, SEC);
        let t0 = Instant::now() + SEC;
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0 - SEC / 2), None);
    }

    #[test]
    fn the_note_is_empty_when_nothing_was_suppressed() {
        assert_eq!(suppressed_note(0), "");
        assert_eq!(suppressed_note(4), " (4 similar warnings suppressed)");
    }
}
