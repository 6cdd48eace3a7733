//! Standard output for the replies: their bytes as they are, except on a
//! Windows console, which takes only UTF-8 (std refuses anything else
//! there, and the write would end the session). There a reply that is not
//! UTF-8 is shown with U+FFFD for each bad sequence, and a character split
//! between two writes (a TCP reply arrives in pieces) is held until its end
//! comes. A pipe or a file, on every system, still gets the exact bytes.

use std::io::{self, IsTerminal, Write};

/// Standard output, made text where only text may be written.
pub(crate) struct Output {
    stdout: io::Stdout,
    /// Bytes of an unfinished UTF-8 sequence, when output must be text.
    text: Option<Vec<u8>>,
}

/// Standard output for replies: text on a Windows console, else raw.
pub(crate) fn stdout() -> Output {
    let stdout = io::stdout();
    let text = (cfg!(windows) && stdout.is_terminal()).then(Vec::new);
    Output { stdout, text }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.text {
            None => self.stdout.lock().write(buf),
            Some(pending) => {
                let text = as_text(pending, buf);
                self.stdout.lock().write_all(text.as_bytes())?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdout.lock().flush()
    }
}

/// `pending` and then `buf` as text: valid UTF-8 as it is, U+FFFD for each
/// invalid sequence; an unfinished sequence at the end is left in `pending`
/// for the next call.
fn as_text(pending: &mut Vec<u8>, buf: &[u8]) -> String {
    pending.extend_from_slice(buf);
    let mut text = String::with_capacity(pending.len());
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                rest = &[];
                break;
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                text.push_str(&String::from_utf8_lossy(valid));
                match err.error_len() {
                    Some(bad) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = after.get(bad..).unwrap_or_default();
                    }
                    None => {
                        rest = after;
                        break;
                    }
                }
            }
        }
    }
    let unfinished = rest.to_vec();
    *pending = unfinished;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_bad_bytes_become_replacement_characters() {
        let mut pending = Vec::new();
        assert_eq!(
            as_text(&mut pending, "STRASSE Ÿ\n".as_bytes()),
            "STRASSE Ÿ\n"
        );
        assert_eq!(
            as_text(&mut pending, b"A\xffB\xfe\xfe"),
            "A\u{fffd}B\u{fffd}\u{fffd}"
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn a_character_split_between_writes_is_held_for_its_end() {
        let mut pending = Vec::new();
        let ss = "Ÿ".as_bytes();
        assert_eq!(as_text(&mut pending, &[b'X', ss[0]]), "X");
        assert_eq!(pending, [ss[0]]);
        assert_eq!(as_text(&mut pending, &[ss[1], b'!']), "Ÿ!");
        assert!(pending.is_empty());
    }
}
