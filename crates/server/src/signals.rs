//! What the outside world asks of a running server, as [`Event`]s, behind
//! one small interface: [`Events::install`], then [`Events::next`] on a
//! thread of its own. The Unix implementation (signal-hook) is in
//! `signals/unix.rs`; another platform's (a Windows console's Ctrl-C,
//! Ctrl-Break and close) goes beside it, and nothing else changes.
//!
//! On Unix:
//! - SIGINT, SIGTERM and SIGHUP are [`Event::Stop`]. SIGHUP usually asks a
//!   daemon to reload its configuration; upcase has no configuration file,
//!   so SIGHUP (a closed terminal, or a supervisor's stop) is a clean stop
//!   like the other two.
//! - SIGUSR1 is [`Event::Report`]: the counters so far, and serving goes on.

#[cfg(unix)]
mod unix;

#[cfg(unix)]
pub(crate) use unix::Events;

/// One thing asked of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Stop serving; the cause names it for the log (`SIGTERM`, say).
    Stop(&'static str),
    /// Log the counters so far and go on serving.
    Report,
}
