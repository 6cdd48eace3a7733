//! One thread's event loop: a `mio::Poll` over its listeners and its
//! connections, each connection registered once, edge-triggered, for
//! reading and writing. It wakes for readiness or every [`TICK`], accepts,
//! lets each ready connection do what its socket allows, sweeps idle
//! connections, and watches the stop flag.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::SockRef;
use tracing::{debug, warn};

use super::connection::{Connection, Ended, Step, TcpProxies};
use super::live::{TcpLive, bump};
use crate::config::TcpLimits;
use crate::warn_limit::{WarnLimiter, suppressed_note};

/// The longest a loop waits for readiness: how often it looks at the stop
/// flag and sweeps idle connections (so a timeout fires up to this late).
const TICK: Duration = Duration::from_millis(100);

/// How long accepting rests after the system ran out of descriptors or
/// memory, so the loop does not spin while none is freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Readiness events taken per wake-up.
const EVENTS: usize = 256;

/// What every loop of one service shares.
pub(super) struct Shared<'a> {
    pub(super) limits: TcpLimits,
    pub(super) proxies: Option<Arc<TcpProxies>>,
    pub(super) stop: &'a AtomicBool,
    /// Set when the service could not start all its loops: the others end.
    pub(super) abort: AtomicBool,
    pub(super) live: &'a TcpLive,
    /// Connections open over all loops: `max_connections` bounds the
    /// service, not each thread.
    pub(super) admitted: AtomicUsize,
}

impl Shared<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.abort.load(Ordering::Relaxed)
    }
}

pub(super) struct EventLoop {
    poll: Poll,
    /// Emptied (and so closed) at the stop.
    listeners: Vec<TcpListener>,
    /// Indexed by token; a closed connection's slot is reused.
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    open: usize,
    /// Connections that used up their turn with input left: served again
    /// after the next poll, which then does not wait.
    yielded: Vec<usize>,
    warnings: WarnLimiter,
    /// Accepting rests until then after a shortage.
    accept_paused_until: Option<Instant>,
}

/// Listeners' tokens count down from the top, connections' up from 0.
fn listener_token(index: usize) -> Token {
    Token(usize::MAX - index)
}

