//! A person at a terminal: each line read through a line editor (rustyline:
//! arrow keys to edit, up and down for the lines typed before, Ctrl-D to
//! end), after the textbook's prompt. Only when standard input and output
//! are both terminals: piped input is read as raw bytes, exactly as the
//! textbook's client reads it (`input.rs`), with no prompt.
//!
//! The history lives in memory for the session; nothing is written to the
//! user's home. Bracketed paste is off, so pasted lines go one by one, each
//! its own message, as if typed.

use anyhow::Context;
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};

use crate::input::{Line, Lines, PROMPT_TEXT};
use crate::terminal::TerminalMode;

/// Lines the history keeps.
const HISTORY_LINES: usize = 1_000;

/// Ctrl-C at the prompt: the session ends, with exit status 130, as a
/// program stopped by SIGINT.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted (Ctrl-C)")
    }
}

impl std::error::Error for Interrupted {}

/// The line editor on standard input and output.
pub(crate) struct Editor {
    editor: DefaultEditor,
    terminal: TerminalMode,
}

impl Editor {
    pub(crate) fn new() -> anyhow::Result<Editor> {
        let config = Config::builder()
            .auto_add_history(true)
            .history_ignore_dups(true)
            .and_then(|b| b.max_history_size(HISTORY_LINES))
            .context("cannot set up the line editor")?
            .bracketed_paste(false)
            .build();
        Ok(Editor {
            terminal: TerminalMode::save()?,
            editor: DefaultEditor::with_config(config).context("cannot start the line editor")?,
        })
    }
}

impl Lines for Editor {
    /// A line as typed (UTF-8, as a terminal sends it), after the prompt.
    fn next_line(&mut self, line: &mut Vec<u8>, max_len: usize) -> anyhow::Result<Line> {
        line.clear();
        match self.editor.readline(PROMPT_TEXT) {
            Ok(text) => {
                line.extend_from_slice(text.as_bytes());
                Ok(if line.len() > max_len {
                    Line::TooLong
                } else {
                    Line::Read
                })
            }
            Err(ReadlineError::Eof) => Ok(Line::End),
            Err(ReadlineError::Interrupted) => Err(Interrupted.into()),
            Err(err) => Err(anyhow::Error::new(err).context("cannot read the terminal")),
        }
    }

    fn terminal(&self) -> Option<TerminalMode> {
        Some(self.terminal.clone())
    }
}
