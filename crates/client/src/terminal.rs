//! The terminal's mode, kept to be given back: a session that ends while
//! the line editor holds standard input in its raw mode (the server closed
//! an idle `--tcp` session) must not leave the shell after it in that mode.
//!
//! On Unix that mode is the termios settings. A Windows console needs
//! nothing kept: the editor (rustyline) sets the console's mode only while
//! it reads a line, and the shell sets its own whenever it reads its
//! prompt, so only the line break is given back there.

use std::io::{self, Write};

#[cfg(unix)]
use anyhow::Context;
#[cfg(unix)]
use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};

/// The terminal's mode before the editor touched it.
#[derive(Clone)]
pub(crate) struct TerminalMode {
    #[cfg(unix)]
    termios: Termios,
}

impl TerminalMode {
    pub(crate) fn save() -> anyhow::Result<TerminalMode> {
        #[cfg(unix)]
        return tcgetattr(io::stdin())
            .map(|termios| TerminalMode { termios })
            .context("cannot read the terminal's mode");
        #[cfg(not(unix))]
        Ok(TerminalMode {})
    }

    /// Gives the terminal back as it was, the cursor on a line of its own:
    /// for a session that ends while the editor holds the terminal in its
    /// raw mode, so the shell after it is not left in that mode.
    pub(crate) fn restore(&self) {
        #[cfg(unix)]
        let _ = tcsetattr(io::stdin(), SetArg::TCSANOW, &self.termios);
        let mut stdout = io::stdout();
        let _ = stdout.write_all(b"\r\n").and_then(|()| stdout.flush());
    }
}
