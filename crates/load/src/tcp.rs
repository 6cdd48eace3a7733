//! `--tcp`: the load loop over TCP connections. Every request is a line;
//! each connection writes all the requests its share of the window has room
//! for in one write (pipelining), and cuts what it reads into replies of
//! the request's length, which the transform keeps. One thread, non-blocking
//! sockets and `ppoll`, as for UDP.
//!
//! A byte stream loses nothing and keeps order, so nothing times out during
//! the run and each reply answers the oldest request its connection still
//! waits for. What is unanswered `--loss-timeout` after sending stopped is
//! lost; a connection the server closes or resets ends the run with an error.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use upcase_udp::Poller;

use crate::args::Plan;
use crate::engine::{FLUSH_BYTES, Run, Schedule, TICK, wait_time};
use crate::inflight::Inflight;
use crate::payload::Payload;
use crate::progress::Progress;
use crate::tally::{Tally, classify_in_order};

/// Longest a connection may take to be set up: the run has not started yet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes one read may take.
const READ_LEN: usize = 64 * 1024;

/// The bytes read from one connection, cut into replies of one length.
struct Framer {
    buf: Vec<u8>,
    len: usize,
    size: usize,
}

impl Framer {
    fn new(size: usize) -> Framer {
        Framer {
            buf: vec![0; READ_LEN.max(size)],
            len: 0,
            size,
        }
    }

    /// Where the next read goes; never empty, since less than one reply is
    /// ever kept.
    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Takes `n` bytes just read into [`Framer::spare`], hands each whole
    /// reply to `each` and keeps the start of an unfinished one.
    fn filled(&mut self, n: usize, mut each: impl FnMut(&[u8])) {
        self.len += n;
        let whole = self.len - self.len % self.size;
        self.buf[..whole]
            .chunks_exact(self.size)
            .for_each(&mut each);
        self.buf.copy_within(whole..self.len, 0);
        self.len -= whole;
    }
}

/// One connection's requests and replies.
struct Conn {
    inflight: Inflight,
    /// Requests this connection keeps in flight.
    window: usize,
    /// Preformatted requests; `tx[written..queued]` is stamped but not yet
    /// taken by the kernel.
    tx: Vec<u8>,
    written: usize,
    queued: usize,
    /// The last write would have blocked: wait until the socket is writable.
    blocked: bool,
    rx: Framer,
}

