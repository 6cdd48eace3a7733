//! The UDP worker: one thread's socket and buffers, and the path of every
//! datagram through it, from the receive to the counter it lands in.
//!
//! Datagrams come in a batch at a time and their replies go out together:
//! many per system call on the batched path (`recvmmsg`, `sendmmsg`; Linux),
//! one per call on the portable path (`--io`), the same steps either way.
//! For each received buffer, in this order:
//! 1. a buffer without a sender, or cut short, is not answered;
//! 2. a buffer holding a GRO train of ASCII segments is answered whole, with
//!    one GSO send of the train uppercased where it lies (under a rate limit
//!    each segment is decided alone first, and the train still goes out
//!    whole if none was refused); any other train, and any train from a
//!    listed proxy, is split into its datagrams, each taking the steps below;
//! 3. with `--proxy-protocol-from`, a datagram from a listed proxy loses its
//!    PROXY header, if it has one, and counts as the client the header or
//!    its session names (`proxy`'s rule); a header alone or a malformed one
//!    leaves nothing to answer; the reply still goes to the proxy;
//! 4. a datagram whose client is over the rate limit is not answered
//!    (checked first, so a flood costs no transform);
//! 5. proto uppercases it: in place when it is ASCII, else into the scratch
//!    vector, or refuses a reply too large for the peer's address family;
//! 6. a reply over the reply ratio is not sent;
//! 7. the reply is queued: by reference to the receive slot when it was
//!    built in place (no copy, no allocation), else as a copy of the
//!    scratch into the send batch's arena, which keeps its capacity;
//! 8. after the flush, each queued reply was sent or failed.
//!
//! Every step that ends a datagram's path gives an [`Outcome`], and
//! [`Counters::record`] is the one place outcomes are counted.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use tracing::{debug, warn};
use upcase_proto::{
    DatagramReply, Family, Path, ReplyTooLarge, uppercase_ascii_prefix_in_place, uppercase_datagram,
};
use upcase_udp::opts::MAX_GSO_SEGMENTS;
use upcase_udp::{
    DatagramMut, Io, Queue, RecvBatch, RecvErrorClass, SendBatch, classify_recv_error,
};

use crate::counters::{Counters, Fate, Origin, Outcome};
use crate::live::Publisher;
use crate::policy::Policy;
use crate::proxy::{Arrival, Proxies};
use crate::warn_limit::{WarnLimiter, suppressed_note};

/// Most batches answered after the stop: 64 x 64 datagrams, a few
/// milliseconds of work.
const DRAIN_BATCHES: usize = 64;

/// One worker thread's socket, batches and state, all allocated before it
/// serves.
pub(crate) struct Worker {
    socket: UdpSocket,
    local: SocketAddr,
    recv: RecvBatch,
    send: SendBatch,
    state: State,
    busy_poll: bool,
}

/// What answering needs besides the socket and the batches, apart so that it
/// can be borrowed while the receive slots and the send queue are.
struct State {
    scratch: Vec<u8>,
    /// Per message queued since the last flush, in order: what its outcome
    /// will be once the flush says whether it was sent. Keeps its capacity.
    queued: Vec<Queued>,
    /// Per segment of the GRO train being answered: its reply when that is
    /// the segment itself, uppercased in place. Keeps its capacity.
    segments: Vec<Option<Queued>>,
    counters: Counters,
    /// Where `counters` are published, once per batch, for other threads.
    live: Publisher,
    warnings: WarnLimiter,
    policy: Arc<Policy>,
    /// The listed proxies and this socket's sessions, with
    /// `--proxy-protocol-from`.
    proxies: Option<Proxies>,
}

/// Whom one datagram is answered for (its reply goes to its peer).
#[derive(Clone, Copy, Debug)]
struct Client {
    /// The peer itself, or the client a PROXY header named.
    addr: SocketAddr,
    origin: Origin,
}

