//! The signals a test or an xtask task sends to a child, as a type of the
//! kit's own: nix's type exists on Unix only, and the kit also compiles for
//! Windows, which has no signals (see `Process::signal` there).

use std::fmt;

/// A signal to send to a child, named as `kill -l` names it.
// The Unix names, so that call sites read as `kill -INT` does.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    SIGINT,
    SIGTERM,
    SIGHUP,
    SIGKILL,
    SIGUSR1,
    SIGSTOP,
    SIGCONT,
}

impl Signal {
    /// The name, as in `kill -l` with its `SIG` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Signal::SIGINT => "SIGINT",
            Signal::SIGTERM => "SIGTERM",
            Signal::SIGHUP => "SIGHUP",
            Signal::SIGKILL => "SIGKILL",
            Signal::SIGUSR1 => "SIGUSR1",
            Signal::SIGSTOP => "SIGSTOP",
            Signal::SIGCONT => "SIGCONT",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(unix)]
impl From<Signal> for nix::sys::signal::Signal {
    fn from(signal: Signal) -> Self {
        use nix::sys::signal::Signal as Nix;
        match signal {
            Signal::SIGINT => Nix::SIGINT,
            Signal::SIGTERM => Nix::SIGTERM,
            Signal::SIGHUP => Nix::SIGHUP,
            Signal::SIGKILL => Nix::SIGKILL,
            Signal::SIGUSR1 => Nix::SIGUSR1,
            Signal::SIGSTOP => Nix::SIGSTOP,
            Signal::SIGCONT => Nix::SIGCONT,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_systems() {
        for signal in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGKILL,
            Signal::SIGUSR1,
            Signal::SIGSTOP,
            Signal::SIGCONT,
        ] {
            let nix = nix::sys::signal::Signal::from(signal);
            assert_eq!(signal.to_string(), nix.as_str());
        }
    }
}
