//! Which datagram answers a line: the junk rule, without any I/O.
//!
//! The protocol carries no request identifier, so only a datagram's content
//! tells a reply from junk. While a try waits, each datagram is offered here:
//!
//! - the exact uppercase of the line, as this client computes it, is the
//!   answer, at once;
//! - the exact uppercase of an earlier line is a late reply: skipped;
//! - anything else is held (the first such datagram; the rest are counted),
//!   and printed, with a warning, as the reply of a server whose uppercase
//!   differs only when the try's whole timeout has run out without the
//!   exact answer.
//!
//! So junk that arrives while a line waits is never printed in place of an
//! answer that comes within the timeout, however much of it there is, and a
//! server whose transform differs (another Unicode table, an ASCII-only
//! `toupper`) still gets its reply printed, one timeout late. A server that
//! sends nothing but junk for a line cannot be told from one that answers
//! differently: its first datagram is printed, with the warning.
//!
//! Memory stays bounded whatever arrives: one held datagram in a buffer of
//! one datagram's size, and a count.

use upcase_proto::RECV_BUFFER_LEN;
use upcase_proto::reply::{ReplyMatcher, Verdict};

/// What became of a datagram offered while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The exact reply: take it now.
    Answer,
    /// A late reply to an earlier line: never the answer.
    Late,
    /// Neither: held if it is the first, counted in any case; the answer
    /// only if the wait ends without the exact reply.
    Held,
}

/// The datagrams of one try's wait that were neither its exact reply nor a
/// late one.
#[derive(Debug)]
pub(crate) struct Pick {
    held: Vec<u8>,
    /// How many, the held one included.
    others: u64,
}

impl Pick {
    pub(crate) fn new() -> Pick {
        Pick {
            held: Vec::with_capacity(RECV_BUFFER_LEN),
            others: 0,
        }
    }

    /// Forgets what was held: a new wait starts.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.others = 0;
    }

    /// Judges `datagram`, received while waiting for `matcher`'s current
    /// reply, and holds it if it is the first that is neither exact nor late.
    pub(crate) fn offer(&mut self, matcher: &ReplyMatcher, datagram: &[u8]) -> Step {
        match matcher.classify(datagram) {
            Verdict::Answer => Step::Answer,
            Verdict::Late => Step::Late,
            Verdict::Unexpected => {
                if self.others == 0 {
                    self.held.extend_from_slice(datagram);
                }
                self.others += 1;
                Step::Held
            }
        }
    }

    /// The datagram to print when the wait ended without the exact reply.
    pub(crate) fn held(&self) -> Option<&[u8]> {
        (self.others > 0).then_some(self.held.as_slice())
    }

    /// How many datagrams of this wait were neither the exact reply nor a
    /// late one.
    pub(crate) fn others(&self) -> u64 {
        self.others
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting_for(line: &[u8]) -> ReplyMatcher {
        let mut matcher = ReplyMatcher::default();
        matcher.start(b"earlier");
        matcher.start(line);
        matcher
    }

    #[test]
    fn the_exact_reply_is_the_answer_whatever_came_before() {
        let matcher = waiting_for(b"hello");
        let mut pick = Pick::new();
        assert_eq!(pick.offer(&matcher, b"junk"), Step::Held);
        assert_eq!(pick.offer(&matcher, b"EARLIER"), Step::Late);
        assert_eq!(pick.offer(&matcher, b"HELLO"), Step::Answer);
        assert_eq!(pick.others(), 1, "the late reply is not counted as junk");
    }

    #[test]
    fn the_first_other_datagram_is_held_until_cleared() {
        let matcher = waiting_for("straße".as_bytes());
        let mut pick = Pick::new();
        assert_eq!(pick.held(), None);
        // An older Unicode table keeps the sharp s.
        pick.offer(&matcher, "STRAßE".as_bytes());
        pick.offer(&matcher, b"\xff\xfe");
        pick.offer(&matcher, b"");
        assert_eq!(pick.held(), Some("STRAßE".as_bytes()));
        assert_eq!(pick.others(), 3);
        pick.clear();
        assert_eq!((pick.held(), pick.others()), (None, 0));
        pick.offer(&matcher, b"");
        assert_eq!(pick.held(), Some(&b""[..]), "an empty datagram is one too");
    }

    #[test]
    fn memory_stays_bounded_however_much_junk_arrives() {
        let matcher = waiting_for(b"x");
        let mut pick = Pick::new();
        let big = vec![0xaa; upcase_proto::MAX_PAYLOAD];
        for i in 0..10_000u32 {
            let junk = if i % 10 == 0 { &big[..] } else { &b"y"[..] };
            assert_eq!(pick.offer(&matcher, junk), Step::Held);
        }
        assert_eq!(pick.others(), 10_000);
        assert_eq!(pick.held(), Some(&big[..]));
        assert!(pick.held.capacity() <= RECV_BUFFER_LEN, "held grew");
    }
}