impl Client {
    /// The peer, as always.
    fn peer(peer: SocketAddr) -> Client {
        Client {
            addr: peer,
            origin: Origin::Peer,
        }
    }
}

/// A datagram's sender as the logs name it: the peer, or the client and
/// the proxy it came through.
struct Named(SocketAddr, Client);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Named(peer, client) = *self;
        match client.origin {
            Origin::Proxied => write!(f, "{} via {}", shown(client.addr), shown(peer)),
            Origin::Peer | Origin::ProxyOwn => write!(f, "{}", shown(peer)),
        }
    }
}

/// A reply queued and not yet flushed: one datagram's, or a GSO train's.
#[derive(Clone, Copy, Debug)]
struct Queued {
    peer: SocketAddr,
    datagrams: u64,
    bytes_in: u64,
    bytes_out: u64,
    path: Path,
}

impl Queued {
    /// Its outcome: sent, or refused by the system.
    fn outcome(self, sent: bool) -> Outcome {
        Outcome {
            datagrams: self.datagrams,
            bytes_in: self.bytes_in,
            path: Some(self.path),
            fate: if sent {
                Fate::Sent {
                    bytes_out: self.bytes_out,
                }
            } else {
                Fate::SendFailed
            },
        }
    }
}

/// Where the reply to one datagram is, once it is known there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// The datagram's first `len` bytes, uppercased where they were received.
    InPlace { len: usize },
    /// The whole scratch vector.
    InScratch { path: Path },
}

impl Worker {
    /// A worker for `socket` (bound, with a receive timeout unless
    /// `busy_poll`) moving datagrams on the path `io`, applying `policy`
    /// like every other worker and publishing its counts to `live`.
    pub(crate) fn new(
        socket: UdpSocket,
        policy: Arc<Policy>,
        busy_poll: bool,
        io: Io,
        live: Publisher,
    ) -> anyhow::Result<Worker> {
        let local = socket
            .local_addr()
            .context("cannot read the bound address")?;
        Ok(Worker {
            socket,
            local,
            // Slots of RECV_BUFFER_LEN: any datagram and any GRO train fit whole.
            recv: RecvBatch::with_io(upcase_udp::DEFAULT_BATCH, upcase_proto::RECV_BUFFER_LEN, io),
            send: SendBatch::with_io(upcase_udp::DEFAULT_BATCH, io),
            state: State {
                scratch: Vec::new(),
                queued: Vec::with_capacity(upcase_udp::DEFAULT_BATCH),
                segments: Vec::with_capacity(MAX_GSO_SEGMENTS),
                counters: Counters::default(),
                live,
                warnings: WarnLimiter::default(),
                policy,
                proxies: None,
            },
            busy_poll,
        })
    }

    /// Reads the PROXY headers of `proxies`' listed peers
    /// (`--proxy-protocol-from`), keeping their sessions in its table.
    pub(crate) fn with_proxies(mut self, proxies: Proxies) -> Worker {
        self.state.proxies = Some(proxies);
        self
    }

    /// Answers datagrams until `stop` is set, then answers what is already
    /// queued on the socket and returns what it counted.
    ///
    /// A quiet worker notices `stop` when its receive times out (the
    /// socket's SO_RCVTIMEO); a busy-polling one at every turn of its loop.
    /// Only a receive error that cannot be a passing condition ends it early.
    pub(crate) fn run(mut self, stop: &AtomicBool) -> anyhow::Result<Counters> {
        while !stop.load(Ordering::Relaxed) {
            let received = if self.busy_poll {
                self.recv.try_recv(&self.socket)
            } else {
                self.recv.recv(&self.socket)
            };
            match received {
                Ok(0) => {}
                Ok(_) => self.answer_batch()?,
                Err(err) => self.on_recv_error(err)?,
            }
        }
        self.drain()?;
        let suppressed = self.state.warnings.take_suppressed();
        if suppressed > 0 {
            warn!("{suppressed} more warnings were suppressed before the stop");
        }
        debug!("worker on {} stops: {}", self.local, self.state.counters);
        Ok(self.state.counters)
    }

