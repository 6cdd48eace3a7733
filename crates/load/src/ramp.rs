//! Which rate `--find-rate` tries next, without I/O: double while steps
//! pass, halve while they fail, then narrow the gap between the highest
//! rate that passed and the lowest that failed (geometric midpoints) until
//! they are within [`PRECISION`] of each other, in at most `--max-steps`.
//!
//! Steps are noisy, so a rate may pass above one that failed: the search
//! only ever tries rates between the two, and keeps the highest pass and
//! the lowest failure, so it still ends.

/// The search stops once the lowest failing rate is at most this factor
/// above the highest passing one: finer than the 10-30 % two runs of the
/// same server drift apart here, so a finer search would only chase noise.
pub(crate) const PRECISION: f64 = 1.05;

/// The fastest rate tried: well past anything loopback carries, so the
/// doubling always ends.
const MAX_RATE: u64 = 1_000_000_000;

/// The state of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ramp {
    next: Option<u64>,
    passed: Option<u64>,
    failed: Option<u64>,
    steps_left: u32,
}

impl Ramp {
    /// A search starting at `first` requests per second, of at most
    /// `max_steps` steps.
    pub(crate) fn new(first: u64, max_steps: u32) -> Ramp {
        Ramp {
            next: (max_steps > 0).then_some(first.clamp(1, MAX_RATE)),
            passed: None,
            failed: None,
            steps_left: max_steps,
        }
    }

    /// The rate of the next step; `None` once the search is over.
    pub(crate) fn next(&self) -> Option<u64> {
        self.next
    }

    /// The highest rate that passed so far.
    pub(crate) fn found(&self) -> Option<u64> {
        self.passed
    }

    /// Takes the outcome of the step at `rate` and picks the next one.
    pub(crate) fn record(&mut self, rate: u64, passed: bool) {
        if passed {
            self.passed = self.passed.max(Some(rate));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
        self.steps_left = self.steps_left.saturating_sub(1);
        self.next = if self.steps_left == 0 {
            None
        } else {
            self.pick()
        };
    }

    fn pick(&self) -> Option<u64> {
        match (self.passed, self.failed) {
            (Some(low), None) => (low < MAX_RATE).then(|| low.saturating_mul(2).min(MAX_RATE)),
            (None, Some(high)) => (high > 1).then_some(high / 2),
            (Some(low), Some(high)) => {
                if high as f64 <= low as f64 * PRECISION {
                    return None;
                }
                let mid = ((low as f64) * (high as f64)).sqrt().round() as u64;
                (low < mid && mid < high).then_some(mid)
            }
            (None, None) => self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a server that passes every rate up to
    /// `capacity`; returns the rates tried and what was found.
    fn search(first: u64, max_steps: u32, capacity: u64) -> (Vec<u64>, Option<u64>) {
        let mut ramp = Ramp::new(first, max_steps);
        let mut tried = Vec::new();
        while let Some(rate) = ramp.next() {
            tried.push(rate);
            ramp.record(rate, rate <= capacity);
            assert!(tried.len() <= max_steps as usize, "{tried:?}");
        }
        (tried, ramp.found())
    }

    #[test]
    fn it_doubles_then_narrows_to_within_the_precision() {
        let (tried, found) = search(1_000, 32, 300_000);
        assert_eq!(
            &tried[..10],
            &[
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000
            ]
        );
        let found = found.unwrap();
        assert!((256_000..=300_000).contains(&found), "{tried:?}");
        // The lowest failure tried is within 5 % of the pass.
        let lowest_failure = tried.iter().filter(|&&r| r > 300_000).min().unwrap();
        assert!(
            *lowest_failure as f64 <= found as f64 * PRECISION,
            "{tried:?}"
        );
        assert!(tried.len() <= 15, "{tried:?}");
    }

    #[test]
    fn it_halves_below_a_first_rate_that_fails() {
        let (tried, found) = search(1_000, 32, 300);
        assert_eq!(&tried[..3], &[1_000, 500, 250]);
        assert!((250..=300).contains(&found.unwrap()), "{tried:?}");
        let (tried, found) = search(4, 32, 0);
        assert_eq!((tried, found), (vec![4, 2, 1], None), "nothing passes");
    }

    #[test]
    fn it_stops_after_its_steps_and_at_the_top() {
        let (tried, found) = search(1_000, 3, u64::MAX);
        assert_eq!((tried, found), (vec![1_000, 2_000, 4_000], Some(4_000)));
        let (tried, found) = search(MAX_RATE / 2, 10, u64::MAX);
        assert_eq!(tried, [MAX_RATE / 2, MAX_RATE]);
        assert_eq!(found, Some(MAX_RATE));
        assert_eq!(Ramp::new(5, 0).next(), None, "no steps, no search");
    }

    #[test]
    fn a_noisy_pass_above_a_failure_never_widens_the_gap() {
        let mut ramp = Ramp::new(1_000, 20);
        ramp.record(1_000, true);
        ramp.record(2_000, false);
        let mid = ramp.next().unwrap();
        assert!((1_000..2_000).contains(&mid), "{mid}");
        // The midpoint fails, then a retry of something higher passes.
        ramp.record(mid, false);
        ramp.record(1_900, true);
        assert_eq!(ramp.found(), Some(1_900));
        assert!(ramp.next().is_none(), "1900 passed, {mid} failed: done");
    }
}
