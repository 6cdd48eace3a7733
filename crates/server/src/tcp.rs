//! The same service over TCP, the textbook's other half: a client connects,
//! sends a stream of bytes, and reads back their uppercase on the same
//! connection until it shuts down its sending side.
//!
//! **Why tokio, not a thread per connection.** A TCP connection lives as
//! long as its client wants, and most of that time it waits: for a typist, a
//! slow network, a reader that has stopped reading. A thread per connection
//! spends a stack and a kernel thread on each of those waits, and thousands of
//! them mean thousands of threads to schedule. Tokio's tasks wait for almost
//! nothing (a few hundred bytes of task state plus the buffers below), one
//! small pool of threads runs them all, and a task only runs when its socket
//! is ready, so a slow or stuck client never holds up another. The runtime
//! lives inside [`serve_tcp`], on the caller's thread plus a pool of one
//! worker per core; the UDP workers are unaffected by it.
//!
//! **Limits.**
//! - At most [`TcpLimits::max_connections`] connections are served at once.
//!   One more is accepted and closed at once with a reset (counted
//!   `refused_over_limit`), so its client gets a clear "connection reset"
//!   instead of waiting in the kernel's queue for a slot that may never come.
//! - A client that sends nothing for [`TcpLimits::idle_timeout`] is closed
//!   (counted `timed_out`); so is one that reads nothing of its reply for as
//!   long (a write that makes no progress for `idle_timeout`).
//! - Backpressure: a connection reads at most [`READ_BUFFER_LEN`] bytes, and
//!   writes all of their uppercase before it reads again. A client that sends
//!   without reading fills the socket buffers, after which the server stops
//!   reading from it, so it cannot make the server buffer without bound.
//!
//! **Memory per connection**: the 16 KiB read buffer, plus the reply to one
//! read, which uppercase makes at most 3 times as long (`ΐ`, 2 bytes, becomes
//! 3 characters, 6 bytes), so at most 48 KiB + 3 bytes, held in a vector of
//! at most 64 KiB capacity; plus the task itself, under 1 KiB. About 81 KiB
//! at most, 16 KiB for an idle connection, whatever the client sends; the
//! kernel's socket buffers come on top and are the kernel's to bound.
//!
//! **Behind a proxy** (`--proxy-protocol-from`): a connection from a listed
//! peer must start with a PROXY header (v1, as nginx sends, or v2), read
//! before anything is uppercased: at most 107 bytes for v1, the
//! read buffer (16 KiB) for v2, all of it within `idle_timeout` of the
//! connection's start. Its client is counted (`proxy_attributed`) and named
//! in the connection's log lines; a connection without a valid header is
//! closed unanswered and counted (`proxy_malformed`). TCP has no rate
//! limit, so the client is not charged anything. The bytes read after the
//! header are the stream's first.
//!
//! **Stopping.** [`serve_tcp`] checks its stop flag every 100 ms; once set,
//! it closes the listener, gives running connections [`TcpLimits::grace`]
//! (`--stop-grace`) to finish, then closes the rest (counted
//! `closed_at_stop`).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::{debug, warn};
use upcase_proto::StreamUppercaser;
use upcase_proto::proxy::{self, Malformed, Parsed};

use crate::config::{ProxySources, TcpLimits};
use crate::warn_limit::{WarnLimiter, suppressed_note};

/// How much a connection reads at once, and so the most it holds of a
/// client's input.
const READ_BUFFER_LEN: usize = 16 * 1024;

