//! [`Events`] from Unix signals, through signal-hook: its handlers only
//! note the signal and wake a pipe, and [`Events::next`] reads them on an
//! ordinary thread, where anything may be done.

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use super::Event;

/// The signals the server handles, installed; every other keeps its default.
pub(crate) struct Events {
    signals: Signals,
}

impl Events {
    /// Installs the handlers. From then on the signals are held until
    /// [`Events::next`] takes them, so a signal that arrives before the
    /// server is ready is not lost (nor is it the default action's death).
    pub(crate) fn install() -> anyhow::Result<Events> {
        let signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])
            .context("cannot install the signal handlers")?;
        Ok(Events { signals })
    }

    /// Blocks until the next event. Two of the same signal that arrive
    /// before it is taken are one event, as the kernel itself would merge
    /// them while the first is pending.
    pub(crate) fn next(&mut self) -> Option<Event> {
        self.signals.forever().find_map(event_of)
    }
}

/// What a signal asks for.
fn event_of(signal: i32) -> Option<Event> {
    match signal {
        SIGINT => Some(Event::Stop("SIGINT")),
        SIGTERM => Some(Event::Stop("SIGTERM")),
        SIGHUP => Some(Event::Stop("SIGHUP")),
        SIGUSR1 => Some(Event::Report),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_stop_and_sigusr1_reports() {
        assert_eq!(event_of(SIGINT), Some(Event::Stop("SIGINT")));
        assert_eq!(event_of(SIGTERM), Some(Event::Stop("SIGTERM")));
        assert_eq!(event_of(SIGHUP), Some(Event::Stop("SIGHUP")));
        assert_eq!(event_of(SIGUSR1), Some(Event::Report));
        assert_eq!(event_of(signal_hook::consts::SIGUSR2), None);
    }
}
