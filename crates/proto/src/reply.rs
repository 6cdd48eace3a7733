//! How a client tells the reply to its current request from a late one.
//!
//! The protocol carries no request identifier: a reply is just bytes. A
//! client that retries, or moves on after a timeout, can therefore receive the
//! reply to an earlier request while it waits for the current one. Because
//! the client knows the transform, it knows what each reply should be, and it
//! uses that to recognise late replies instead of printing them as the answer
//! to a later line.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::transform::uppercase;

/// What to make of a datagram received while waiting for a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly the uppercase of the current request.
    Answer,
    /// The expected reply of an earlier request, not of this one: skip it.
    Late,
    /// Neither: the server's transform differs from ours (another Unicode
    /// version, say). It is still the server's answer, so a client takes it,
    /// but says so.
    Unexpected,
}

/// The expected replies of the current request and of the last few before it.
///
/// Earlier replies are kept as 64-bit hashes in a ring of fixed size, so the
/// memory a client spends on this does not grow with the number of lines.
#[derive(Debug)]
pub struct ReplyMatcher {
    expected: Option<Vec<u8>>,
    earlier: VecDeque<u64>,
    remembered: usize,
}

/// How many earlier requests a matcher remembers by default.
pub const REMEMBERED_REQUESTS: usize = 64;

impl Default for ReplyMatcher {
    fn default() -> Self {
        Self::new(REMEMBERED_REQUESTS)
    }
}

impl ReplyMatcher {
    /// A matcher that remembers up to `remembered` earlier requests.
    pub fn new(remembered: usize) -> Self {
        Self {
            expected: None,
            earlier: VecDeque::with_capacity(remembered),
            remembered,
        }
    }

    /// Starts waiting for the reply to `request`; the previous request, if
    /// any, becomes an earlier one.
    pub fn start(&mut self, request: &[u8]) {
        let previous = self.expected.replace(uppercase(request));
        if let Some(previous) = previous
            && self.remembered > 0
        {
            if self.earlier.len() == self.remembered {
                self.earlier.pop_front();
            }
            self.earlier.push_back(hash(&previous));
        }
    }

    /// The reply this matcher waits for (empty before the first request).
    pub fn expected(&self) -> &[u8] {
        self.expected.as_deref().unwrap_or_default()
    }

    /// Classifies a datagram received while waiting.
    pub fn classify(&self, reply: &[u8]) -> Verdict {
        if reply == self.expected() {
            Verdict::Answer
        } else if self.earlier.contains(&hash(reply)) {
            Verdict::Late
        } else {
            Verdict::Unexpected
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_reply_is_the_answer() {
        let mut m = ReplyMatcher::default();
        m.start("straße".as_bytes());
        assert_eq!(m.expected(), b"STRASSE");
        assert_eq!(m.classify(b"STRASSE"), Verdict::Answer);
    }

    #[test]
    fn a_late_reply_to_an_earlier_line_is_recognised() {
        let mut m = ReplyMatcher::default();
        m.start(b"first");
        m.start(b"second");
        assert_eq!(m.classify(b"FIRST"), Verdict::Late);
        assert_eq!(m.classify(b"SECOND"), Verdict::Answer);
        m.start(b"");
        assert_eq!(m.classify(b"FIRST"), Verdict::Late);
        assert_eq!(m.classify(b"SECOND"), Verdict::Late);
        assert_eq!(m.classify(b""), Verdict::Answer);
        m.start(b"x");
        assert_eq!(
            m.classify(b""),
            Verdict::Late,
            "an empty line's reply can be late too"
        );
    }

    #[test]
    fn a_repeated_line_takes_its_own_reply_as_the_answer() {
        let mut m = ReplyMatcher::default();
        m.start(b"same");
        m.start(b"same");
        assert_eq!(m.classify(b"SAME"), Verdict::Answer);
    }

    #[test]
    fn anything_else_is_unexpected() {
        let mut m = ReplyMatcher::default();
        assert_eq!(m.classify(b"X"), Verdict::Unexpected);
        m.start(b"abc");
        assert_eq!(m.classify(b"abc"), Verdict::Unexpected);
        assert_eq!(m.classify(b"\xff"), Verdict::Unexpected);
    }

    #[test]
    fn memory_is_bounded() {
        let mut m = ReplyMatcher::new(3);
        for i in 0..1000 {
            m.start(format!("line {i}").as_bytes());
        }
        assert_eq!(m.earlier.len(), 3);
        assert_eq!(m.classify(b"LINE 998"), Verdict::Late);
        assert_eq!(m.classify(b"LINE 996"), Verdict::Late);
        assert_eq!(m.classify(b"LINE 995"), Verdict::Unexpected, "forgotten");
    }
}