impl EventLoop {
    pub(super) fn new(listeners: Vec<std::net::TcpListener>) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let mut registered = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, listener_token(index), Interest::READABLE)?;
            registered.push(listener);
        }
        Ok(EventLoop {
            poll,
            listeners: registered,
            connections: Vec::new(),
            free: Vec::new(),
            open: 0,
            yielded: Vec::new(),
            warnings: WarnLimiter::default(),
            accept_paused_until: None,
        })
    }

    /// Serves until the stop, then for the grace period, then closes the
    /// rest. `Err` only when the loop cannot wait for its sockets.
    pub(super) fn run(mut self, shared: &Shared) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        let mut turn = Vec::new();
        // A deadline compared, not a duration computed, at each wake-up.
        let mut next_sweep = Instant::now() + TICK;
        let mut stopped_at: Option<Instant> = None;
        let result = loop {
            let wait = if self.yielded.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
            // One clock reading per wake-up serves every connection in it.
            let now = Instant::now();
            std::mem::swap(&mut turn, &mut self.yielded);
            for event in &events {
                let Token(token) = event.token();
                match usize::MAX - token {
                    listener if listener < self.listeners.len() => {
                        if self.accept_paused_until.is_none() {
                            self.accept(listener, now, shared);
                        }
                    }
                    _ => self.serve(token, now, event.is_read_closed(), shared),
                }
            }
            for index in turn.drain(..) {
                self.serve(index, now, false, shared);
            }
            if self.accept_paused_until.is_some_and(|until| until <= now) {
                // Edges that came during the rest were not acted on.
                self.accept_paused_until = None;
                for listener in 0..self.listeners.len() {
                    self.accept(listener, now, shared);
                }
            }
            if now >= next_sweep {
                next_sweep = now + TICK;
                self.close_idle(now, shared);
            }
            if stopped_at.is_none() && shared.stopping() {
                stopped_at = Some(now);
                self.close_listeners();
            }
            if let Some(at) = stopped_at {
                if self.open == 0 {
                    break Ok(());
                }
                if now.duration_since(at) >= shared.limits.grace {
                    self.close_at_stop(shared);
                    break Ok(());
                }
            }
        };
        self.close_listeners();
        self.close_at_stop(shared);
        let suppressed = self.warnings.take_suppressed();
        if suppressed > 0 {
            warn!("{suppressed} more TCP accept errors were not logged");
        }
        result
    }

    /// Accepts all that wait on one listener (edge-triggered: until
    /// WouldBlock, or no new event would come for those left).
    fn accept(&mut self, listener: usize, now: Instant, shared: &Shared) {
        loop {
            let Some(socket) = self.listeners.get(listener) else {
                return;
            };
            match socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now, shared),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    bump(&shared.live.errors, 1);
                    if let Some(suppressed) = self.warnings.allow(now) {
                        let note = suppressed_note(suppressed);
                        warn!("cannot accept a TCP connection: {err}{note}");
                    }
                    if is_resource_exhaustion(&err) {
                        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant, shared: &Shared) {
        let live = shared.live;
        if shared.admitted.fetch_add(1, Ordering::Relaxed) >= shared.limits.max_connections {
            shared.admitted.fetch_sub(1, Ordering::Relaxed);
            refuse(&stream, peer);
            bump(&live.refused_over_limit, 1);
            return;
        }
        let proxies = shared.proxies.clone().filter(|p| p.lists(peer));
        let mut connection = Connection::new(stream, peer, proxies, now);
        let index = self.free.pop().unwrap_or(self.connections.len());
        // Registered once for both directions: no registry call per
        // message. Input that came with the handshake is reported by the
        // registration itself.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self
            .poll
            .registry()
            .register(connection.stream(), Token(index), interest)
        {
            shared.admitted.fetch_sub(1, Ordering::Relaxed);
            self.free.push(index);
            bump(&live.errors, 1);
            debug!(%peer, "cannot register a TCP connection: {err}");
            return;
        }
        bump(&live.accepted, 1);
        bump(&live.open, 1);
        self.open += 1;
        match self.connections.get_mut(index) {
            Some(slot) => *slot = Some(connection),
            None => self.connections.push(Some(connection)),
        }
    }

    fn serve(&mut self, index: usize, now: Instant, read_closed: bool, shared: &Shared) {
        let Some(Some(connection)) = self.connections.get_mut(index) else {
            // Closed earlier in this wake-up.
            return;
        };
        match connection.on_ready(now, read_closed, shared.live) {
            Step::Wait => {}
            Step::Yield => self.yielded.push(index),
            Step::Ended(ended) => self.close(index, ended, shared),
        }
    }

    /// Closes a connection (dropping its socket deregisters it).
    fn close(&mut self, index: usize, ended: Ended, shared: &Shared) {
        let Some(connection) = self.connections.get_mut(index).and_then(Option::take) else {
            return;
        };
        connection.report(ended, shared.live);
        self.free.push(index);
        self.open -= 1;
        shared.live.open.fetch_sub(1, Ordering::Relaxed);
        shared.admitted.fetch_sub(1, Ordering::Relaxed);
    }

    /// A sweep each [`TICK`] over last-activity times rather than a timer
    /// per connection: nothing to arm or cancel around each read and write.
    fn close_idle(&mut self, now: Instant, shared: &Shared) {
        let timeout = shared.limits.idle_timeout;
        for index in 0..self.connections.len() {
            let waiting = self
                .connections
                .get(index)
                .and_then(Option::as_ref)
                .and_then(|c| c.idle(now, timeout));
            if let Some(waiting) = waiting {
                self.close(index, Ended::TimedOut(waiting), shared);
            }
        }
    }

    /// An inherited listener stays open in the supervisor (which holds it
    /// too), queueing connections for the next server.
    fn close_listeners(&mut self) {
        for mut listener in self.listeners.drain(..) {
            // Other threads' copies keep the socket open, and with it this
            // loop's registration, until they close theirs.
            if let Err(err) = self.poll.registry().deregister(&mut listener) {
                debug!("cannot deregister a TCP listener: {err}");
            }
        }
    }

    fn close_at_stop(&mut self, shared: &Shared) {
        if self.open == 0 {
            return;
        }
        bump(&shared.live.closed_at_stop, self.open);
        debug!(
            "closing {} TCP connections still open after the grace period",
            self.open
        );
        let open = self.open;
        for slot in &mut self.connections {
            *slot = None;
        }
        self.open = 0;
        self.free.clear();
        shared.live.open.fetch_sub(open as u64, Ordering::Relaxed);
        shared.admitted.fetch_sub(open, Ordering::Relaxed);
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
pub(super) fn is_resource_exhaustion(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::OutOfMemory
        || err
            .raw_os_error()
            .is_some_and(|code| OUT_OF_RESOURCES.contains(&code))
}

/// Per system: `raw_os_error` is a WinSock code on Windows, not libc's.
#[cfg(unix)]
pub(super) const OUT_OF_RESOURCES: [i32; 4] =
    [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
#[cfg(windows)]
pub(super) const OUT_OF_RESOURCES: [i32; 2] = [
    windows_sys::Win32::Networking::WinSock::WSAEMFILE,
    windows_sys::Win32::Networking::WinSock::WSAENOBUFS,
];
