//! The load loop: one thread keeps every socket's share of the window in
//! flight with `sendmmsg` (or GSO trains), takes replies with `recvmmsg`
//! (or GRO), checks each one and declares the overdue ones lost; on the
//! portable path (`--io portable`, and off Linux) the same batches, one
//! datagram per system call.
//!
//! One thread on purpose: the server under test gets the other cores, and a
//! batch of 64 datagrams per system call costs the client less per reply
//! than any server spends on it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use upcase_udp::opts::MAX_GSO_SEGMENTS;
use upcase_udp::{Poller, RecvBatch, SendBatch};

use crate::args::{LatencyFrom, Plan};
use crate::inflight::Inflight;
use crate::payload::Payload;
use crate::progress::Progress;
use crate::tally::{Span, Tally, classify};

/// Receive buffer asked for each socket, so that a burst of replies to a
/// whole window is queued rather than dropped while the loop is sending.
const RECV_BUFFER: usize = 4 << 20;
/// Longest one wait lasts: the loop then looks at the clock, for the end of
/// the run, overdue requests and the progress bar.
pub(crate) const TICK: Duration = Duration::from_millis(5);
/// Pause when nothing is in flight because sends fail (no server yet):
/// keeps a failing run from spinning a core.
const IDLE: Duration = Duration::from_millis(1);
/// Most request bytes stamped for one flush, to bound the buffer of a large
/// window of large requests.
pub(crate) const FLUSH_BYTES: usize = 1 << 20;
/// Most bytes of one GSO train: one UDP datagram's payload, with slack.
const TRAIN_BYTES: usize = 65_000;
/// Requests remembered per run (shared out over the sockets): a reply must
/// be recognised as late until well after its request timed out.
const RING: usize = 1 << 18;

/// What a run measured, and how it actually sent and received.
pub(crate) struct Run {
    pub tally: Tally,
    /// How long the measurement lasted: `--duration`, or less when the run
    /// ended sooner (`--count` reached and every request settled).
    pub measured: Duration,
    pub gso: bool,
    pub gro: bool,
    /// How sending kept to the schedule.
    pub sending: Sending,
    pub notes: Vec<String>,
}

/// How long the measurement sent, and, under `--rate`, how many requests
/// the schedule had due in that time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sending {
    pub time: Duration,
    pub due: Option<u64>,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX / 4)
}

/// One socket's requests.
struct Lane {
    inflight: Inflight,
    /// Requests this socket keeps in flight.
    window: usize,
    /// Preformatted requests, restamped with their sequence numbers per send.
    tx: Vec<u8>,
}

impl Lane {
    fn free(&self) -> usize {
        self.window
            .saturating_sub(self.inflight.outstanding())
            .min(self.inflight.room())
    }
}

struct Sender {
    batch: SendBatch,
    payload: Payload,
    /// Requests per pushed message: a GSO train's length, or 1.
    per_push: usize,
    /// Most requests per flush.
    per_flush: usize,
}