/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How long the accept loop rests after the system ran out of descriptors or
/// memory, so it does not spin while none is freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the TCP service did, over its whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpCounters {
    /// Connections served (not counting those refused).
    pub(crate) accepted: u64,
    /// Connections reset at once because `max_connections` were open.
    pub(crate) refused_over_limit: u64,
    /// Connections closed because they stayed idle for `idle_timeout`.
    pub(crate) timed_out: u64,
    /// Bytes read from clients.
    pub(crate) bytes_in: u64,
    /// Bytes written to clients.
    pub(crate) bytes_out: u64,
    /// Connections that ended in an error (a reset, say), and failed accepts.
    pub(crate) errors: u64,
    /// Connections still open after the grace period, closed by the stop.
    pub(crate) closed_at_stop: u64,
    /// Connections open now (a gauge for the metrics; not in the summary,
    /// where it is always 0).
    pub(crate) open: u64,
    /// Connections from listed proxies whose header named a client.
    pub(crate) proxy_attributed: u64,
    /// Connections from listed proxies whose header named no one (v2
    /// `LOCAL`, v1 `UNKNOWN`): the proxy's own.
    pub(crate) proxy_unattributed: u64,
    /// Connections from listed proxies closed for not starting with a
    /// valid header.
    pub(crate) proxy_malformed: u64,
}

impl TcpCounters {
    /// The fields the server appends to its summary line, each after a space:
    /// ` tcp_accepted=N tcp_refused=N tcp_timed_out=N tcp_bytes_in=N
    /// tcp_bytes_out=N tcp_errors=N tcp_closed_at_stop=N`.
    pub(crate) fn summary_fields(&self) -> String {
        format!(
            " tcp_accepted={} tcp_refused={} tcp_timed_out={} tcp_bytes_in={} tcp_bytes_out={} tcp_errors={} tcp_closed_at_stop={}",
            self.accepted,
            self.refused_over_limit,
            self.timed_out,
            self.bytes_in,
            self.bytes_out,
            self.errors,
            self.closed_at_stop
        )
    }

    /// The fields added after those with `--proxy-protocol-from`:
    /// ` tcp_proxy_attributed=N tcp_proxy_unattributed=N tcp_proxy_malformed=N`.
    pub(crate) fn proxy_fields(&self) -> String {
        format!(
            " tcp_proxy_attributed={} tcp_proxy_unattributed={} tcp_proxy_malformed={}",
            self.proxy_attributed, self.proxy_unattributed, self.proxy_malformed
        )
    }
}

/// The counters while the service runs, shared by every connection's task
/// and readable at any time.
#[derive(Debug, Default)]
pub(crate) struct TcpLive {
    accepted: AtomicU64,
    refused_over_limit: AtomicU64,
    timed_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    errors: AtomicU64,
    closed_at_stop: AtomicU64,
    open: AtomicU64,
    proxy_attributed: AtomicU64,
    proxy_unattributed: AtomicU64,
    proxy_malformed: AtomicU64,
}

/// One connection counted open for as long as it lives: its task holds it,
/// so a task ended by the stop (dropped) is counted closed too.
struct OpenConnection(Arc<TcpLive>);

impl OpenConnection {
    fn new(live: &Arc<TcpLive>) -> OpenConnection {
        bump(&live.open, 1);
        OpenConnection(Arc::clone(live))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Ordering::Relaxed);
}

impl TcpLive {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> TcpCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpCounters {
            accepted: get(&self.accepted),
            refused_over_limit: get(&self.refused_over_limit),
            timed_out: get(&self.timed_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            errors: get(&self.errors),
            closed_at_stop: get(&self.closed_at_stop),
            open: get(&self.open),
            proxy_attributed: get(&self.proxy_attributed),
            proxy_unattributed: get(&self.proxy_unattributed),
            proxy_malformed: get(&self.proxy_malformed),
        }
    }
}

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
}

