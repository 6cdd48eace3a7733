//! The transform on a byte stream (TCP), which arrives in pieces of any size.
//!
//! A character can be split across two reads: `é` is `C3 A9`, and a read may
//! end after `C3`. Uppercasing each read on its own would pass `C3` and `A9`
//! through as invalid bytes and lose the `É`. [`StreamUppercaser`] holds back
//! the start of an unfinished character (at most 3 bytes) until the next piece
//! completes or breaks it, so the output for any split of a stream equals
//! [`uppercase`](crate::uppercase) of the whole stream.

use crate::transform::uppercase_into;

/// Uppercases a stream piece by piece, holding back at most 3 bytes.
#[derive(Debug, Default, Clone)]
pub struct StreamUppercaser {
    pending: [u8; 4],
    pending_len: usize,
}

/// Whether `bytes` is the start of a UTF-8 character that more bytes could
/// complete (not yet a character, not yet invalid).
fn is_unfinished_char(bytes: &[u8]) -> bool {
    matches!(std::str::from_utf8(bytes), Err(e) if e.valid_up_to() == 0 && e.error_len().is_none())
}

impl StreamUppercaser {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bytes are held back, waiting for the rest of a character.
    pub fn pending(&self) -> usize {
        self.pending_len
    }

    /// Uppercases the next piece of the stream, appending what can be decided
    /// now to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        // First finish (or give up on) the character the last piece ended in.
        while self.pending_len > 0 {
            let held = &self.pending[..self.pending_len];
            if std::str::from_utf8(held).is_ok() {
                uppercase_into(held, out);
                self.pending_len = 0;
                break;
            }
            let Some((&next, rest)) = input.split_first() else {
                return;
            };
            let mut candidate = self.pending;
            candidate[self.pending_len] = next;
            if std::str::from_utf8(&candidate[..=self.pending_len]).is_ok()
                || is_unfinished_char(&candidate[..=self.pending_len])
            {
                self.pending = candidate;
                self.pending_len += 1;
                input = rest;
            } else {
                // `next` cannot continue it: the held bytes are invalid and
                // pass through unchanged; `next` starts afresh below.
                out.extend_from_slice(held);
                self.pending_len = 0;
            }
        }
        let hold = (1..=3.min(input.len()))
            .find(|&n| is_unfinished_char(&input[input.len() - n..]))
            .unwrap_or(0);
        let (now, later) = input.split_at(input.len() - hold);
        uppercase_into(now, out);
        self.pending[..hold].copy_from_slice(later);
        self.pending_len = hold;
    }

    /// The stream has ended: bytes still held back never became a character
    /// and pass through unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pending[..self.pending_len]);
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uppercase;

    fn in_pieces(pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = StreamUppercaser::new();
        let mut out = Vec::new();
        for piece in pieces {
            s.feed(piece, &mut out);
            assert!(s.pending() <= 3);
        }
        s.finish(&mut out);
        out
    }

    const SAMPLES: &[&[u8]] = &[
        "straße ﬁ 안녕 🙂 ΐ é".as_bytes(),
        b"ab\xff\xfecd\xc3",
        b"\xe2\x82\xac\xe2\x82x\xf0\x9f\x99",
        b"\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80z",
        b"\xe0\xa0",
        b"",
    ];

    #[test]
    fn every_single_split_point_gives_the_whole_stream_reply() {
        for sample in SAMPLES {
            for at in 0..=sample.len() {
                let (a, b) = sample.split_at(at);
                assert_eq!(
                    in_pieces(&[a, b]),
                    uppercase(sample),
                    "split at {at} of {sample:?}"
                );
            }
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_whole_stream_reply() {
        for sample in SAMPLES {
            for i in 0..=sample.len() {
                for j in i..=sample.len() {
                    let pieces = [&sample[..i], &sample[i..j], &sample[j..]];
                    assert_eq!(
                        in_pieces(&pieces),
                        uppercase(sample),
                        "splits {i},{j} of {sample:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_whole_stream_reply() {
        for sample in SAMPLES {
            let pieces: Vec<&[u8]> = sample.chunks(1).collect();
            assert_eq!(in_pieces(&pieces), uppercase(sample));
        }
    }

    #[test]
    fn an_unfinished_character_is_held_until_completed() {
        let mut s = StreamUppercaser::new();
        let mut out = Vec::new();
        s.feed(b"a\xc3", &mut out);
        assert_eq!(out, b"A");
        assert_eq!(s.pending(), 1);
        s.feed(b"\xa9", &mut out);
        assert_eq!(out, "AÉ".as_bytes());
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_broken_character_passes_through_at_once() {
        let mut s = StreamUppercaser::new();
        let mut out = Vec::new();
        s.feed(b"\xe2\x82", &mut out);
        assert!(out.is_empty());
        s.feed(b"q", &mut out);
        assert_eq!(out, b"\xe2\x82Q");
        s.feed(b"\xc3", &mut out);
        s.finish(&mut out);
        assert_eq!(
            out, b"\xe2\x82Q\xc3",
            "an unfinished character at the end is kept as it is"
        );
    }
}