impl Sender {
    /// Sends up to `budget` requests on `socket`, as many as its window has
    /// room for, the first of them number `index` of the run's schedule;
    /// returns how many the kernel took.
    #[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
    fn fill(
        &mut self,
        socket: &UdpSocket,
        lane: &mut Lane,
        budget: u64,
        index: u64,
        schedule: &Schedule,
        tally: &mut Tally,
        now: u64,
    ) -> anyhow::Result<u64> {
        let size = self.payload.size();
        let mut left = budget;
        let mut total = 0;
        loop {
            let k = lane
                .free()
                .min(self.per_flush)
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            if k == 0 {
                return Ok(total);
            }
            let first = lane.inflight.next_seq();
            for (j, request) in lane.tx.chunks_exact_mut(size).take(k).enumerate() {
                self.payload.stamp(request, first.wrapping_add(j as u32));
            }
            let at = schedule.now();
            let from = index + total;
            lane.inflight
                .sent(k, at, |j| schedule.origin(from + j as u64, at));
            let mut queue = self.batch.queue(socket);
            for train in lane.tx[..k * size].chunks(self.per_push * size) {
                // A lone request is an ordinary datagram, never a one-segment train.
                let segment = (train.len() > size).then_some(size as u16);
                queue
                    .push(None, train, segment)
                    .context("cannot send requests")?;
            }
            queue.flush().context("cannot send requests")?;
            let mut unsent = 0;
            for &message in queue.failed() {
                let from = message * self.per_push;
                for index in from..(from + self.per_push).min(k) {
                    lane.inflight.unsend(k, index);
                    unsent += 1;
                }
            }
            // A refused send's place on the schedule goes to the next request.
            let failed = queue.failed();
            if schedule.paced() {
                for j in (0..k).filter(|j| !failed.contains(&(j / self.per_push))) {
                    tally.behind(schedule.lateness(from + j as u64, at), now);
                }
            }
            if let Some(err) = &queue.report().first_error {
                tally.refused += u64::from(upcase_udp::is_port_unreachable(err));
            }
            tally.send_errors += unsent as u64;
            let sent = (k - unsent) as u64;
            tally.sent(sent, now);
            total += sent;
            left -= k as u64;
            if unsent > 0 {
                // The kernel refuses for now: let replies drain first.
                return Ok(total);
            }
        }
    }
}

/// Paces sending at `rate` requests per second from the start of the run.
struct Pacer {
    rate: u64,
}

impl Pacer {
    /// How many requests may have been sent by `now`.
    fn allowed(&self, now: u64) -> u64 {
        let due = u128::from(now) * u128::from(self.rate) / 1_000_000_000;
        u64::try_from(due).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// How many requests are due before clock time `at` (one ahead of the
    /// pacer's nanoseconds, see [`Schedule::now`]).
    fn due_before(&self, at: u64) -> u64 {
        at.checked_sub(2).map_or(0, |ns| self.allowed(ns))
    }

    /// When request number `sent` (counting from 0) is due, in nanoseconds
    /// since the start.
    fn due_at(&self, sent: u64) -> u64 {
        let at = u128::from(sent) * 1_000_000_000 / u128::from(self.rate);
        u64::try_from(at).unwrap_or(u64::MAX)
    }
}

/// The run's clock, when it counts, when it stops sending, and how many
/// requests it may send at a moment: the part of the loop both transports
/// share.
pub(crate) struct Schedule {
    start: Instant,
    /// Clock time the measurement starts (after the warm-up) and ends.
    pub measure_start: u64,
    pub measure_end: u64,
    /// `--loss-timeout` in nanoseconds.
    pub loss_timeout: u64,
    count: Option<u64>,
    pacer: Option<Pacer>,
    latency_from: LatencyFrom,
}

impl Schedule {
    /// Starts the clock: make it just before the loop.
    pub(crate) fn new(plan: &Plan) -> Schedule {
        let measure_start = nanos(plan.warmup) + 1;
        Schedule {
            start: Instant::now(),
            measure_start,
            measure_end: measure_start.saturating_add(nanos(plan.duration)),
            loss_timeout: nanos(plan.loss_timeout),
            count: plan.count,
            pacer: plan.rate.map(|rate| Pacer { rate }),
            latency_from: plan.latency_from,
        }
    }

    /// When request number `index` of the run (counting from 0, over all
    /// sockets) is due on the clock, under `--rate`.
    fn due(&self, index: u64) -> Option<u64> {
        let pacer = self.pacer.as_ref()?;
        Some(pacer.due_at(index).saturating_add(1))
    }

    /// The time the round trip of request `index`, sent at `sent_at`, is
    /// counted from: its place on the schedule (`--latency-from intended`,
    /// the default under `--rate`), so that what held it back counts;
    /// otherwise the send itself.
    pub(crate) fn origin(&self, index: u64, sent_at: u64) -> u64 {
        match (self.latency_from, self.due(index)) {
            (LatencyFrom::Intended, Some(due)) => due.min(sent_at),
            _ => sent_at,
        }
    }

    /// Whether requests go out on a `--rate` schedule.
    pub(crate) fn paced(&self) -> bool {
        self.pacer.is_some()
    }

