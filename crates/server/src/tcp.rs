//! The same service over TCP, the textbook's other half: a client connects,
//! sends a stream of bytes, and reads back their uppercase on the same
//! connection until it shuts down its sending side.
//!
//! **Why an event loop of its own.** A TCP connection lives as long as its
//! client wants, and most of that time it waits: for a typist, a slow
//! network, a reader that has stopped reading. A thread per connection
//! spends a stack and a kernel thread on each of those waits. Here each of
//! `--threads` threads runs one loop over a readiness poll (`mio`: epoll on
//! Linux, kqueue on the BSDs and macOS, AFD on Windows), and a connection is
//! a plain struct ([`connection`]) that does what its socket allows each
//! time it is ready, so a slow or stuck client never holds up another. This
//! replaced tokio: its scheduler, wakers and timers cost about 7 times the C
//! reference's user-space instructions per ping request (callgrind,
//! docs/benchmarks.md), for nothing this service needs, since a connection
//! never waits for anything but its own socket.
//!
//! **Threads and listeners.** The server has one listener per address
//! (`binding.rs`, without `SO_REUSEPORT`), possibly inherited from systemd,
//! which cannot be multiplied. So each loop registers its own `try_clone`
//! of every listener and accepts from all of them: the kernel wakes every
//! loop for a new connection, one wins it, and the others see WouldBlock.
//! That costs a wake-up per loop per connection, nothing per message, and
//! needs nothing per system; a listener per thread with `SO_REUSEPORT`
//! would spread connections better but not for inherited sockets. A
//! connection stays on the loop that accepted it.
//!
//! **A turn** (as the C reference, `../shared/anchors/tcp_server.c`):
//! connections are registered once, edge-triggered, for both directions.
//! A ready connection first sends what it still owes; then it reads into
//! its buffer, uppercases, and sends at once, until a read finds nothing
//! (or, on Linux, comes back short: epoll raises a new event for new data),
//! the socket cannot take more (the rest waits for a writable event, and
//! nothing is read until then), or it has read
//! [`connection::READS_PER_TURN`] full buffers: then it waits until the
//! other ready connections had their turn.
//!
//! **Limits.**
//! - At most [`TcpLimits::max_connections`] connections are served at once.
//!   One more is accepted and closed at once with a reset (counted
//!   `refused_over_limit`), so its client gets a clear "connection reset"
//!   instead of waiting in the kernel's queue for a slot that may never come.
//!   The limit is over all threads (one shared count).
//! - A client that sends nothing for [`TcpLimits::idle_timeout`] is closed
//!   (counted `timed_out`); so is one that reads nothing of its reply for as
//!   long (a write that makes no progress for `idle_timeout`). Each loop
//!   sweeps its connections' last-activity times every 100 ms, so a
//!   timeout fires up to 100 ms late.
//! - Backpressure: a connection reads at most
//!   [`connection::READ_BUFFER_LEN`] bytes, and writes all of their
//!   uppercase before it reads again. A client that sends without reading
//!   fills the socket buffers, after which the server stops reading from it,
//!   so it cannot make the server buffer without bound.
//!
//! **Memory per connection**: the 16 KiB read buffer, plus the reply to one
//! read, which uppercase makes at most 3 times as long (`ΐ`, 2 bytes, becomes
//! 3 characters, 6 bytes), so at most 48 KiB + 3 bytes, held in a vector of
//! at most 64 KiB capacity; plus the connection's state, under 1 KiB. About
//! 81 KiB at most, 16 KiB for an idle connection, whatever the client
//! sends; the kernel's socket buffers come on top and are the kernel's to
//! bound.
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
//! **Stopping.** Each loop checks the stop flag every 100 ms; once set, it
//! closes its listeners, gives running connections [`TcpLimits::grace`]
//! (`--stop-grace`) to finish, then closes the rest (counted
//! `closed_at_stop`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Context;

use crate::config::TcpLimits;

mod connection;
mod event_loop;
mod live;

pub(crate) use connection::TcpProxies;
use event_loop::{EventLoop, Shared};
pub(crate) use live::{TcpCounters, TcpLive};

/// Serves connections from `listeners` (one, or several inherited) on
/// `threads` threads until `stop` is set, counting in `live`, then lets
/// running connections finish for `limits.grace` and closes the rest; reads
/// a PROXY header first from the peers `proxies` lists. Blocks, running one
/// loop on the caller's thread. `Err` when the service cannot start, or a
/// loop cannot wait for its sockets.
pub(crate) fn serve_tcp(
    listeners: Vec<std::net::TcpListener>,
    limits: TcpLimits,
    threads: usize,
    proxies: Option<Arc<TcpProxies>>,
    stop: &AtomicBool,
    live: &Arc<TcpLive>,
) -> anyhow::Result<()> {
    let mut loops = Vec::with_capacity(threads.max(1));
    for _ in 1..threads.max(1) {
        let copies = listeners
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .context("cannot share the TCP listener between threads")?;
        loops.push(EventLoop::new(copies).context("cannot start a TCP event loop")?);
    }
    loops.push(EventLoop::new(listeners).context("cannot start a TCP event loop")?);
    let shared = Shared {
        limits,
        proxies,
        stop,
        abort: AtomicBool::new(false),
        live,
        admitted: AtomicUsize::new(0),
    };
    let shared = &shared;
    std::thread::scope(|scope| {
        let mine = loops.pop();
        let mut others = Vec::with_capacity(loops.len());
        for event_loop in loops {
            let spawned = std::thread::Builder::new()
                .name("upcase-tcp".to_string())
                .spawn_scoped(scope, move || event_loop.run(shared));
            match spawned {
                Ok(thread) => others.push(thread),
                Err(err) => {
                    // The loops already running end with this one.
                    shared.abort.store(true, Ordering::Relaxed);
                    return Err(err).context("cannot start a TCP thread");
                }
            }
        }
        let mut result = match mine {
            Some(event_loop) => event_loop.run(shared).context("the TCP event loop failed"),
            None => Ok(()),
        };
        if result.is_err() {
            // The service is failing: the other loops end too, rather than
            // serve on until the stop while this one waits for them.
            shared.abort.store(true, Ordering::Relaxed);
        }
        for thread in others {
            let ended = match thread.join() {
                Ok(ended) => ended.context("a TCP event loop failed"),
                Err(_) => Err(anyhow::anyhow!("a TCP event loop panicked")),
            };
            result = result.and(ended);
        }
        result
    })
}

#[cfg(test)]
mod tests;
