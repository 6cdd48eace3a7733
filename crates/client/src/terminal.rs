//! The terminal's mode, kept to be given back: a session that ends while
//! the line editor holds standard input in its raw mode (the server closed
//! an idle `--tcp` session) must not leave the shell after it in that mode.

use std::io::{self, Write};

use anyhow::Context;
use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};

/// The terminal's mode before the editor touched it.
#[derive(Clone)]
pub(crate) struct TerminalMode(Termios);

impl TerminalMode {
    pub(crate) fn save() -> anyhow::Result<TerminalMode> {
        tcgetattr(io::stdin())
            .map(TerminalMode)
            .context("cannot read the terminal's mode")
    }

    /// Gives the terminal back as it was, the cursor on a line of its own:
    /// for a session that ends while the editor holds the terminal in its
    /// raw mode, so the shell after it is not left in that mode.
    pub(crate) fn restore(&self) {
        let _ = tcsetattr(io::stdin(), SetArg::TCSANOW, &self.0);
        let mut stdout = io::stdout();
        let _ = stdout.write_all(b"\r\n").and_then(|()| stdout.flush());
    }
}
