//! What the outside world asks of a running server, as [`Event`]s, behind
//! one small interface: [`Events::install`], then [`Events::next`] on a
//! thread of its own; and [`exit_now`] for a stop that hangs. One
//! implementation per platform: `signals/unix.rs` (signal-hook) and
//! `signals/windows.rs` (the console's control handler, with its table of
//! events in `signals/console.rs`); nothing else changes.
//!
//! On Unix:
//! - SIGINT, SIGTERM and SIGHUP are [`Event::Stop`]. SIGHUP usually asks a
//!   daemon to reload its configuration; upcase has no configuration file,
//!   so SIGHUP (a closed terminal, or a supervisor's stop) is a clean stop
//!   like the other two.
//! - SIGUSR1 is [`Event::Report`]: the counters so far, and serving goes on.
//!
//! On Windows, Ctrl-C, Ctrl-Break and closing the console (a log-off, a
//! shutdown) are [`Event::Stop`], with the same clean stop and summary;
//! nothing asks for a report (`--metrics` shows the counters).

#[cfg(any(windows, test))]
mod console;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub(crate) use unix::Events;
#[cfg(windows)]
pub(crate) use windows::Events;

/// Ends the process at once with `code`, without waiting for the threads:
/// `_exit` on Unix, which runs no exit handlers either (one may be what
/// hangs); `ExitProcess` on Windows, std's exit there.
#[cfg(unix)]
pub(crate) use signal_hook::low_level::exit as exit_now;
#[cfg(windows)]
pub(crate) use std::process::exit as exit_now;

/// One thing asked of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Stop serving; the cause names it for the log (`SIGTERM`, say).
    Stop(&'static str),
    /// Log the counters so far and go on serving.
    // Nothing asks for it on Windows.
    #[cfg_attr(windows, allow(dead_code))]
    Report,
}