    /// Answers the datagrams the kernel had already queued when the stop
    /// came (a worker scheduled late may not have read any yet), without
    /// waiting for more; at most [`DRAIN_BATCHES`] batches, so that a flood
    /// cannot hold up the stop.
    fn drain(&mut self) -> anyhow::Result<()> {
        for _ in 0..DRAIN_BATCHES {
            match self.recv.try_recv(&self.socket) {
                Ok(0) => break,
                Ok(_) => self.answer_batch()?,
                Err(err) => self.on_recv_error(err)?,
            }
        }
        Ok(())
    }

    /// Answers every buffer of the batch just received, sends the replies,
    /// and counts what became of each.
    fn answer_batch(&mut self) -> anyhow::Result<()> {
        let state = &mut self.state;
        let received_before = state.counters.received;
        state.queued.clear();
        let mut queue = self.send.queue(&self.socket);
        for datagram in self.recv.iter_mut() {
            state
                .answer_buffer(datagram, &mut queue)
                .with_context(|| format!("cannot send on {}", self.local))?;
        }
        queue
            .flush()
            .with_context(|| format!("cannot send on {}", self.local))?;
        state.settle_sent(queue.failed(), queue.report().first_error.as_ref());
        let batch = state.counters.received - received_before;
        state.counters.batches.observe(batch);
        state.live.publish(&state.counters);
        Ok(())
    }

    fn on_recv_error(&mut self, err: io::Error) -> anyhow::Result<()> {
        // upcase-udp's rules, per system: WinSock's codes on Windows, where
        // a reply to a closed port comes back as WSAECONNRESET here.
        match classify_recv_error(&err) {
            RecvErrorClass::Idle => Ok(()),
            RecvErrorClass::Transient => {
                self.state.counters.recv_errors += 1;
                self.state.live.publish(&self.state.counters);
                if let Some(suppressed) = self.state.warnings.allow(Instant::now()) {
                    warn!(
                        "receive error on {}, carrying on: {err}{}",
                        self.local,
                        suppressed_note(suppressed)
                    );
                }
                Ok(())
            }
            RecvErrorClass::Fatal => {
                Err(anyhow::Error::new(err).context(format!("cannot receive on {}", self.local)))
            }
        }
    }
}

