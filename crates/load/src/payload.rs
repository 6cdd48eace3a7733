//! What a request holds and how a reply is checked.
//!
//! A request is `size` bytes of lowercase text. Its first [`SEQ_LEN`] bytes
//! are its sequence number, one letter per hex digit (`a` = 0 ... `p` = 15,
//! most significant first), so the uppercased reply still says which
//! request it answers (`A` ... `P`); the rest is a fixed text. Requests are
//! preformatted once: sending one only rewrites its sequence letters.

/// Bytes of the sequence number at the start of each request.
pub const SEQ_LEN: usize = 8;

/// Text after the sequence number: lowercase words and punctuation, so the
/// transform has letters to change and bytes to leave alone.
const FILLER: &[u8] = b" the quick brown fox jumps over the lazy dog,";

/// The request text for one run and the reply every request should get.
#[derive(Debug, Clone)]
pub struct Payload {
    request: Vec<u8>,
    expected: Vec<u8>,
}

/// What a reply turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Exactly the uppercase of request `seq`.
    Match(u32),
    /// It names request `seq` but its other bytes, or its length, differ.
    Mismatch(u32),
    /// It does not even carry a sequence number.
    Garbled,
}

impl Payload {
    /// Requests of `size` bytes; `size` must be at least [`SEQ_LEN`].
    pub fn new(size: usize) -> Payload {
        Payload::from_request(request_text(size))
    }

    /// Requests of `size` bytes that end in a newline, for a byte stream:
    /// the uppercase keeps the newline, so every reply is `size` bytes too.
    /// `size` must be more than [`SEQ_LEN`].
    pub fn line(size: usize) -> Payload {
        let mut request = request_text(size);
        if let Some(last) = request.get_mut(SEQ_LEN..).and_then(|rest| rest.last_mut()) {
            *last = b'\n';
        }
        Payload::from_request(request)
    }

    fn from_request(request: Vec<u8>) -> Payload {
        // The expected reply is the project's own transform of the request, so
        // a server is judged against the reference rules, not a second copy.
        let expected = upcase_proto::uppercase(&request);
        Payload { request, expected }
    }

    /// The request size.
    pub fn size(&self) -> usize {
        self.request.len()
    }

    /// Request number 0, to preformat send buffers with.
    pub fn template(&self) -> &[u8] {
        &self.request
    }

    /// Turns a preformatted request buffer into request `seq`.
    pub fn stamp(&self, request: &mut [u8], seq: u32) {
        write_seq(request, seq);
    }

    /// The whole reply request `seq` should get (for tests and messages).
    pub fn expected(&self, seq: u32) -> Vec<u8> {
        let mut request = self.request.clone();
        write_seq(&mut request, seq);
        upcase_proto::uppercase(&request)
    }

    /// Checks a reply; `cut` says the kernel truncated it.
    pub fn check(&self, reply: &[u8], cut: bool) -> Check {
        let Some(seq) = read_seq(reply) else {
            return Check::Garbled;
        };
        // The sequence letters decode only from uppercase A..P, which is exactly
        // the uppercase of the request's; the rest is compared byte for byte.
        if !cut
            && reply.len() == self.expected.len()
            && reply[SEQ_LEN..] == self.expected[SEQ_LEN..]
        {
            Check::Match(seq)
        } else {
            Check::Mismatch(seq)
        }
    }
}

fn request_text(size: usize) -> Vec<u8> {
    let mut request = vec![0; SEQ_LEN];
    write_seq(&mut request, 0);
    request.extend(FILLER.iter().cycle().take(size.saturating_sub(SEQ_LEN)));
    request
}

fn write_seq(request: &mut [u8], seq: u32) {
    for (i, b) in request[..SEQ_LEN].iter_mut().enumerate() {
        let digit = (seq >> (4 * (SEQ_LEN - 1 - i))) & 0xf;
        *b = b'a' + digit as u8;
    }
}

/// The sequence number an uppercased reply carries, if it carries one.
pub fn read_seq(reply: &[u8]) -> Option<u32> {
    let letters = reply.get(..SEQ_LEN)?;
    letters.iter().try_fold(0u32, |seq, &b| {
        let digit = b.wrapping_sub(b'A');
        (digit < 16).then_some(seq << 4 | u32::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_survive_the_transform() {
        let payload = Payload::new(32);
        let mut request = payload.template().to_vec();
        for seq in [0, 1, 15, 16, 0xdead_beef, u32::MAX] {
            payload.stamp(&mut request, seq);
            assert!(
                request.iter().all(|b| !b.is_ascii_uppercase()),
                "requests are lowercase"
            );
            let reply = upcase_proto::uppercase(&request);
            assert_eq!(reply, payload.expected(seq));
            assert_eq!(read_seq(&reply), Some(seq));
            assert_eq!(payload.check(&reply, false), Check::Match(seq));
        }
    }

    #[test]
    fn requests_have_the_asked_size_and_text() {
        for size in [SEQ_LEN, 9, 32, 1000, upcase_proto::MAX_PAYLOAD_V4] {
            let payload = Payload::new(size);
            assert_eq!(payload.size(), size);
            assert_eq!(payload.expected(7).len(), size);
        }
        let payload = Payload::new(24);
        assert_eq!(payload.template(), b"aaaaaaaa the quick brown");
        assert_eq!(payload.expected(0x1f), b"AAAAAABP THE QUICK BROWN");
    }

    #[test]
    fn lines_end_in_their_only_newline() {
        for size in [SEQ_LEN + 1, 32, 1000] {
            let payload = Payload::line(size);
            let request = payload.template();
            assert_eq!(request.len(), size);
            assert_eq!(request.iter().position(|&b| b == b'\n'), Some(size - 1));
            assert_eq!(payload.expected(3).len(), size, "the reply is as long");
            assert_eq!(payload.check(&payload.expected(3), false), Check::Match(3));
        }
        assert_eq!(Payload::line(12).template(), b"aaaaaaaa th\n");
        assert_eq!(Payload::line(9).expected(0x1f), b"AAAAAABP\n");
    }

    #[test]
    fn bad_replies_are_told_apart() {
        let payload = Payload::new(20);
        let good = payload.expected(42);
        assert_eq!(payload.check(&good, true), Check::Mismatch(42), "cut");
        assert_eq!(
            payload.check(&good[..19], false),
            Check::Mismatch(42),
            "short"
        );
        let mut longer = good.clone();
        longer.push(b'X');
        assert_eq!(payload.check(&longer, false), Check::Mismatch(42), "long");
        let mut flipped = good.clone();
        flipped[15] = flipped[15].to_ascii_lowercase();
        assert_eq!(payload.check(&flipped, false), Check::Mismatch(42));
        // Not uppercased at all: the sequence letters are lowercase.
        let mut echoed = good.clone();
        echoed.make_ascii_lowercase();
        assert_eq!(payload.check(&echoed, false), Check::Garbled);
        assert_eq!(payload.check(b"AAAA", false), Check::Garbled);
        assert_eq!(payload.check(b"AAAAAAAQ rest", false), Check::Garbled);
        assert_eq!(payload.check(b"", false), Check::Garbled);
    }
}
