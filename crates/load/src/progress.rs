//! A progress bar on standard error, only when it is a terminal: a run
//! piped into a file or a tool prints nothing but its result.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Clock nanoseconds between two updates: the loop calls `update` per
/// batch, far more often than a person can read.
const EVERY_NS: u64 = 100_000_000;

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    next_ns: u64,
    last: (u64, u64),
}

impl Progress {
    /// A bar over `total` of run time when `show`.
    pub(crate) fn new(show: bool, total: Duration) -> Progress {
        let bar = show.then(|| {
            let millis = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
            let bar = ProgressBar::with_draw_target(Some(millis), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::default_bar().template("{bar:30} {percent:>3}% {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            next_ns: 0,
            last: (0, 0),
        }
    }

    /// Shows the time `now_ns` into the run and the correct replies so far.
    pub(crate) fn update(&mut self, now_ns: u64, correct: u64) {
        let Some(bar) = &self.bar else { return };
        if now_ns < self.next_ns {
            return;
        }
        self.next_ns = now_ns + EVERY_NS;
        let (then_ns, then_correct) = std::mem::replace(&mut self.last, (now_ns, correct));
        let span = now_ns.saturating_sub(then_ns).max(1) as f64 / 1e9;
        let rate = correct.saturating_sub(then_correct) as f64 / span;
        bar.set_position(now_ns / 1_000_000);
        bar.set_message(format!("{correct} correct replies, {rate:.0}/s"));
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
