//! Which requests of one socket are waiting for a reply, and since when.
//!
//! A ring indexed by sequence number holds each request's send time, or says
//! it was answered or declared lost, and the time its round trip is counted
//! from: the send itself, or, under `--rate`, the moment the schedule meant
//! it to go (see `engine::Schedule::origin`). Loss is judged on the send
//! time, so a request the window held back still gets its whole
//! `--loss-timeout` on the wire. Requests are sent in sequence order and
//! so time out in that order: expiring is a walk from the oldest one.

/// Slot value of a request that was answered (or never sent).
const ANSWERED: u64 = 0;
/// Slot value of a request declared lost: a reply to it is late.
const EXPIRED: u64 = u64::MAX;

/// What a reply's sequence number says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The first reply to a request still waited for, whose round trip is
    /// counted from this time.
    OnTime(u64),
    /// A reply to a request already declared lost.
    Late,
    /// A second reply to a request already answered.
    Duplicate,
    /// No request with this number was sent recently enough to remember.
    Unknown,
}

#[derive(Debug)]
pub(crate) struct Inflight {
    /// Send time of each request (`ANSWERED` and `EXPIRED` aside): times are
    /// nanoseconds since the run began plus one, so never `ANSWERED`.
    sent_at: Vec<u64>,
    /// Where each request's round trip is counted from (same slots).
    origin: Vec<u64>,
    /// Requests sent so far; the next one's number is `next as u32`.
    next: u64,
    /// Every request before this one is answered or expired.
    oldest: u64,
    outstanding: usize,
}

impl Inflight {
    /// Tracks up to `capacity` requests between the oldest waited for and
    /// the newest (rounded up to a power of two).
    pub(crate) fn new(capacity: usize) -> Inflight {
        let slots = capacity.max(1).next_power_of_two();
        Inflight {
            sent_at: vec![ANSWERED; slots],
            origin: vec![0; slots],
            next: 0,
            oldest: 0,
            outstanding: 0,
        }
    }

    fn slot(&self, seq: u64) -> usize {
        (seq as usize) & (self.sent_at.len() - 1)
    }

    /// The sequence number of the next request.
    pub(crate) fn next_seq(&self) -> u32 {
        self.next as u32
    }

    /// How many requests may be sent before the ring would overwrite one
    /// still waited for.
    pub(crate) fn room(&self) -> usize {
        self.sent_at.len() - (self.next - self.oldest) as usize
    }

    /// Requests waiting for a reply.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Records that the next `count` requests were sent at `now`, the
    /// `j`th of them timed from `origin(j)`; `count` must not exceed
    /// [`Inflight::room`].
    pub(crate) fn sent(&mut self, count: usize, now: u64, origin: impl Fn(usize) -> u64) {
        debug_assert!(count <= self.room());
        for j in 0..count {
            let slot = self.slot(self.next + j as u64);
            self.sent_at[slot] = now.clamp(1, EXPIRED - 1);
            self.origin[slot] = origin(j);
        }
        self.next += count as u64;
        self.outstanding += count;
    }

    /// Forgets the `index`th of the last `count` requests recorded by
    /// [`Inflight::sent`]: it never left (the kernel refused to send it).
    pub(crate) fn unsend(&mut self, count: usize, index: usize) {
        let seq = self.next - count as u64 + index as u64;
        let slot = self.slot(seq);
        if self.sent_at[slot] != ANSWERED && self.sent_at[slot] != EXPIRED {
            self.sent_at[slot] = ANSWERED;
            self.outstanding -= 1;
        }
    }

    /// Classifies a reply carrying `seq`, and takes an on-time one off the
    /// outstanding list.
    pub(crate) fn answer(&mut self, seq: u32) -> Answer {
        let age = u64::from((self.next as u32).wrapping_sub(seq));
        if age == 0 || age > self.next || age > self.sent_at.len() as u64 {
            return Answer::Unknown;
        }
        let slot = self.slot(self.next - age);
        match self.sent_at[slot] {
            ANSWERED => Answer::Duplicate,
            EXPIRED => Answer::Late,
            _ => {
                self.sent_at[slot] = ANSWERED;
                self.outstanding -= 1;
                Answer::OnTime(self.origin[slot])
            }
        }
    }

    /// The oldest request still waited for, if any; moves past the answered
    /// ones before it, which makes room as [`Inflight::expire`] does.
    pub(crate) fn oldest_waiting(&mut self) -> Option<u32> {
        while self.oldest < self.next
            && matches!(self.sent_at[self.slot(self.oldest)], ANSWERED | EXPIRED)
        {
            self.oldest += 1;
        }
        (self.outstanding > 0).then_some(self.oldest as u32)
    }