    /// How late request `index` went out at `sent_at`, under `--rate`.
    pub(crate) fn lateness(&self, index: u64, sent_at: u64) -> Option<u64> {
        self.due(index).map(|due| sent_at.saturating_sub(due))
    }

    /// How long the measurement sent, and how many requests were due in
    /// that time: until its end, or, once `--count` was reached (`sent`
    /// requests sent since the warm-up, the last at `last_send`), until the
    /// last went; for a run that ended at `end`.
    pub(crate) fn sending(&self, sent: u64, last_send: u64, end: u64) -> Sending {
        // Sending stops before `stop`: the last request of a count, or the
        // first moment past the measurement.
        let stop = if self.count.is_some_and(|c| sent >= c) {
            last_send.saturating_add(1)
        } else {
            end.min(self.measure_end)
        }
        .max(self.measure_start);
        let start = self.measure_start;
        Sending {
            time: Duration::from_nanos(stop - start),
            due: self
                .pacer
                .as_ref()
                .map(|p| p.due_before(stop) - p.due_before(start)),
        }
    }

    /// Nanoseconds since the run began, plus one (0 means "no time" to
    /// [`Inflight`]).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether requests still go out at `now`, `measured` of them sent since
    /// the warm-up: `--count` counts those only, so a warm-up never uses
    /// up the requests to measure.
    pub(crate) fn sends(&self, now: u64, measured: u64) -> bool {
        now < self.measure_end && self.count.is_none_or(|c| measured < c)
    }

    /// How many more requests may go at `now`, `sent` of them so far and
    /// `measured` since the warm-up, and, when pacing allows none, the clock
    /// time the next one is due.
    pub(crate) fn budget(&self, now: u64, sent: u64, measured: u64) -> (u64, Option<u64>) {
        let mut budget = self.count.map_or(u64::MAX, |c| c.saturating_sub(measured));
        if let Some(pacer) = &self.pacer {
            budget = budget.min(pacer.allowed(now).saturating_sub(sent));
            if budget == 0 {
                return (0, Some(pacer.due_at(sent)));
            }
        }
        (budget, None)
    }

    /// When the run counts, cut into intervals of `every`.
    pub(crate) fn span(&self, every: Duration) -> Span {
        Span {
            start: self.measure_start,
            end: self.measure_end,
            every: nanos(every).max(1),
        }
    }

    /// How long the measurement lasted for a run that ended at `end`.
    pub(crate) fn measured(&self, end: u64) -> Duration {
        Duration::from_nanos(end.min(self.measure_end).saturating_sub(self.measure_start))
    }
}

/// How long to wait for replies at `now`: a tick, or less if a paced
/// request is due sooner.
pub(crate) fn wait_time(now: u64, next_send: Option<u64>) -> Duration {
    next_send.map_or(TICK, |at| {
        Duration::from_nanos(at.saturating_sub(now)).min(TICK)
    })
}

fn open(server: SocketAddr, buffer: usize) -> anyhow::Result<UdpSocket> {
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).context("cannot open a UDP socket")?;
    socket
        .connect(server)
        .with_context(|| format!("cannot reach {server}"))?;
    // A smaller buffer than asked only risks losses, which are counted.
    let _ = upcase_udp::opts::set_recv_buffer(&socket, buffer);
    Ok(socket)
}

/// Counts a receive: `Ok(0)` when nothing was there or the server's port
/// is closed (counted as refused); an error only for a broken socket.
fn received(result: io::Result<usize>, tally: &mut Tally) -> anyhow::Result<usize> {
    match result {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) if upcase_udp::is_port_unreachable(&e) => {
            tally.refused += 1;
            Ok(0)
        }
        Err(e) => Err(e).context("cannot receive replies"),
    }
}

/// Checks every datagram of the last receive (each datagram of a GRO train
/// on its own).
fn check_batch(recv: &RecvBatch, payload: &Payload, lane: &mut Lane, tally: &mut Tally, now: u64) {
    for datagram in recv.iter() {
        let end = datagram.bytes.as_ptr_range().end;
        for reply in datagram.segments() {
            // Only the last datagram of a train can have been cut.
            let cut = datagram.meta.truncated && reply.as_ptr_range().end == end;
            let outcome = classify(payload, &mut lane.inflight, reply, cut, now);
            tally.record(outcome, now);
        }
    }
}