fn would_block(err: &io::Error) -> bool {
    // A blocking socket's timeout is WouldBlock on Linux, TimedOut elsewhere.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Conn {
    fn new(payload: &Payload, window: usize, per_write: usize) -> Conn {
        Conn {
            inflight: Inflight::new(window * 2),
            window,
            tx: payload.template().repeat(per_write.min(window).max(1)),
            written: 0,
            queued: 0,
            blocked: false,
            rx: Framer::new(payload.size()),
        }
    }

    fn unwritten(&self) -> bool {
        self.written < self.queued
    }

    /// Writes what is left of the last requests and, once they are all
    /// written, stamps and writes up to `budget` new ones, as many as the
    /// window has room for, the first of them number `index` of the run's
    /// schedule; returns how many it stamped. A stamped request counts as
    /// sent at `now`: under `--rate`, a full socket buffer that holds its
    /// bytes back counts in its round trip.
    fn send(
        &mut self,
        stream: &TcpStream,
        payload: &Payload,
        budget: u64,
        index: u64,
        schedule: &Schedule,
        now: u64,
    ) -> io::Result<u64> {
        let size = payload.size();
        let mut stamped = 0;
        // Each turn stamps, writes something or stops: the window, the
        // budget and the socket buffer all run out.
        loop {
            if !self.unwritten() {
                let free = self
                    .window
                    .saturating_sub(self.inflight.outstanding())
                    .min(self.inflight.room())
                    .min(self.tx.len() / size);
                let k = usize::try_from(budget - stamped).map_or(free, |left| left.min(free));
                if k == 0 {
                    return Ok(stamped);
                }
                let first = self.inflight.next_seq();
                for (j, request) in self.tx.chunks_exact_mut(size).take(k).enumerate() {
                    payload.stamp(request, first.wrapping_add(j as u32));
                }
                let from = index + stamped;
                self.inflight
                    .sent(k, now, |j| schedule.origin(from + j as u64, now));
                (self.written, self.queued) = (0, k * size);
                stamped += k as u64;
            }
            if self.blocked {
                return Ok(stamped);
            }
            match (&*stream).write(&self.tx[self.written..self.queued]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => self.blocked = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what has arrived and counts every whole reply in it.
    fn receive(
        &mut self,
        stream: &TcpStream,
        server: SocketAddr,
        payload: &Payload,
        schedule: &Schedule,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let n = match (&*stream).read(self.rx.spare()) {
            Ok(0) => bail!(
                "{server} closed the TCP connection with {} requests unanswered",
                self.inflight.outstanding()
            ),
            Ok(n) => n,
            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot receive replies from {server}"));
            }
        };
        let now = schedule.now();
        let inflight = &mut self.inflight;
        self.rx.filled(n, |reply| {
            let outcome = classify_in_order(payload, inflight, reply, now);
            tally.record(outcome, now);
        });
        Ok(())
    }
}

/// A connection to `server` that sends each write at once (no Nagle
/// delay); non-blocking unless `blocking`, then waiting at most a tick.
fn connect(server: SocketAddr, blocking: bool) -> anyhow::Result<TcpStream> {
    let stream = crate::connect::connect_tcp(server, CONNECT_TIMEOUT)
        .with_context(|| format!("cannot connect to {server}"))?;
    stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    if blocking {
        stream
            .set_read_timeout(Some(TICK))
            .and_then(|()| stream.set_write_timeout(Some(TICK)))
            .context("cannot set the socket timeouts")?;
    } else {
        stream
            .set_nonblocking(true)
            .context("cannot make the connection non-blocking")?;
    }
    Ok(stream)
}

pub(crate) fn run(plan: &Plan, show_progress: bool) -> anyhow::Result<Run> {
    let payload = Payload::line(plan.size);
    // One connection with one request in flight waits in its read and write
    // themselves: two system calls a request, as the UDP ping makes.
    let blocking = plan.sockets == 1 && plan.window == 1 && plan.rate.is_none() && !plan.busy_poll;
    let polling = !blocking && !plan.busy_poll;
    let streams = (0..plan.sockets)
        .map(|_| connect(plan.server, blocking))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let per_write = (FLUSH_BYTES / payload.size()).max(1);
    let mut conns: Vec<Conn> = (0..streams.len())
        .map(|i| Conn::new(&payload, plan.window_of(i), per_write))
        .collect();
    let mut poller = Poller::new(&streams);
    let mut progress = Progress::new(show_progress, plan.warmup + plan.duration);
    let mut sent_total: u64 = 0;
    let mut drain_end = None;
    let schedule = Schedule::new(plan);
    let mut tally = Tally::new(schedule.span(plan.interval))?;

    loop {
        let now = schedule.now();
        let sending = schedule.sends(now, tally.totals.sent);
        if !sending {
            let end = *drain_end.get_or_insert(now.saturating_add(schedule.loss_timeout));
            if now >= end || conns.iter().all(|c| c.inflight.outstanding() == 0) {
                break;
            }
        }
        let (mut budget, next_send) = if sending {
            schedule.budget(now, sent_total, tally.totals.sent)
        } else {
            (0, None)
        };
        for (stream, conn) in streams.iter().zip(&mut conns) {
            let stamped = conn
                .send(stream, &payload, budget, sent_total, &schedule, now)
                .with_context(|| format!("cannot send requests to {}", plan.server))?;
            if schedule.paced() {
                for index in sent_total..sent_total + stamped {
                    tally.behind(schedule.lateness(index, now), now);
                }
            }
            sent_total += stamped;
            budget -= stamped;
            tally.sent(stamped, now);
        }
        if polling {
            for (i, conn) in conns.iter().enumerate() {
                poller.watch_writable(i, conn.blocked);
            }
            poller
                .wait(wait_time(schedule.now(), next_send))
                .context("cannot wait for replies")?;
        }
        for (i, (stream, conn)) in streams.iter().zip(&mut conns).enumerate() {
            let broken = polling && poller.is_broken(i);
            if !polling || broken || poller.is_writable(i) {
                conn.blocked = false;
            }
            let ready = if blocking {
                // Waiting for a reply to a request not all written would
                // only hold up its writing.
                conn.inflight.outstanding() > 0 && !conn.unwritten()
            } else {
                !polling || broken || poller.is_readable(i)
            };
            if ready {
                conn.receive(stream, plan.server, &payload, &schedule, &mut tally)?;
            }
        }
        progress.update(schedule.now(), tally.totals.correct);
    }
    let end = schedule.now();
    tally.finish(end);
    // Whatever is still unanswered after the drain is lost.
    for conn in &mut conns {
        tally.lost(conn.inflight.expire_all() as u64, end);
    }
    progress.finish();
    Ok(Run {
        sending: schedule.sending(tally.totals.sent, tally.last_send(), end),
        tally,
        measured: schedule.measured(end),
        gso: false,
        gro: false,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to a framer as successive reads; returns the replies.
    fn frame(size: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut framer = Framer::new(size);
        let mut replies = Vec::new();
        for chunk in chunks {
            framer.spare()[..chunk.len()].copy_from_slice(chunk);
            framer.filled(chunk.len(), |reply| replies.push(reply.to_vec()));
        }
        replies
    }

    #[test]
    fn replies_split_across_reads_are_joined_at_every_split_point() {
        let payload = Payload::line(12);
        let stream = [payload.expected(1), payload.expected(2)].concat();
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                frame(12, &[a, b]),
                [payload.expected(1), payload.expected(2)],
                "split at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frame(12, &bytes).len(), 2, "one byte per read");
    }

    #[test]
    fn several_replies_in_one_read_and_a_partial_one_kept() {
        let payload = Payload::line(10);
        let replies: Vec<Vec<u8>> = (0..5).map(|seq| payload.expected(seq)).collect();
        let mut stream = replies.concat();
        stream.extend_from_slice(b"AAAA");
        assert_eq!(frame(10, &[&stream]), replies);
        let mut framer = Framer::new(10);
        framer.spare()[..stream.len()].copy_from_slice(&stream);
        framer.filled(stream.len(), |_| {});
        assert_eq!(&framer.buf[..framer.len], b"AAAA");
        assert_eq!(framer.spare().len(), READ_LEN - 4);
    }

    #[test]
    fn a_reply_larger_than_one_read_fits_the_buffer() {
        let size = READ_LEN + 3;
        let mut framer = Framer::new(size);
        let mut got = 0;
        let reply = vec![b'X'; size];
        for piece in reply.chunks(1000) {
            let spare = framer.spare();
            assert!(spare.len() >= piece.len());
            spare[..piece.len()].copy_from_slice(piece);
            framer.filled(piece.len(), |r| {
                assert_eq!(r.len(), size);
                got += 1;
            });
        }
        assert_eq!(got, 1);
    }
}
