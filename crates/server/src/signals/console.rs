//! What each Windows console control event asks of the server, apart from
//! the handler that receives them (`signals/windows.rs`) so that the table
//! is tested on every system. The event numbers are `wincon.h`'s, written
//! out here and checked against windows-sys where it exists.

use super::Event;

/// Ctrl-C in the console (and SIGINT to a program under Wine).
const CTRL_C_EVENT: u32 = 0;
/// Ctrl-Break in the console.
const CTRL_BREAK_EVENT: u32 = 1;
/// The console window closed.
const CTRL_CLOSE_EVENT: u32 = 2;
/// The user logs off.
const CTRL_LOGOFF_EVENT: u32 = 5;
/// The system shuts down.
const CTRL_SHUTDOWN_EVENT: u32 = 6;

#[cfg(windows)]
const _: () = {
    use windows_sys::Win32::System::Console as console;
    assert!(
        CTRL_C_EVENT == console::CTRL_C_EVENT
            && CTRL_BREAK_EVENT == console::CTRL_BREAK_EVENT
            && CTRL_CLOSE_EVENT == console::CTRL_CLOSE_EVENT
            && CTRL_LOGOFF_EVENT == console::CTRL_LOGOFF_EVENT
            && CTRL_SHUTDOWN_EVENT == console::CTRL_SHUTDOWN_EVENT
    );
};

/// What the handler does once it has passed the event on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Then {
    /// Return: the process goes on, and stops when the server has.
    Return,
    /// Hold the handler until the process exits: Windows ends the process
    /// as soon as the handler of a close, log-off or shutdown returns (or
    /// after a few seconds whatever it does), and the summary must be
    /// logged first.
    HoldUntilExit,
}

/// The event a console control event is, and what the handler does then;
/// `None` for an event the server leaves to the next handler (Windows'
/// default, for one).
pub(super) fn event_of(ctrl_type: u32) -> Option<(Event, Then)> {
    let (cause, then) = match ctrl_type {
        CTRL_C_EVENT => ("Ctrl-C", Then::Return),
        CTRL_BREAK_EVENT => ("Ctrl-Break", Then::Return),
        CTRL_CLOSE_EVENT => ("console closed", Then::HoldUntilExit),
        CTRL_LOGOFF_EVENT => ("log-off", Then::HoldUntilExit),
        CTRL_SHUTDOWN_EVENT => ("shutdown", Then::HoldUntilExit),
        _ => return None,
    };
    Some((Event::Stop(cause), then))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_event_is_a_clean_stop_and_a_close_waits_for_it() {
        assert_eq!(
            event_of(CTRL_C_EVENT),
            Some((Event::Stop("Ctrl-C"), Then::Return))
        );
        assert_eq!(
            event_of(CTRL_BREAK_EVENT),
            Some((Event::Stop("Ctrl-Break"), Then::Return))
        );
        assert_eq!(
            event_of(CTRL_CLOSE_EVENT),
            Some((Event::Stop("console closed"), Then::HoldUntilExit))
        );
        for ctrl in [CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT] {
            assert!(matches!(
                event_of(ctrl),
                Some((Event::Stop(_), Then::HoldUntilExit))
            ));
        }
        // 3 and 4 are not defined; nothing the server does not know stops it.
        assert_eq!(event_of(3), None);
        assert_eq!(event_of(7), None);
    }
}
