//! One TCP connection's state between readiness events: what it has read,
//! what it still owes its client, and where it is in its life (PROXY header,
//! stream, end). The event loop calls [`Connection::on_ready`] whenever the
//! socket may have moved; this module never waits, it does what the socket
//! allows now and says what it is waiting for.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use tracing::{debug, warn};
use upcase_proto::StreamUppercaser;
use upcase_proto::proxy::{self, Malformed, Parsed};

use super::live::{TcpLive, bump};
use crate::config::ProxySources;
use crate::warn_limit::{WarnLimiter, suppressed_note};

/// How much a connection reads at once, and so the most it holds of a
/// client's input.
pub(super) const READ_BUFFER_LEN: usize = 16 * 1024;

/// Full buffers a connection may read in a row before the others get their
/// turn (256 KiB, as the C reference), so one flooding client cannot keep
/// the loop from a pinging one.
pub(super) const READS_PER_TURN: usize = 16;

/// With `--proxy-protocol-from`: the peers whose connections start with a
/// PROXY header, and a bound on the warnings about those that do not.
#[derive(Debug)]
pub(crate) struct TcpProxies {
    sources: Arc<ProxySources>,
    warnings: Mutex<WarnLimiter>,
}

impl TcpProxies {
    pub(crate) fn new(sources: Arc<ProxySources>) -> TcpProxies {
        TcpProxies {
            sources,
            warnings: Mutex::default(),
        }
    }

    /// Whether connections from `peer` start with a PROXY header.
    pub(super) fn lists(&self, peer: SocketAddr) -> bool {
        self.sources.lists(peer.ip())
    }
}

/// Where a connection is in its life.
enum Phase {
    /// From a listed proxy: the header is not complete yet; `input[..filled]`
    /// holds what came so far.
    Header { filled: usize },
    /// Uppercasing the stream.
    Streaming,
    /// The client's end of stream seen: sending the rest, then the server's
    /// end of stream.
    Finishing,
}

/// The bytes still owed to the client: a range of the input (ASCII,
/// uppercased in place) or of the reply.
#[derive(Clone)]
enum Owed {
    Nothing,
    Input(Range<usize>),
    Reply(Range<usize>),
}

/// What [`Connection::on_ready`] left the connection doing.
pub(super) enum Step {
    /// Waiting for the socket: the next readiness event brings it back.
    Wait,
    /// It read its [`READS_PER_TURN`] full buffers and may have more: it
    /// must be called again after the others had their turn, as no new
    /// event may come for what is already there.
    Yield,
    /// It is over; [`Connection::report`] says how.
    Ended(Ended),
}

/// How a connection ended.
pub(super) enum Ended {
    /// The client's end of stream, answered in full.
    Done,
    /// A listed proxy closed before sending anything (a health check, say).
    Silent,
    TimedOut(&'static str),
    Failed(io::Error),
    /// From a listed proxy, without a valid PROXY header first.
    NotProxied(NotProxied),
}

/// Why a listed proxy's connection was not served.
pub(super) enum NotProxied {
    /// It started with something else.
    Missing,
    /// It started like a header, and was none, or ended inside one.
    Malformed(Malformed),
}

impl std::fmt::Display for NotProxied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotProxied::Missing => f.write_str("it does not start with a PROXY header"),
            NotProxied::Malformed(why) => write!(f, "it starts with {why}"),
        }
    }
}

/// What a connection needs of its socket: a trait so that the tests can
/// drive a connection with a scripted one.
pub(super) trait Socket: Read + Write {
    fn shutdown_write(&self) -> io::Result<()>;
    fn set_nodelay(&self) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn set_nodelay(&self) -> io::Result<()> {
        TcpStream::set_nodelay(self, true)
    }
}

pub(super) struct Connection<S = TcpStream> {
    stream: S,
    peer: SocketAddr,
    /// The client a PROXY header named (`None`: the peer, or the proxy itself).
    client: Option<SocketAddr>,
    /// `Some` when `peer` is a listed proxy.
    proxies: Option<Arc<TcpProxies>>,
    phase: Phase,
    input: Box<[u8]>,
    /// The uppercase of a read that was not all ASCII; reused, so it stays
    /// at the size of the largest reply (at most 3 reads' worth).
    reply: Vec<u8>,
    owed: Owed,
    uppercaser: StreamUppercaser,
    /// When something last moved (for the idle timeout); the connection's
    /// start while a PROXY header is awaited, which must come whole within
    /// the timeout.
    last_active: Instant,
    /// An event said the client shut down its side: from then on every
    /// turn reads to the end of stream, which raises no further event.
    read_closed: bool,
}

