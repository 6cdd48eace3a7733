//! The metrics endpoint, `--metrics ADDR:PORT`: `GET /metrics` answers the
//! counters so far in the Prometheus text format (`exposition`), read from
//! the workers' live blocks at each scrape, so serving a scrape costs the
//! datagram path nothing.
//!
//! A minimal HTTP/1.x responder on threads of its own, so that nothing a
//! scraper does reaches the UDP workers or the TCP service's loops: one
//! thread accepts, and each scrape gets a thread for its exchange (blocking
//! std sockets with timeouts: a scrape every few seconds needs no event
//! loop, and no async runtime for one).
//! - at most [`MAX_SCRAPES`] connections at once; one more is closed at once;
//! - a request head of at most [`MAX_HEAD`] bytes (431 past it), read and
//!   answered within [`EXCHANGE_LIMIT`] or the connection is closed, so a
//!   connection that sends nothing holds a slot for that long at most;
//! - one request per connection (`Connection: close`); `GET` and `HEAD` of
//!   `/metrics` (a query string is ignored) get 200, other paths 404, other
//!   methods 405, anything that is not an HTTP/1 request line 400.
//!
//! It serves until the process exits, so a scrape during the stop's drain
//! sees the counts grow to the summary's.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{debug, info};

use crate::binding::listen_tcp;
use crate::exposition::{self, CONTENT_TYPE};
use crate::serving::Live;

/// Scrapes served at once. Prometheus scrapes one at a time; a few more
/// leave room for a person with curl.
const MAX_SCRAPES: usize = 8;

/// The longest request head read; the request line and headers of any
/// scraper fit in far less.
const MAX_HEAD: usize = 8 * 1024;

/// How long one connection may take to send its request and take the reply.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(5);

/// How long the accept loop rests after an accept error, so it never spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The metrics listener, bound (so the ready line can name it), not yet
/// serving.
#[derive(Debug)]
pub(crate) struct MetricsEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsEndpoint {
    /// Listens on `addr` (port 0: the system chooses).
    pub(crate) fn bind(addr: SocketAddr) -> anyhow::Result<MetricsEndpoint> {
        let listener =
            listen_tcp(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the metrics address")?;
        Ok(MetricsEndpoint { listener, addr })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes of `live` on a thread of its own until the process
    /// exits.
    pub(crate) fn serve(self, live: Live) -> anyhow::Result<()> {
        let MetricsEndpoint { listener, addr } = self;
        thread::Builder::new()
            .name("metrics".to_string())
            .spawn(move || accept(&listener, &live))
            .context("cannot start the metrics thread")?;
        info!("serving metrics at http://{addr}/metrics");
        Ok(())
    }
}

/// A scrape under way, counted for as long as its thread holds it (or, if
/// the thread never starts, until the closure that owns it is dropped).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept(listener: &TcpListener, live: &Live) {
    let scrapes = Arc::new(AtomicUsize::new(0));
    loop {
        match listener.accept() {
            // Only this thread adds to the count, so the check holds.
            Ok((stream, peer)) if scrapes.load(Ordering::Relaxed) >= MAX_SCRAPES => {
                debug!(%peer, "metrics connection closed: {MAX_SCRAPES} scrapes under way");
                drop(stream);
            }
            Ok((stream, peer)) => {
                scrapes.fetch_add(1, Ordering::Relaxed);
                let slot = Slot(Arc::clone(&scrapes));
                let live = live.clone();
                let scrape = move || {
                    let _slot = slot;
                    if let Err(err) = exchange(stream, &live) {
                        debug!(%peer, "metrics connection closed: {err}");
                    }
                };
                if let Err(err) = thread::Builder::new()
                    .name("metrics-scrape".to_string())
                    .spawn(scrape)
                {
                    debug!(%peer, "metrics connection closed: no thread for it: {err}");
                }
            }
            Err(err) => {
                debug!("cannot accept a metrics connection: {err}");
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Reads one request head and writes its response, all within
/// [`EXCHANGE_LIMIT`].
fn exchange(mut stream: TcpStream, live: &Live) -> io::Result<()> {
    let deadline = Instant::now() + EXCHANGE_LIMIT;
    // Each blocking call may wait only for what is left of the limit.
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "too slow"))
    };
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let response = loop {
        stream.set_read_timeout(Some(left()?))?;
        let read = stream.read(&mut buf)?;
        if read == 0 {
            // Gone before a whole request: nothing to answer.
            return Ok(());
        }
        head.extend_from_slice(&buf[..read]);
        if let Some(end) = head_end(&head) {
            break respond(&head[..end], || {
                exposition::render(&live.totals(), live.serves_udp(), upcase_cli::VERSION)
            });
        }
        if head.len() > MAX_HEAD {
            break status_only(431, "Request Header Fields Too Large");
        }
    };
    stream.set_write_timeout(Some(left()?))?;
    stream.write_all(&response)?;
    stream.shutdown(Shutdown::Write)?;
    // What the client still sends (the rest of a refused head) is read and
    // dropped, a little of it: closing with unread input would reset the
    // connection, and the client could lose the response.
    let mut unread = MAX_HEAD * 4;
    while unread > 0 {
        let Ok(timeout) = left() else { break };
        stream.set_read_timeout(Some(timeout))?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(read) => unread = unread.saturating_sub(read),
        }
    }
    Ok(())
}

/// Where the head ends (after its blank line), if it has.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    crlf.into_iter().chain(lf).min()
}