/// Serves connections from `listeners` (one, or several inherited) on
/// `threads` threads until `stop` is set, counting in `live`, then lets
/// running connections finish for `limits.grace` and closes the rest; reads
/// a PROXY header first from the peers `proxies` lists. Blocks: the caller
/// runs it on a thread of its own (not inside a tokio runtime). `Err` only
/// when the service cannot start.
pub(crate) fn serve_tcp(
    listeners: Vec<std::net::TcpListener>,
    limits: TcpLimits,
    threads: usize,
    proxies: Option<Arc<TcpProxies>>,
    stop: &AtomicBool,
    live: &Arc<TcpLive>,
) -> anyhow::Result<()> {
    for listener in &listeners {
        listener
            .set_nonblocking(true)
            .context("cannot make the TCP listener non-blocking")?;
    }
    // One thread: the caller's, with no work-stealing scheduler and no
    // wake-ups across threads (callgrind: a fifth fewer instructions per
    // ping request, docs/benchmarks.md).
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads).thread_name("upcase-tcp");
        builder
    };
    let runtime = builder
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the TCP runtime")?;
    runtime.block_on(async {
        let listeners = listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<io::Result<Vec<_>>>()
            .context("cannot register the TCP listener")?;
        let mut connections = accept_until_stopped(listeners, limits, proxies, stop, live).await;
        finish_within_grace(&mut connections, limits.grace, live).await;
        Ok(())
    })
}

