//! Lines of input as raw bytes, each bounded in length, so a line that could
//! never be one datagram is refused, and skipped, before it fills memory;
//! and [`Lines`], where a session takes its lines from: piped input as it
//! is, or a person through the line editor (`editor.rs`).

use std::io::{self, BufRead};

use anyhow::Context;

use crate::terminal::TerminalMode;

/// What the textbook's client prints before reading each line, when a person
/// is typing.
pub const PROMPT: &[u8] = PROMPT_TEXT.as_bytes();
pub(crate) const PROMPT_TEXT: &str = "Input lowercase sentence:";

/// Where a session's lines come from.
pub(crate) trait Lines {
    /// Reads the next line into `line` (cleared first): one that fits in
    /// `max_len` bytes, the end, or a line too long (skipped).
    fn next_line(&mut self, line: &mut Vec<u8>, max_len: usize) -> anyhow::Result<Line>;

    /// The terminal to give back as it was if the session must end while
    /// a line is being read; `None` when no terminal is held.
    fn terminal(&self) -> Option<TerminalMode> {
        None
    }
}

/// The lines of a reader (standard input, a pipe, a file) as raw bytes,
/// each ended by `\n` or `\r\n`.
pub(crate) struct Piped<R>(pub(crate) R);

impl<R: BufRead> Lines for Piped<R> {
    fn next_line(&mut self, line: &mut Vec<u8>, max_len: usize) -> anyhow::Result<Line> {
        read_line(&mut self.0, line, max_len).context("cannot read standard input")
    }
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, now in the caller's buffer without its `\n` or `\r\n`.
    Read,
    /// The end of the input: no more lines.
    End,
    /// The line is longer than the limit; the buffer holds only its start,
    /// and the rest of the line has been read past, so the next read starts
    /// on the next line.
    TooLong,
}

/// Reads the next line into `line` (cleared first), keeping at most
/// `max_len + 2` bytes whatever the input holds, so the line plus a `\r\n`
/// fits and anything longer is known to be too long.
///
/// A last line without a newline is still a line; an empty line is a line.
/// Bytes are kept as they are: lines need not be UTF-8.
pub fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, max_len: usize) -> io::Result<Line> {
    line.clear();
    let keep = max_len.saturating_add(2);
    let mut read_any = false;
    let mut newline = false;
    while !newline {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (content, used) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => {
                newline = true;
                (&available[..at], at + 1)
            }
            None => (available, available.len()),
        };
        let room = keep - line.len();
        line.extend_from_slice(&content[..content.len().min(room)]);
        input.consume(used);
        if line.len() == keep {
            if !newline {
                skip_rest_of_line(input)?;
            }
            return Ok(Line::TooLong);
        }
    }
    if !read_any {
        return Ok(Line::End);
    }
    if newline && line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(if line.len() > max_len {
        Line::TooLong
    } else {
        Line::Read
    })
}

/// Consumes the rest of a line found too long, through its `\n`, so that
/// the next read starts on the next line. Streams: memory stays bounded
/// however long the line is.
fn skip_rest_of_line(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(at) => {
                input.consume(at + 1);
                return Ok(());
            }
            None => {
                let all = available.len();
                input.consume(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    fn lines(input: &[u8], max_len: usize) -> Vec<Result<Vec<u8>, Line>> {
        let mut reader = input;
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, max_len).expect("in memory") {
                Line::Read => out.push(Ok(line.clone())),
                Line::End => return out,
                Line::TooLong => out.push(Err(Line::TooLong)),
            }
        }
    }

    fn ok(lines: &[&[u8]]) -> Vec<Result<Vec<u8>, Line>> {
        lines.iter().map(|l| Ok(l.to_vec())).collect()
    }

    #[test]
    fn newlines_and_crlf_end_lines() {
        assert_eq!(lines(b"a\nb\r\nc\n", 10), ok(&[b"a", b"b", b"c"]));
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        assert_eq!(lines(b"a\nlast", 10), ok(&[b"a", b"last"]));
        assert_eq!(lines(b"", 10), ok(&[]));
    }

    #[test]
    fn empty_lines_are_lines() {
        assert_eq!(lines(b"\n\r\n\nx\n", 10), ok(&[b"", b"", b"", b"x"]));
    }

    #[test]
    fn only_a_cr_before_newline_is_stripped() {
        assert_eq!(lines(b"a\rb\r\r\n", 10), ok(&[b"a\rb\r"]));
        assert_eq!(lines(b"end\r", 10), ok(&[b"end\r"]));
    }

    #[test]
    fn bytes_pass_through() {
        assert_eq!(lines(b"\xff\xfe\x00\n", 10), ok(&[b"\xff\xfe\x00"]));
    }

    #[test]
    fn the_limit_is_exact() {
        assert_eq!(lines(b"abcd\r\nabcd", 4), ok(&[b"abcd", b"abcd"]));
        assert_eq!(lines(b"abcde\n", 4), vec![Err(Line::TooLong)]);
        assert_eq!(lines(b"abcde", 4), vec![Err(Line::TooLong)]);
        assert_eq!(lines(b"abcd\r\r\n", 4), vec![Err(Line::TooLong)]);
        assert_eq!(
            lines(b"ok\nabcdefghij\n", 4),
            vec![Ok(b"ok".to_vec()), Err(Line::TooLong)]
        );
    }

    #[test]
    fn reading_goes_on_after_a_line_too_long() {
        assert_eq!(
            lines(b"abcdefghij\nok\nabcde\r\n\nlast", 4),
            vec![
                Err(Line::TooLong),
                Ok(b"ok".to_vec()),
                Err(Line::TooLong),
                Ok(b"".to_vec()),
                Ok(b"last".to_vec())
            ]
        );
        // Skipped in pieces too, with a one-byte buffer.
        let mut reader = BufReader::with_capacity(1, &b"abcdefgh\nok\n"[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut line, 2).expect("ok"),
            Line::TooLong
        );
        assert_eq!(
            read_line(&mut reader, &mut line, 2).expect("ok"),
            Line::Read
        );
        assert_eq!(line, b"ok");
    }

    #[test]
    fn lines_split_across_reads_join_up() {
        // A one-byte buffer makes every line arrive in pieces.
        let mut reader = BufReader::with_capacity(1, &b"ab\r\ncd"[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut line, 2).expect("ok"),
            Line::Read
        );
        assert_eq!(line, b"ab");
        assert_eq!(
            read_line(&mut reader, &mut line, 2).expect("ok"),
            Line::Read
        );
        assert_eq!(line, b"cd");
        assert_eq!(read_line(&mut reader, &mut line, 2).expect("ok"), Line::End);
    }

    #[test]
    fn a_huge_line_is_skipped_in_bounded_memory() {
        // 256 MiB without a newline, then one more line.
        let huge = std::io::repeat(b'a').take(256 << 20);
        let mut reader = BufReader::new(huge.chain(&b"\nnext\n"[..]));
        let mut line = Vec::new();
        let max = upcase_proto::MAX_PAYLOAD;
        assert_eq!(
            read_line(&mut reader, &mut line, max).expect("ok"),
            Line::TooLong
        );
        assert!(line.len() <= max + 2, "kept {} bytes", line.len());
        assert!(
            line.capacity() <= 2 * (max + 2),
            "grew to {}",
            line.capacity()
        );
        assert_eq!(
            read_line(&mut reader, &mut line, max).expect("ok"),
            Line::Read
        );
        assert_eq!(line, b"next");
    }
}