/// The whole response to the request `head`; `body` renders the metrics,
/// called only when they are asked for.
fn respond(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return status_only(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return status_only(400, "Bad Request");
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = body();
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if method == "GET" {
                response.extend_from_slice(body.as_bytes());
            }
            response
        }
        ("GET" | "HEAD", _) => status_only(404, "Not Found"),
        _ => status_only(405, "Method Not Allowed"),
    }
}

/// A response with a one-line text body that says what went wrong.
fn status_only(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}: upcase-server serves GET /metrics\n");
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(response: &[u8]) -> String {
        let text = String::from_utf8_lossy(response);
        text.lines().next().unwrap_or_default().to_string()
    }

    fn answer(head: &str) -> String {
        String::from_utf8(respond(head.as_bytes(), || "metrics\n".to_string())).expect("text")
    }

    /// A whole `GET /metrics` exchange; empty when the server closed the
    /// connection without answering (or reset it, having read nothing).
    fn get(addr: SocketAddr) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).expect("connect to the metrics");
        stream
            .set_read_timeout(Some(upcase_e2e::PATIENCE))
            .expect("read timeout");
        let mut response = Vec::new();
        let exchanged = stream
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .and_then(|()| stream.read_to_end(&mut response));
        match exchanged {
            Ok(_) => response,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => panic!("no answer, no close"),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn one_scrape_over_the_limit_is_closed_at_once_and_an_ended_one_frees_its_slot() {
        let endpoint = MetricsEndpoint::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = endpoint.addr();
        endpoint.serve(Live::default()).expect("serve");
        assert!(get(addr).starts_with(b"HTTP/1.1 200 OK\r\n"));
        let mut silent: Vec<TcpStream> = (0..MAX_SCRAPES)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // Each GET is answered until the accept thread has taken all the
        // silent ones, which then hold every slot.
        upcase_e2e::wait_until("a scrape over the limit is closed unanswered", || {
            get(addr).is_empty()
        });
        drop(silent.pop());
        upcase_e2e::wait_until("the slot of a connection that ended is free again", || {
            get(addr).starts_with(b"HTTP/1.1 200 OK\r\n")
        });
    }

    #[test]
    fn metrics_are_served_at_their_path_only() {
        let ok = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{ok}"
        );
        assert!(ok.contains("\r\nContent-Length: 8\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nmetrics\n"), "{ok}");
        assert!(answer("GET /metrics?x=1 HTTP/1.0\n\n").starts_with("HTTP/1.1 200 "));
        let head = answer("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.contains("Content-Length: 8\r\n") && head.ends_with("\r\n\r\n"));
        assert_eq!(
            status(answer("GET / HTTP/1.1\r\n\r\n").as_bytes()),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(answer("GET /metricsx HTTP/1.1\r\n\r\n").as_bytes()),
            "HTTP/1.1 404 Not Found"
        );
    }

    #[test]
    fn other_methods_and_garbage_are_refused_without_rendering() {
        let never = || -> String { panic!("rendered for a refused request") };
        let post = respond(b"POST /metrics HTTP/1.1\r\n\r\n", never);
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(String::from_utf8_lossy(&post).contains("Allow: GET, HEAD\r\n"));
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SMTP/1.0\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\r\n\r\n",
        ] {
            let never = || -> String { panic!("rendered for {garbage:?}") };
            assert_eq!(
                status(&respond(garbage, never)),
                "HTTP/1.1 400 Bad Request",
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn the_head_ends_at_its_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        let big = status_only(431, "Request Header Fields Too Large");
        assert_eq!(status(&big), "HTTP/1.1 431 Request Header Fields Too Large");
    }
}