impl State {
    /// Steps 1 and 2: queues the replies to one received buffer, a datagram or
    /// a GRO train.
    fn answer_buffer<'d>(
        &mut self,
        datagram: DatagramMut<'d>,
        queue: &mut Queue<'_, 'd, UdpSocket>,
    ) -> io::Result<()> {
        let Some(peer) = datagram.meta.peer else {
            // UDP always has a sender; nothing to answer without one.
            self.counters.record(&Outcome::unanswerable(Fate::NoPeer));
            return Ok(());
        };
        if datagram.meta.truncated {
            // Slots hold any datagram and any train, so this is a kernel
            // surprise: a cut datagram's uppercase would be a wrong reply.
            self.counters
                .record(&Outcome::unanswerable(Fate::Truncated));
            if let Some(suppressed) = self.warnings.allow(Instant::now()) {
                warn!(
                    "a datagram from {} was cut by the receive buffer and is not answered{}",
                    shown(peer),
                    suppressed_note(suppressed)
                );
            }
            return Ok(());
        }
        match datagram.meta.segment_size {
            Some(size) if size > 0 && datagram.bytes.len() > usize::from(size) => {
                if self.is_proxy(peer) {
                    // Each segment may carry a header of its own.
                    for segment in datagram.bytes.chunks_mut(usize::from(size)) {
                        self.answer_one(segment, peer, queue)?;
                    }
                    return Ok(());
                }
                self.answer_train(datagram.bytes, size, peer, queue)
            }
            _ => self.answer_one(datagram.bytes, peer, queue),
        }
    }

    /// Whether `peer` is a listed proxy (never, without the option).
    fn is_proxy(&self, peer: SocketAddr) -> bool {
        self.proxies
            .as_ref()
            .is_some_and(|proxies| proxies.lists(peer))
    }

    /// Queues the replies to a GRO train of `size`-byte segments: one GSO
    /// send of the train uppercased in place when every segment is answered
    /// in place, else one reply per segment.
    fn answer_train<'d>(
        &mut self,
        train: &'d mut [u8],
        size: u16,
        peer: SocketAddr,
        queue: &mut Queue<'_, 'd, UdpSocket>,
    ) -> io::Result<()> {
        let segment = usize::from(size);
        let segments = train.len().div_ceil(segment);
        // ASCII keeps every reply the length of its request, so the replies
        // form a train of the same shape; the other limits are the kernel's
        // for one GSO send.
        let fits_one_send =
            train.len() <= Family::of(peer).max_payload() && segments <= MAX_GSO_SEGMENTS;
        // Whole: what answering each segment would give, without looking at
        // each. An ASCII reply is its request's length, which no reply ratio
        // (at least 1) refuses; only a rate limit must see every datagram.
        // (When the train is not all ASCII, the ASCII letters uppercased so
        // far give the same replies segment by segment.)
        if fits_one_send
            && !self.policy.limits_rate()
            && uppercase_ascii_prefix_in_place(train) == train.len()
        {
            debug!(
                "{}: a train of {segments} ASCII datagrams, {} bytes, answered in place",
                shown(peer),
                train.len()
            );
            let train: &'d [u8] = train;
            queue.push(Some(peer), train, Some(size))?;
            self.queued.push(Queued {
                peer,
                datagrams: segments as u64,
                bytes_in: train.len() as u64,
                bytes_out: train.len() as u64,
                path: Path::Ascii,
            });
            return Ok(());
        }
        if !(fits_one_send && train.is_ascii()) {
            for datagram in train.chunks_mut(segment) {
                self.answer_one(datagram, peer, queue)?;
            }
            return Ok(());
        }
        // ASCII under a rate limit: each segment is decided on its own, and
        // the train still goes out in one send if the limit refused none.
        self.segments.clear();
        for datagram in train.chunks_mut(segment) {
            let request_len = datagram.len();
            let client = Client::peer(peer);
            let in_place = match self.reply_to(datagram, peer, client) {
                Some(reply @ Reply::InPlace { .. }) => {
                    Some(self.to_queued(reply, request_len, peer))
                }
                Some(reply @ Reply::InScratch { .. }) => {
                    // Not the case for ASCII; queued now, before the scratch
                    // is reused, so that no reply is lost if it ever were.
                    queue.push_copy(Some(peer), &self.scratch, None)?;
                    self.queued.push(self.to_queued(reply, request_len, peer));
                    None
                }
                None => None,
            };
            self.segments.push(in_place);
        }
        let train: &'d [u8] = train;
        let whole = self
            .segments
            .iter()
            .all(|queued| queued.is_some_and(|q| q.bytes_out == q.bytes_in));
        if whole {
            queue.push(Some(peer), train, Some(size))?;
            self.queued.push(Queued {
                peer,
                datagrams: self.segments.len() as u64,
                bytes_in: train.len() as u64,
                bytes_out: train.len() as u64,
                path: Path::Ascii,
            });
        } else {
            // Some segments get no reply: the others go one by one, still
            // from the slot.
            for (datagram, queued) in train.chunks(segment).zip(&self.segments) {
                if let Some(queued) = *queued {
                    let reply = datagram
                        .get(..queued.bytes_out as usize)
                        .unwrap_or(datagram);
                    queue.push(Some(peer), reply, None)?;
                    self.queued.push(queued);
                }
            }
        }
        Ok(())
    }

    /// Steps 3 to 7 for one datagram: queues its reply, the datagram itself
    /// (after its PROXY header, if any) when it was answered in place, else
    /// a copy of the scratch.
    fn answer_one<'d>(
        &mut self,
        datagram: &'d mut [u8],
        peer: SocketAddr,
        queue: &mut Queue<'_, 'd, UdpSocket>,
    ) -> io::Result<()> {
        let Some((request, client)) = self.take_proxy_header(datagram, peer) else {
            return Ok(());
        };
        let request_len = request.len();
        let Some(reply) = self.reply_to(request, peer, client) else {
            return Ok(());
        };
        match reply {
            Reply::InPlace { len } => {
                let request: &'d [u8] = request;
                queue.push(Some(peer), request.get(..len).unwrap_or(request), None)?;
            }
            Reply::InScratch { .. } => queue.push_copy(Some(peer), &self.scratch, None)?,
        }
        self.queued.push(self.to_queued(reply, request_len, peer));
        Ok(())
    }

    /// Step 3: the request in `datagram` and whom it is for: all of it, for
    /// its peer, unless the peer is a listed proxy; then what follows its
    /// PROXY header, for the client the header or its session names.
    /// `None` when nothing is left to answer (a header alone, a malformed
    /// one), which is counted here.
    fn take_proxy_header<'d>(
        &mut self,
        datagram: &'d mut [u8],
        peer: SocketAddr,
    ) -> Option<(&'d mut [u8], Client)> {
        let Some(proxies) = self.proxies.as_ref().filter(|proxies| proxies.lists(peer)) else {
            return Some((datagram, Client::peer(peer)));
        };
        let (payload_at, client) = match proxies.arrival(datagram, peer, Instant::now()) {
            Arrival::Client { client, payload_at } => (
                payload_at,
                Client {
                    addr: client,
                    origin: Origin::Proxied,
                },
            ),
            Arrival::ProxyOwn { payload_at } => (
                payload_at,
                Client {
                    addr: peer,
                    origin: Origin::ProxyOwn,
                },
            ),
            Arrival::HeaderOnly { client } => {
                let origin = client.map_or(Origin::ProxyOwn, |_| Origin::Proxied);
                self.counters.record_origin(origin);
                self.counters
                    .record(&Outcome::unanswerable(Fate::ProxyHeaderOnly));
                debug!(
                    "{}: a PROXY header alone, for {}",
                    shown(peer),
                    client.map_or_else(|| "the proxy itself".to_string(), |c| shown(c).to_string())
                );
                return None;
            }
            Arrival::Malformed(why) => {
                self.counters.record(&Outcome {
                    bytes_in: datagram.len() as u64,
                    ..Outcome::unanswerable(Fate::ProxyMalformed)
                });
                if let Some(suppressed) = self.warnings.allow(Instant::now()) {
                    warn!(
                        "a datagram from the proxy {} is not answered: it starts with {why}{}",
                        shown(peer),
                        suppressed_note(suppressed)
                    );
                }
                return None;
            }
        };
        self.counters.record_origin(client.origin);
        // The header is never longer than the datagram: proto says so.
        let (_, request) = datagram.split_at_mut(payload_at.min(datagram.len()));
        Some((request, client))
    }

    /// The queue's record of `reply`, to a request of `request_len` bytes.
    fn to_queued(&self, reply: Reply, request_len: usize, peer: SocketAddr) -> Queued {
        let (bytes_out, path) = match reply {
            Reply::InPlace { len } => (len, Path::Ascii),
            Reply::InScratch { path } => (self.scratch.len(), path),
        };
        Queued {
            peer,
            datagrams: 1,
            bytes_in: request_len as u64,
            bytes_out: bytes_out as u64,
            path,
        }
    }

    /// Steps 4 to 6 for one request from `peer`, for `client`: where its
    /// reply is, or `None` when it gets none (that outcome is then counted,
    /// and warned about within the warnings' limit).
    fn reply_to(&mut self, datagram: &mut [u8], peer: SocketAddr, client: Client) -> Option<Reply> {
        let request_len = datagram.len();
        if !self.policy.admits(client.addr.ip()) {
            self.refuse(peer, client, request_len, None, Fate::RateLimited);
            return None;
        }
        let family = Family::of(peer);
        let (reply, reply_len, path) =
            match uppercase_datagram(datagram, &mut self.scratch, family.max_payload()) {
                DatagramReply::InPlace { len } => (Reply::InPlace { len }, len, Path::Ascii),
                DatagramReply::InScratch { len, path } => (Reply::InScratch { path }, len, path),
                DatagramReply::TooLarge(too_large) => {
                    let fate = Fate::TooLarge(too_large);
                    self.refuse(peer, client, request_len, Some(too_large.path), fate);
                    return None;
                }
            };
        if !self.policy.reply_allowed(request_len, reply_len) {
            self.refuse(
                peer,
                client,
                request_len,
                Some(path),
                Fate::RatioExceeded { reply_len },
            );
            return None;
        }
        debug!(
            "{}: {request_len} bytes in, {reply_len} out ({path:?})",
            Named(peer, client)
        );
        Some(reply)
    }

    /// Counts a datagram that gets no reply, and says why.
    fn refuse(
        &mut self,
        peer: SocketAddr,
        client: Client,
        request_len: usize,
        path: Option<Path>,
        fate: Fate,
    ) {
        self.counters.record(&Outcome {
            datagrams: 1,
            bytes_in: request_len as u64,
            path,
            fate,
        });
        let Some(suppressed) = self.warnings.allow(Instant::now()) else {
            return;
        };
        let family = Family::of(peer);
        let (peer, suppressed) = (Named(peer, client), suppressed_note(suppressed));
        match fate {
            Fate::RateLimited => warn!(
                "reply to {peer} not sent: its address is over the rate limit of {} replies per second{suppressed}",
                self.policy.rate_limit(),
            ),
            Fate::RatioExceeded { reply_len } => warn!(
                "reply to {peer} not sent: {reply_len} bytes is more than {} times the {request_len}-byte request{suppressed}",
                self.policy.max_reply_ratio().map_or(0.0, |r| r.get()),
            ),
            Fate::TooLarge(ReplyTooLarge {
                reply_len, limit, ..
            }) => warn!(
                "reply to {peer} not sent: {reply_len} bytes (request {request_len} bytes) is over the {} limit of {limit} bytes{suppressed}",
                family.name(),
            ),
            Fate::Sent { .. }
            | Fate::SendFailed
            | Fate::NoPeer
            | Fate::Truncated
            | Fate::ProxyHeaderOnly
            | Fate::ProxyMalformed => {}
        }
    }

    /// Step 8: counts every message queued since the last flush as sent or
    /// failed; `failed` are the positions of the messages the system
    /// refused, in the order they were queued.
    fn settle_sent(&mut self, failed: &[usize], error: Option<&io::Error>) {
        let mut failed_at = failed.iter().copied().peekable();
        let mut refused = 0;
        let mut first_refused = None;
        for (i, queued) in self.queued.iter().enumerate() {
            let sent = failed_at.next_if_eq(&i).is_none();
            if !sent {
                refused += queued.datagrams;
                first_refused.get_or_insert(queued.peer);
            }
            self.counters.record(&queued.outcome(sent));
        }
        let Some(first) = first_refused else {
            return;
        };
        if let Some(suppressed) = self.warnings.allow(Instant::now()) {
            let why = error.map_or_else(|| "refused".to_string(), ToString::to_string);
            warn!(
                "cannot send {refused} repl{}, the first to {}: {why}{}",
                if refused == 1 { "y" } else { "ies" },
                shown(first),
                suppressed_note(suppressed)
            );
        }
    }
}

/// A peer as people write it: `127.0.0.1:5000`, not `[::ffff:127.0.0.1]:5000`.
fn shown(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

#[cfg(test)]
mod tests;