    /// Declares lost every request sent at or before `now - timeout`; returns
    /// how many, and when the oldest one still waited for will time out.
    pub(crate) fn expire(&mut self, now: u64, timeout: u64) -> (usize, Option<u64>) {
        let mut expired = 0;
        while self.oldest < self.next {
            let slot = self.slot(self.oldest);
            let at = self.sent_at[slot];
            if at != ANSWERED && at != EXPIRED {
                let deadline = at.saturating_add(timeout);
                if deadline > now {
                    return (expired, Some(deadline));
                }
                self.sent_at[slot] = EXPIRED;
                self.outstanding -= 1;
                expired += 1;
            }
            self.oldest += 1;
        }
        (expired, None)
    }

    /// Declares lost every request still waited for; returns how many.
    pub(crate) fn expire_all(&mut self) -> usize {
        self.expire(u64::MAX, 0).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_on_time_late_duplicate_or_unknown() {
        let mut inflight = Inflight::new(8);
        assert_eq!(inflight.answer(0), Answer::Unknown, "nothing sent yet");
        assert_eq!(inflight.answer(u32::MAX), Answer::Unknown);
        inflight.sent(3, 100, |_| 100); // 0, 1, 2
        assert_eq!(inflight.outstanding(), 3);
        assert_eq!(inflight.answer(1), Answer::OnTime(100));
        assert_eq!(inflight.answer(1), Answer::Duplicate);
        assert_eq!(inflight.answer(3), Answer::Unknown, "not sent yet");
        assert_eq!(inflight.expire(150, 100), (0, Some(200)));
        inflight.sent(1, 180, |_| 180); // 3
        assert_eq!(
            inflight.expire(200, 100),
            (2, Some(280)),
            "0 and 2 time out"
        );
        assert_eq!(inflight.answer(0), Answer::Late);
        assert_eq!(inflight.answer(3), Answer::OnTime(180));
        assert_eq!(inflight.outstanding(), 0);
        assert_eq!(inflight.expire(1000, 100), (0, None));
    }

    #[test]
    fn round_trips_count_from_the_origin_and_loss_from_the_send() {
        let mut inflight = Inflight::new(8);
        // Sent at 1000, meant for 100, 200 and 300 (held back by the window).
        inflight.sent(3, 1_000, |j| 100 * (j as u64 + 1));
        assert_eq!(inflight.answer(1), Answer::OnTime(200));
        assert_eq!(
            inflight.expire(1_050, 100),
            (0, Some(1_100)),
            "the loss timeout runs from the send, not from the origin"
        );
        assert_eq!(inflight.expire(1_100, 100), (2, None));
    }

    #[test]
    fn the_ring_never_overwrites_a_request_still_waited_for() {
        let mut inflight = Inflight::new(4);
        inflight.sent(4, 10, |_| 10);
        assert_eq!(inflight.room(), 0);
        for seq in 1..4 {
            assert_eq!(inflight.answer(seq), Answer::OnTime(10));
        }
        assert_eq!(inflight.room(), 0, "request 0 still holds the oldest slot");
        assert_eq!(inflight.expire(20, 5), (1, None));
        assert_eq!(inflight.room(), 4);
        inflight.sent(4, 30, |_| 30); // 4..8 reuse the slots of 0..4
        assert_eq!(inflight.answer(0), Answer::Unknown, "too old to remember");
        assert_eq!(inflight.answer(5), Answer::OnTime(30));
        assert_eq!(inflight.expire_all(), 3);
    }

    #[test]
    fn the_oldest_waiting_request_moves_on_and_frees_room() {
        let mut inflight = Inflight::new(4);
        assert_eq!(inflight.oldest_waiting(), None);
        inflight.sent(4, 10, |_| 10);
        assert_eq!(inflight.oldest_waiting(), Some(0));
        assert_eq!(inflight.answer(0), Answer::OnTime(10));
        assert_eq!(inflight.answer(2), Answer::OnTime(10));
        assert_eq!(inflight.room(), 0, "not moved on yet");
        assert_eq!(inflight.oldest_waiting(), Some(1));
        assert_eq!(inflight.room(), 1);
        assert_eq!(inflight.answer(1), Answer::OnTime(10));
        assert_eq!(inflight.oldest_waiting(), Some(3), "2 was answered already");
        assert_eq!(inflight.answer(3), Answer::OnTime(10));
        assert_eq!(inflight.oldest_waiting(), None);
        assert_eq!(inflight.room(), 4);
    }

    #[test]
    fn refused_sends_are_forgotten() {
        let mut inflight = Inflight::new(8);
        inflight.sent(4, 10, |_| 10);
        inflight.unsend(4, 2);
        assert_eq!(inflight.outstanding(), 3);
        assert_eq!(inflight.expire_all(), 3);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut inflight = Inflight::new(4);
        inflight.next = u64::from(u32::MAX) - 1;
        inflight.oldest = inflight.next;
        inflight.sent(4, 10, |_| 10); // u32::MAX - 1, u32::MAX, 0, 1
        assert_eq!(inflight.answer(u32::MAX), Answer::OnTime(10));
        assert_eq!(inflight.answer(0), Answer::OnTime(10));
        assert_eq!(inflight.answer(2), Answer::Unknown);
        assert_eq!(inflight.next_seq(), 2);
    }
}