pub(crate) fn run(plan: &Plan, show_progress: bool) -> anyhow::Result<Run> {
    let mut notes = Vec::new();
    let payload = Payload::new(plan.size);
    let size = payload.size();
    let sockets = (0..plan.sockets)
        .map(|_| open(plan.server, RECV_BUFFER))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut gso = plan.gso;
    let mut gro = false;
    if plan.gso {
        if !plan.io.gso_supported() {
            notes.push(format!(
                "UDP GSO is not available on the {} path here: requests are sent in ordinary batches",
                plan.io
            ));
            gso = false;
        } else if 2 * size > TRAIN_BYTES {
            notes.push(format!(
                "a GSO train cannot hold two {size}-byte requests: they are sent in ordinary batches"
            ));
            gso = false;
        }
        match sockets
            .iter()
            .try_for_each(|socket| plan.io.enable_gro(socket))
        {
            Ok(()) => gro = true,
            Err(e) => notes.push(format!(
                "UDP GRO is not available here ({e}): replies are received one by one"
            )),
        }
    }
    let per_push = if gso {
        (TRAIN_BYTES / size).min(MAX_GSO_SEGMENTS)
    } else {
        1
    };
    let per_flush = (plan.batch * per_push).min((FLUSH_BYTES / size).max(1));

    // One socket without pacing waits in the receive itself: one system call
    // per wake-up, as few as a blocking client can make.
    let blocking = sockets.len() == 1 && plan.rate.is_none() && !plan.busy_poll;
    if blocking {
        sockets[0]
            .set_read_timeout(Some(TICK))
            .context("cannot set the receive timeout")?;
    }

    let mut lanes: Vec<Lane> = (0..sockets.len())
        .map(|i| {
            let window = plan.window_of(i);
            Lane {
                inflight: Inflight::new((RING / sockets.len()).max(window * 2)),
                window,
                tx: payload.template().repeat(per_flush.min(window)),
            }
        })
        .collect();
    let mut sender = Sender {
        batch: SendBatch::with_io(plan.batch, plan.io),
        payload: payload.clone(),
        per_push,
        per_flush,
    };
    let slot_len = if gro {
        upcase_proto::RECV_BUFFER_LEN
    } else {
        size
    };
    let mut recv = RecvBatch::with_io(plan.batch, slot_len, plan.io);
    let mut poller = Poller::new(&sockets);
    let mut progress = Progress::new(show_progress, plan.warmup + plan.duration);
    let mut sent_total: u64 = 0;
    let schedule = Schedule::new(plan);
    let mut tally = Tally::new(schedule.span(plan.interval))?;
    let drain_end = schedule.measure_end.saturating_add(schedule.loss_timeout);

    loop {
        let now = schedule.now();
        let sending = schedule.sends(now, tally.totals.sent);
        let outstanding: usize = lanes.iter().map(|l| l.inflight.outstanding()).sum();
        if !sending && (outstanding == 0 || now >= drain_end) {
            break;
        }
        let mut next_send = None;
        if sending {
            let mut budget;
            (budget, next_send) = schedule.budget(now, sent_total, tally.totals.sent);
            for (socket, lane) in sockets.iter().zip(&mut lanes) {
                if budget == 0 {
                    break;
                }
                let sent =
                    sender.fill(socket, lane, budget, sent_total, &schedule, &mut tally, now)?;
                sent_total += sent;
                budget -= sent;
            }
        }
        let outstanding: usize = lanes.iter().map(|l| l.inflight.outstanding()).sum();

        let mut got = 0;
        if blocking {
            if outstanding > 0 {
                got = received(recv.recv(&sockets[0]), &mut tally)?;
                if got > 0 {
                    let now = schedule.now();
                    check_batch(&recv, &payload, &mut lanes[0], &mut tally, now);
                }
            } else {
                std::thread::sleep(IDLE);
            }
        } else {
            for (socket, lane) in sockets.iter().zip(&mut lanes) {
                if lane.inflight.outstanding() == 0 {
                    continue;
                }
                let n = received(recv.try_recv(socket), &mut tally)?;
                if n > 0 {
                    check_batch(&recv, &payload, lane, &mut tally, schedule.now());
                    got += n;
                }
            }
            if got == 0 && !plan.busy_poll {
                if outstanding > 0 || next_send.is_some() {
                    poller
                        .wait(wait_time(schedule.now(), next_send))
                        .context("cannot wait for replies")?;
                } else {
                    std::thread::sleep(IDLE);
                }
            }
        }

        let now = schedule.now();
        for lane in &mut lanes {
            let (lost, _) = lane.inflight.expire(now, schedule.loss_timeout);
            tally.lost(lost as u64, now);
        }
        progress.update(now, tally.totals.correct);
    }
    let end = schedule.now();
    tally.finish(end);
    // Whatever is still unanswered after the drain is lost.
    for lane in &mut lanes {
        tally.lost(lane.inflight.expire_all() as u64, end);
    }
    progress.finish();
    Ok(Run {
        sending: schedule.sending(tally.totals.sent, tally.last_send(), end),
        tally,
        measured: schedule.measured(end),
        gso,
        gro,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spreads_requests_evenly() {
        let pacer = Pacer { rate: 1_000 };
        assert_eq!(pacer.allowed(1), 1, "the first request goes at once");
        assert_eq!(pacer.allowed(999_999), 1);
        assert_eq!(pacer.allowed(1_000_000), 2);
        assert_eq!(pacer.allowed(1_000_000_000), 1_001);
        assert_eq!(pacer.due_at(1), 1_000_000);
        assert_eq!(pacer.due_at(1_000), 1_000_000_000);
    }

    fn schedule(rate: Option<u64>, latency_from: LatencyFrom, count: Option<u64>) -> Schedule {
        let plan = Plan::new(&crate::BenchArgs {
            server: Some(upcase_cli::parse::HostPort::localhost()),
            rate,
            count,
            duration: Duration::from_secs(1),
            ..crate::BenchArgs::default()
        })
        .unwrap();
        Schedule {
            latency_from,
            ..Schedule::new(&plan)
        }
    }

    #[test]
    fn round_trips_count_from_the_schedule_only_when_asked() {
        let paced = schedule(Some(1_000), LatencyFrom::Intended, None);
        // Request 5 is due 5 ms in; sent 20 ms in, it is 15 ms late.
        let sent_at = 20_000_001;
        assert_eq!(paced.origin(5, sent_at), 5_000_001);
        assert_eq!(paced.lateness(5, sent_at), Some(15_000_000));
        assert_eq!(paced.origin(50, sent_at), sent_at, "never after the send");
        assert_eq!(paced.lateness(50, sent_at), Some(0));
        let uncorrected = schedule(Some(1_000), LatencyFrom::Sent, None);
        assert_eq!(uncorrected.origin(5, sent_at), sent_at);
        assert_eq!(uncorrected.lateness(5, sent_at), Some(15_000_000));
        let closed = schedule(None, LatencyFrom::Sent, None);
        assert_eq!(closed.origin(5, sent_at), sent_at);
        assert_eq!(closed.lateness(5, sent_at), None);
    }

    #[test]
    fn the_requests_due_are_counted_until_sending_stopped() {
        let paced = schedule(Some(1_000), LatencyFrom::Intended, None);
        let end = paced.measure_end + 5_000_000;
        let sending = paced.sending(900, paced.measure_start + 10, end);
        assert_eq!(sending.time, Duration::from_secs(1));
        assert_eq!(sending.due, Some(1_000), "a second at 1000/s");
        let counted = schedule(Some(1_000), LatencyFrom::Intended, Some(100));
        let last = counted.measure_start + 99_000_000;
        let sending = counted.sending(100, last, end);
        assert_eq!(sending.time, Duration::from_nanos(99_000_001));
        assert_eq!(sending.due, Some(100), "the 100th was due at 99 ms");
        let closed = schedule(None, LatencyFrom::Sent, None);
        assert_eq!(closed.sending(5, 1, end).due, None);
    }
}