impl<S: Socket> Connection<S> {
    /// `proxies` is `Some` when `peer` is a listed proxy, whose connection
    /// starts with a PROXY header.
    pub(super) fn new(
        stream: S,
        peer: SocketAddr,
        proxies: Option<Arc<TcpProxies>>,
        now: Instant,
    ) -> Connection<S> {
        // Replies go out as soon as they are ready: an interactive client
        // should not wait for Nagle's algorithm to gather more.
        if let Err(err) = stream.set_nodelay() {
            debug!(%peer, "cannot set TCP_NODELAY: {err}");
        }
        Connection {
            stream,
            peer,
            client: None,
            phase: match proxies {
                Some(_) => Phase::Header { filled: 0 },
                None => Phase::Streaming,
            },
            proxies,
            input: vec![0; READ_BUFFER_LEN].into_boxed_slice(),
            reply: Vec::new(),
            owed: Owed::Nothing,
            uppercaser: StreamUppercaser::new(),
            last_active: now,
            read_closed: false,
        }
    }

    pub(super) fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Whether it has been idle for `timeout` at `now`, and if so, what it
    /// was waiting for.
    pub(super) fn idle(&self, now: Instant, timeout: Duration) -> Option<&'static str> {
        if now.saturating_duration_since(self.last_active) < timeout {
            return None;
        }
        Some(match (&self.phase, &self.owed) {
            (Phase::Header { .. }, _) => "waiting for the PROXY header",
            (_, Owed::Input(_) | Owed::Reply(_)) => "the client read nothing",
            (Phase::Streaming, Owed::Nothing) => "waiting for input",
            (Phase::Finishing, Owed::Nothing) => "closing",
        })
    }

    /// Does all the socket allows now: sends what is owed, then reads,
    /// uppercases and sends until the socket has nothing more to give or
    /// cannot take more. `read_closed`: the event said the client has shut
    /// down its side, so a short read does not mean its input is drained.
    pub(super) fn on_ready(&mut self, now: Instant, read_closed: bool, live: &TcpLive) -> Step {
        self.read_closed |= read_closed;
        let mut full_reads = 0;
        loop {
            // Looked at here, not in the call: most turns owe nothing.
            if !matches!(self.owed, Owed::Nothing) {
                match self.send_owed(now, live) {
                    Ok(true) => {}
                    Ok(false) => return Step::Wait,
                    Err(err) => return Step::Ended(Ended::Failed(err)),
                }
            }
            if let Phase::Finishing = self.phase {
                return Step::Ended(match self.stream.shutdown_write() {
                    Ok(()) => Ended::Done,
                    Err(err) => Ended::Failed(err),
                });
            }
            if full_reads == READS_PER_TURN {
                return Step::Yield;
            }
            let free = match self.phase {
                Phase::Header { filled } => self.input.get_mut(filled..).unwrap_or_default(),
                _ => &mut self.input[..],
            };
            let room = free.len();
            let read = match self.stream.read(free) {
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(err) => return Step::Ended(Ended::Failed(err)),
            };
            let taken = match self.phase {
                Phase::Header { filled } => self.take_header(filled, read, live),
                _ => {
                    self.last_active = now;
                    self.take_stream(read, live);
                    Ok(())
                }
            };
            if let Err(ended) = taken {
                return Step::Ended(ended);
            }
            if read == room {
                full_reads += 1;
            } else if read > 0 && !self.read_closed && SHORT_READ_DRAINS {
                // The receive queue is empty: new data raises a new event,
                // so the read to WouldBlock is saved (after sending).
                return match self.send_owed(now, live) {
                    Ok(_) => Step::Wait,
                    Err(err) => Step::Ended(Ended::Failed(err)),
                };
            }
        }
    }

    /// The uppercase of `input[..read]` becomes what is owed; 0 bytes is the
    /// client's end of stream.
    fn take_stream(&mut self, read: usize, live: &TcpLive) {
        if read == 0 {
            self.reply.clear();
            self.uppercaser.finish(&mut self.reply);
            self.owed = Owed::Reply(0..self.reply.len());
            self.phase = Phase::Finishing;
            return;
        }
        bump(&live.bytes_in, read);
        // ASCII (all a line-based client sends, most often) is uppercased in
        // place and written from the input, as the C reference does: no
        // validation, no copy. Anything else, or a character held back from
        // the last read, goes through the uppercaser; an ASCII prefix
        // already uppercased here is its own uppercase there.
        let piece = &mut self.input[..read];
        if self.uppercaser.pending() == 0
            && upcase_proto::uppercase_ascii_prefix_in_place(piece) == read
        {
            self.owed = Owed::Input(0..read);
        } else {
            self.reply.clear();
            self.uppercaser.feed(piece, &mut self.reply);
            self.owed = Owed::Reply(0..self.reply.len());
        }
    }

    /// A listed proxy's connection read `read` more bytes after `filled`:
    /// once the header is whole, the client it names is counted and the
    /// bytes after it are the stream's first.
    fn take_header(&mut self, filled: usize, read: usize, live: &TcpLive) -> Result<(), Ended> {
        let seen = self.input.get(..filled + read).unwrap_or_default();
        if read == 0 {
            return Err(match proxy::parse(seen) {
                _ if filled == 0 => Ended::Silent,
                Parsed::Malformed(why) => Ended::NotProxied(NotProxied::Malformed(why)),
                Parsed::NoHeader | Parsed::Header(_) => Ended::NotProxied(NotProxied::Missing),
            });
        }
        let filled = filled + read;
        let header = match proxy::parse_stream(seen, self.input.len()) {
            // parse_stream decides within 107 bytes for v1 and within the
            // buffer for v2, so a full buffer is never undecided; if it
            // were, it would be no header.
            None if filled == self.input.len() => {
                return Err(Ended::NotProxied(NotProxied::Missing));
            }
            None => {
                self.phase = Phase::Header { filled };
                return Ok(());
            }
            Some(Parsed::Header(header)) => header,
            Some(Parsed::NoHeader) => return Err(Ended::NotProxied(NotProxied::Missing)),
            Some(Parsed::Malformed(why)) => {
                return Err(Ended::NotProxied(NotProxied::Malformed(why)));
            }
        };
        self.client = header.source();
        bump(
            match self.client {
                Some(_) => &live.proxy_attributed,
                None => &live.proxy_unattributed,
            },
            1,
        );
        let rest = header.len..filled;
        bump(&live.bytes_in, rest.len());
        self.phase = Phase::Streaming;
        if let Some(rest) = self.input.get(rest).filter(|r| !r.is_empty()) {
            self.reply.clear();
            self.uppercaser.feed(rest, &mut self.reply);
            self.owed = Owed::Reply(0..self.reply.len());
        }
        Ok(())
    }

    /// Sends what is owed: `true` once all is sent, `false` when the socket
    /// is full (the rest waits for a writable event, and no more is read
    /// until then: that is the backpressure).
    fn send_owed(&mut self, now: Instant, live: &TcpLive) -> io::Result<bool> {
        loop {
            let (bytes, range) = match &mut self.owed {
                Owed::Nothing => return Ok(true),
                Owed::Input(range) => (&self.input[..], range),
                Owed::Reply(range) => (&self.reply[..], range),
            };
            let Some(bytes) = bytes.get(range.clone()).filter(|b| !b.is_empty()) else {
                self.owed = Owed::Nothing;
                return Ok(true);
            };
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    bump(&live.bytes_out, written);
                    self.last_active = now;
                    if written == bytes.len() {
                        // All of it, most often: done without another look.
                        self.owed = Owed::Nothing;
                        return Ok(true);
                    }
                    range.start += written;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
    }

    /// Counts and logs how the connection ended.
    pub(super) fn report(&self, ended: Ended, live: &TcpLive) {
        let peer = self.peer;
        // Named in each line below when a PROXY header named it.
        let client = self.client.map(tracing::field::display);
        match ended {
            Ended::Done => debug!(%peer, client, "TCP connection done"),
            Ended::Silent => {
                debug!(%peer, "TCP connection from a proxy closed before it sent anything");
            }
            Ended::TimedOut(waiting) => {
                bump(&live.timed_out, 1);
                debug!(%peer, client, "TCP connection closed: idle while {waiting}");
            }
            Ended::Failed(err) => {
                bump(&live.errors, 1);
                debug!(%peer, client, "TCP connection failed: {err}");
            }
            Ended::NotProxied(why) => {
                bump(&live.proxy_malformed, 1);
                let allowed = self.proxies.as_ref().and_then(|p| {
                    let mut warnings = p.warnings.lock().unwrap_or_else(PoisonError::into_inner);
                    warnings.allow(Instant::now())
                });
                if let Some(suppressed) = allowed {
                    warn!(
                        "a TCP connection from the proxy {peer} is closed unanswered: {why}{}",
                        suppressed_note(suppressed)
                    );
                }
            }
        }
    }
}

/// Whether a read shorter than asked may end a turn. mio promises a new
/// event only once a read has seen WouldBlock; Linux's epoll reports every
/// arrival on an edge-triggered socket (the C reference relies on it), so
/// there a short read, which emptied the receive queue, saves the extra
/// read to WouldBlock. Elsewhere every turn reads to WouldBlock.
const SHORT_READ_DRAINS: bool = cfg!(any(target_os = "linux", target_os = "android"));
