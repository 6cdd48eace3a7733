//! What the server does with each [`Event`]: the first stop sets the stop
//! flag (the workers answer what is queued, the summary is logged, the exit
//! status is 0); a second says in one line that the stop is under way and
//! changes nothing, since `timeout(1)`, for one, signals the server and then
//! its whole process group; a third exits at once with status 1, saying so,
//! for a stop that hangs. A report logs the counters so far, in the
//! summary's format, and the server goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use anyhow::Context;
use tracing::info;
use upcase_cli::EXIT_FAILURE;

use crate::notify::Notifier;
use crate::report::log_totals;
use crate::serving::Live;
use crate::signals::{Event, Events};

/// What a stop signal does, by how many came before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopStep {
    /// The first: stop.
    Begin,
    /// The second: the stop is under way already.
    UnderWay,
    /// The third: stop waiting for the stop.
    Abandon,
}

/// Counts the stop signals.
#[derive(Debug, Default)]
struct Stops {
    seen: u32,
}

impl Stops {
    fn next(&mut self) -> StopStep {
        self.seen = self.seen.saturating_add(1);
        match self.seen {
            1 => StopStep::Begin,
            2 => StopStep::UnderWay,
            _ => StopStep::Abandon,
        }
    }
}

/// Acts on `events` on a thread of its own for as long as the process runs:
/// stop events set `stop` (and tell the supervisor, through `notifier`),
/// reports read `live`.
pub(crate) fn watch(
    mut events: Events,
    stop: Arc<AtomicBool>,
    live: Live,
    notifier: Notifier,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            let mut stops = Stops::default();
            while let Some(event) = events.next() {
                match event {
                    Event::Report => log_totals("counters so far:", &live.totals()),
                    Event::Stop(cause) => match stops.next() {
                        StopStep::Begin => {
                            info!("{cause}: stopping, after answering what is already queued");
                            stop.store(true, Ordering::Relaxed);
                            notifier.notify("STOPPING=1");
                        }
                        StopStep::UnderWay => info!(
                            "{cause}: the stop is already under way (a third stop signal exits at once)"
                        ),
                        StopStep::Abandon => {
                            // Not through the log: this must be said even
                            // when logging is what hangs.
                            eprintln!("error: third stop signal: exiting without waiting");
                            crate::signals::exit_now(i32::from(EXIT_FAILURE));
                        }
                    },
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stop_stops_the_second_waits_the_third_gives_up() {
        let mut stops = Stops::default();
        assert_eq!(stops.next(), StopStep::Begin);
        assert_eq!(stops.next(), StopStep::UnderWay);
        assert_eq!(stops.next(), StopStep::Abandon);
        assert_eq!(stops.next(), StopStep::Abandon);
    }
}
