//! What a worker thread counts, and the summary line they add up to.

use std::fmt;
use std::ops::AddAssign;

/// One thread's counts: plain integers, because each thread owns its own and
/// the main thread adds them up only after the threads have stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received.
    pub received: u64,
    /// Replies sent.
    pub replied: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Datagrams that were not valid UTF-8, whether answered or not.
    pub invalid_utf8: u64,
    /// Replies not sent because they would not fit in one datagram.
    pub dropped_too_large: u64,
    /// Replies the system refused to send.
    pub send_errors: u64,
    /// Receive errors the server carried on after (ICMP errors, no buffers).
    pub recv_errors: u64,
    /// Datagrams not answered because their source was over `--rate-limit`.
    pub dropped_rate_limited: u64,
    /// Replies not sent because they were over `--max-reply-ratio`.
    pub dropped_ratio: u64,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        self.received += other.received;
        self.replied += other.replied;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.invalid_utf8 += other.invalid_utf8;
        self.dropped_too_large += other.dropped_too_large;
        self.send_errors += other.send_errors;
        self.recv_errors += other.recv_errors;
        self.dropped_rate_limited += other.dropped_rate_limited;
        self.dropped_ratio += other.dropped_ratio;
    }
}

impl std::iter::Sum for Counters {
    fn sum<I: Iterator<Item = Counters>>(iter: I) -> Counters {
        iter.fold(Counters::default(), |mut total, c| {
            total += c;
            total
        })
    }
}

/// The `key=N ...` body of the summary line, whose form tests and scripts
/// parse: `received=N replied=N bytes_in=N bytes_out=N invalid_utf8=N
/// dropped_too_large=N send_errors=N dropped_rate_limited=N dropped_ratio=N`:
/// every datagram received is replied or counted in one `dropped_*` or in
/// `send_errors`. Receive errors are not part of it;
/// the server reports them on a line of their own when there were any.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} replied={} bytes_in={} bytes_out={} invalid_utf8={} dropped_too_large={} send_errors={} dropped_rate_limited={} dropped_ratio={}",
            self.received,
            self.replied,
            self.bytes_in,
            self.bytes_out,
            self.invalid_utf8,
            self.dropped_too_large,
            self.send_errors,
            self.dropped_rate_limited,
            self.dropped_ratio
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_add_up() {
        let a = Counters {
            received: 3,
            replied: 2,
            bytes_in: 30,
            bytes_out: 20,
            invalid_utf8: 1,
            dropped_too_large: 1,
            send_errors: 0,
            recv_errors: 4,
            dropped_rate_limited: 2,
            dropped_ratio: 1,
        };
        let b = Counters {
            received: 1,
            replied: 1,
            bytes_in: 5,
            bytes_out: 7,
            send_errors: 1,
            ..Counters::default()
        };
        let total: Counters = [a, b].into_iter().sum();
        assert_eq!(
            total,
            Counters {
                received: 4,
                replied: 3,
                bytes_in: 35,
                bytes_out: 27,
                invalid_utf8: 1,
                dropped_too_large: 1,
                send_errors: 1,
                recv_errors: 4,
                dropped_rate_limited: 2,
                dropped_ratio: 1,
            }
        );
    }

    #[test]
    fn summary_has_the_documented_form() {
        let c = Counters {
            received: 1,
            replied: 2,
            bytes_in: 3,
            bytes_out: 4,
            invalid_utf8: 5,
            dropped_too_large: 6,
            send_errors: 7,
            recv_errors: 8,
            dropped_rate_limited: 9,
            dropped_ratio: 10,
        };
        assert_eq!(
            c.to_string(),
            "received=1 replied=2 bytes_in=3 bytes_out=4 invalid_utf8=5 dropped_too_large=6 send_errors=7 dropped_rate_limited=9 dropped_ratio=10"
        );
    }
}