/// The accept loop; returns the connections still running when `stop` is
/// set, after closing the listeners.
async fn accept_until_stopped(
    listeners: Vec<tokio::net::TcpListener>,
    limits: TcpLimits,
    proxies: Option<Arc<TcpProxies>>,
    stop: &AtomicBool,
    live: &Arc<TcpLive>,
) -> JoinSet<()> {
    let mut connections = JoinSet::new();
    let mut warnings = WarnLimiter::default();
    let mut tick = tokio::time::interval(STOP_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => while connections.try_join_next().is_some() {},
            accepted = accept_any(&listeners) => match accepted {
                Ok((stream, peer)) => {
                    // Finished connections leave the set only when joined:
                    // join them now, so its length is the number still open.
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= limits.max_connections {
                        refuse(&stream, peer);
                        bump(&live.refused_over_limit, 1);
                    } else {
                        bump(&live.accepted, 1);
                        let open = OpenConnection::new(live);
                        let proxies = proxies.clone().filter(|p| p.sources.lists(peer.ip()));
                        connections.spawn(serve_connection(stream, peer, limits.idle_timeout, proxies, open));
                    }
                }
                Err(err) => {
                    bump(&live.errors, 1);
                    if let Some(suppressed) = warnings.allow(Instant::now()) {
                        warn!("cannot accept a TCP connection: {err}{}", suppressed_note(suppressed));
                    }
                    if is_resource_exhaustion(&err) {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    }
    // An inherited listener stays open in the supervisor, queueing
    // connections for the next server.
    drop(listeners);
    let suppressed = warnings.take_suppressed();
    if suppressed > 0 {
        warn!("{suppressed} more TCP accept errors were not logged");
    }
    connections
}

/// The next connection on any of `listeners`.
async fn accept_any(listeners: &[tokio::net::TcpListener]) -> io::Result<(TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for listener in listeners {
            if let std::task::Poll::Ready(accepted) = listener.poll_accept(cx) {
                return std::task::Poll::Ready(accepted);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn finish_within_grace(connections: &mut JoinSet<()>, grace: Duration, live: &TcpLive) {
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        bump(&live.closed_at_stop, connections.len());
        debug!(
            "closing {} TCP connections still open after the grace period",
            connections.len()
        );
        connections.shutdown().await;
    }
}

/// Closes a connection over the limit with a reset, which its client sees
/// as an error rather than as an empty reply.
fn refuse(stream: &TcpStream, peer: SocketAddr) {
    if let Err(err) = SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        debug!(%peer, "cannot set linger on a refused TCP connection: {err}");
    }
    debug!(%peer, "TCP connection refused: too many open");
}

/// Whether an accept failed for want of descriptors or memory, which a
/// moment's pause may cure (where retrying at once would spin).
fn is_resource_exhaustion(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::OutOfMemory
        || err
            .raw_os_error()
            .is_some_and(|code| OUT_OF_RESOURCES.contains(&code))
}

/// Per system: `raw_os_error` is a WinSock code on Windows, not libc's.
#[cfg(unix)]
const OUT_OF_RESOURCES: [i32; 4] = [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
#[cfg(windows)]
const OUT_OF_RESOURCES: [i32; 2] = [
    windows_sys::Win32::Networking::WinSock::WSAEMFILE,
    windows_sys::Win32::Networking::WinSock::WSAENOBUFS,
];

/// How a connection ended other than by its client's end of stream.
enum Ended {
    TimedOut(&'static str),
    Failed(io::Error),
    /// From a listed proxy, without a valid PROXY header first.
    NotProxied(NotProxied),
}

/// Why a listed proxy's connection was not served.
enum NotProxied {
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

/// A connection's first bytes, already read: the client a PROXY header
/// named (`None`: the peer, or the proxy itself), and where in the read
/// buffer the stream's bytes after the header are.
struct Start {
    client: Option<SocketAddr>,
    pending: Range<usize>,
}

/// `proxies` is `Some` when `peer` is a listed proxy, whose connection
/// starts with a PROXY header.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    idle_timeout: Duration,
    proxies: Option<Arc<TcpProxies>>,
    open: OpenConnection,
) {
    let live = &open.0;
    // Replies go out as soon as they are ready: an interactive client
    // should not wait for Nagle's algorithm to gather more.
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%peer, "cannot set TCP_NODELAY: {err}");
    }
    let mut input = vec![0u8; READ_BUFFER_LEN];
    let start = match proxies {
        None => Ok(Some(Start {
            client: None,
            pending: 0..0,
        })),
        Some(_) => read_proxy_header(&mut stream, &mut input, idle_timeout, live).await,
    };
    let (client, served) = match start {
        Ok(Some(start)) => (
            start.client,
            uppercase_stream(&mut stream, &mut input, start.pending, idle_timeout, live).await,
        ),
        Ok(None) => {
            debug!(%peer, "TCP connection from a proxy closed before it sent anything");
            return;
        }
        Err(ended) => (None, Err(ended)),
    };
    // Named in each line below when a PROXY header named it.
    let client = client.map(tracing::field::display);
    match served {
        Ok(()) => debug!(%peer, client, "TCP connection done"),
        Err(Ended::TimedOut(waiting)) => {
            bump(&live.timed_out, 1);
            debug!(%peer, client, "TCP connection closed: idle while {waiting}");
        }
        Err(Ended::Failed(err)) => {
            bump(&live.errors, 1);
            debug!(%peer, client, "TCP connection failed: {err}");
        }
        Err(Ended::NotProxied(why)) => {
            bump(&live.proxy_malformed, 1);
            let allowed = proxies.as_ref().and_then(|p| {
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

/// Reads a listed proxy's PROXY header into `input`: the connection's
/// start, or `None` when it ended before sending anything. The whole
/// header must come within `idle_timeout`.
async fn read_proxy_header(
    stream: &mut TcpStream,
    input: &mut [u8],
    idle_timeout: Duration,
    live: &TcpLive,
) -> Result<Option<Start>, Ended> {
    let deadline = tokio::time::Instant::now() + idle_timeout;
    let mut filled = 0;
    loop {
        let seen = input.get(..filled).unwrap_or_default();
        let header = match proxy::parse_stream(seen, input.len()) {
            None => None,
            Some(Parsed::Header(header)) => Some(header),
            Some(Parsed::NoHeader) => return Err(Ended::NotProxied(NotProxied::Missing)),
            Some(Parsed::Malformed(why)) => {
                return Err(Ended::NotProxied(NotProxied::Malformed(why)));
            }
        };
        if let Some(header) = header {
            let client = header.source();
            bump(
                match client {
                    Some(_) => &live.proxy_attributed,
                    None => &live.proxy_unattributed,
                },
                1,
            );
            bump(&live.bytes_in, filled - header.len);
            return Ok(Some(Start {
                client,
                pending: header.len..filled,
            }));
        }
        // parse_stream decides within 107 bytes for v1 and within
        // `input.len()` for v2, so there is always room here.
        let free = input.get_mut(filled..).unwrap_or_default();
        if free.is_empty() {
            return Err(Ended::NotProxied(NotProxied::Missing));
        }
        let read = tokio::time::timeout_at(deadline, stream.read(free))
            .await
            .map_err(|_| Ended::TimedOut("waiting for the PROXY header"))?
            .map_err(Ended::Failed)?;
        if read == 0 {
            return match proxy::parse(input.get(..filled).unwrap_or_default()) {
                _ if filled == 0 => Ok(None),
                Parsed::Malformed(why) => Err(Ended::NotProxied(NotProxied::Malformed(why))),
                Parsed::NoHeader | Parsed::Header(_) => Err(Ended::NotProxied(NotProxied::Missing)),
            };
        }
        filled += read;
    }
}

/// A connection's idle deadline: one timer for the connection's life,
/// moved only when it fires (to the last activity plus the timeout), instead
/// of a timer made and dropped around every read and write.
struct Idle {
    timeout: Duration,
    last: tokio::time::Instant,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(timeout: Duration) -> Idle {
        let now = tokio::time::Instant::now();
        Idle {
            timeout,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Something moved on the connection.
    fn touch(&mut self) {
        self.last = tokio::time::Instant::now();
    }

    /// Resolves once nothing has moved for the whole timeout.
    async fn expired(&mut self) {
        loop {
            self.sleep.as_mut().await;
            let deadline = self.last + self.timeout;
            if deadline <= tokio::time::Instant::now() {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// Reads, uppercases and writes back until the client's end of stream, then
/// sends the rest and ends the server's side too; `pending` are bytes of
/// the stream `input` already holds.
async fn uppercase_stream(
    stream: &mut TcpStream,
    input: &mut [u8],
    pending: Range<usize>,
    idle_timeout: Duration,
    live: &TcpLive,
) -> Result<(), Ended> {
    let mut reply = Vec::new();
    let mut uppercaser = StreamUppercaser::new();
    let mut idle = Idle::new(idle_timeout);
    if let Some(pending) = input.get(pending).filter(|p| !p.is_empty()) {
        uppercaser.feed(pending, &mut reply);
        write_all(stream, &reply, &mut idle, live).await?;
    }
    loop {
        let read = tokio::select! {
            biased;
            read = stream.read(input) => read.map_err(Ended::Failed)?,
            () = idle.expired() => return Err(Ended::TimedOut("waiting for input")),
        };
        idle.touch();
        if read == 0 {
            break;
        }
        bump(&live.bytes_in, read);
        // ASCII (all a line-based client sends, most often) is uppercased in
        // place and written from the input, as the C reference does: no
        // validation, no copy. Anything else, or a character held back from
        // the last read, goes through the uppercaser; an ASCII prefix
        // already uppercased here is its own uppercase there.
        let piece = &mut input[..read];
        if uppercaser.pending() == 0 && upcase_proto::uppercase_ascii_prefix_in_place(piece) == read
        {
            write_all(stream, piece, &mut idle, live).await?;
        } else {
            reply.clear();
            uppercaser.feed(piece, &mut reply);
            write_all(stream, &reply, &mut idle, live).await?;
        }
    }
    reply.clear();
    uppercaser.finish(&mut reply);
    write_all(stream, &reply, &mut idle, live).await?;
    tokio::select! {
        biased;
        shut = stream.shutdown() => shut.map_err(Ended::Failed),
        () = idle.expired() => Err(Ended::TimedOut("closing")),
    }
}

/// Writes all of `bytes`; the timeout is on progress, so a slow reader is
/// served as long as it keeps taking something.
async fn write_all(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    idle: &mut Idle,
    live: &TcpLive,
) -> Result<(), Ended> {
    while !bytes.is_empty() {
        let written = tokio::select! {
            biased;
            written = stream.write(bytes) => written.map_err(Ended::Failed)?,
            () = idle.expired() => return Err(Ended::TimedOut("the client read nothing")),
        };
        idle.touch();
        if written == 0 {
            return Err(Ended::Failed(io::ErrorKind::WriteZero.into()));
        }
        bump(&live.bytes_out, written);
        bytes = &bytes[written..];
    }
    Ok(())
}

#[cfg(test)]
mod tests;
