//! [`Events`] from a Windows console, through `SetConsoleCtrlHandler`:
//! Ctrl-C, Ctrl-Break and the console's close (and a log-off or shutdown)
//! are each a clean stop, as SIGINT and SIGTERM are on Unix. Windows runs
//! the handler on a thread of its own; the handler only passes the event
//! down a channel, and [`Events::next`] takes it on the server's thread,
//! where anything may be done.
//!
//! Not signal-hook: its registry asks msvcrt for a handler mode only the
//! UCRT knows, and installs the mode's number as the handler, so a
//! windows-gnu build crashes at the first Ctrl-C. Windows has no SIGUSR1:
//! `--metrics` shows the counters while the server runs.
#![allow(unsafe_code)] // SetConsoleCtrlHandler: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender};

use anyhow::Context;
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::core::BOOL;

use super::Event;
use super::console::{Then, event_of};

/// Where the handler sends the events: set once, by [`Events::install`].
static SENT_TO: OnceLock<Sender<Event>> = OnceLock::new();

/// The console handler, installed: every event it receives, in order.
pub(crate) struct Events {
    events: Receiver<Event>,
}

impl Events {
    /// Installs the handler. From then on the events are held until
    /// [`Events::next`] takes them, so one that arrives before the server
    /// is ready is not lost (nor is it the default handler's exit).
    pub(crate) fn install() -> anyhow::Result<Events> {
        let (sender, events) = mpsc::channel();
        SENT_TO
            .set(sender)
            .map_err(|_| anyhow::anyhow!("the console control handler is installed already"))?;
        let routine: unsafe extern "system" fn(u32) -> BOOL = handler;
        // SAFETY: `routine` has the signature Windows calls a handler with
        // and lives as long as the process (a function of this program,
        // never unloaded); it cannot unwind into Windows (it has no panics:
        // a failed send is returned as "not handled"), and what it reaches
        // (a OnceLock, a channel) is safe from any thread.
        let installed = unsafe { SetConsoleCtrlHandler(Some(routine), 1) };
        if installed == 0 {
            return Err(io::Error::last_os_error())
                .context("cannot install the console control handler");
        }
        Ok(Events { events })
    }

    /// Blocks until the next event.
    pub(crate) fn next(&mut self) -> Option<Event> {
        self.events.recv().ok()
    }
}

/// What Windows calls, on a new thread, for each console control event:
/// passes it on and says it was handled (nonzero), or leaves an event the
/// server does not know to the next handler (zero).
extern "system" fn handler(ctrl_type: u32) -> BOOL {
    let Some((event, then)) = event_of(ctrl_type) else {
        return 0;
    };
    if SENT_TO
        .get()
        .is_none_or(|sender| sender.send(event).is_err())
    {
        return 0;
    }
    if then == Then::HoldUntilExit {
        // The process ends when this returns: wait for the server's own
        // exit (after the summary), which ends this thread with it.
        loop {
            std::thread::park();
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console event cannot be delivered to a program without a console
    /// (nor under Wine, but for Ctrl-C): the handler is called directly.
    #[test]
    fn the_handler_passes_each_stop_on_and_declines_the_rest() {
        let mut events = Events::install().expect("install");
        assert_eq!(handler(0), 1);
        assert_eq!(events.next(), Some(Event::Stop("Ctrl-C")));
        assert_eq!(handler(1), 1);
        assert_eq!(events.next(), Some(Event::Stop("Ctrl-Break")));
        assert_eq!(handler(3), 0);
        assert!(Events::install().is_err(), "installed twice");
    }
}
