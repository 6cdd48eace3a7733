//! `--tcp`: the same service over one TCP connection, the textbook's
//! TCPClient.py made dependable.
//!
//! TCP is a byte stream, not a sequence of messages, so there is nothing to
//! match a reply to: the client sends its input as it comes (each line with
//! its newline) and prints the server's bytes as they come back. Sending and
//! receiving run at once, on two threads: a client that sent a long line
//! before reading would leave the server blocked writing its reply, no
//! longer reading, and both sides would wait for ever.
//!
//! "No answer" is measured in lines: the transform maps every `\n` to exactly
//! one `\n` and makes none of its own, so while fewer newlines came back than
//! were sent (or after the input has ended) the client is owed bytes, and
//! `--timeout` without any is an error. A person who is just not typing
//! owes the server nothing, and the client waits with them.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracing::debug;

use crate::args::Config;
use crate::resolve::{Resolver, SystemResolver, server_addresses};

/// How much is sent or received at once.
pub(crate) const CHUNK_LEN: usize = 16 * 1024;

/// Sends the configured message (with a newline), or all of `input`, to the
/// server over TCP and writes every byte of the reply to `output`; ends the
/// output with a newline if the reply did not.
pub fn run(
    config: &Config,
    resolver: &impl Resolver,
    input: impl Read + Send + 'static,
    output: impl Write,
) -> anyhow::Result<()> {
    let (stream, peer) = open(config, resolver)?;
    let progress = Arc::new(Progress::new());
    let sending = {
        let stream = stream.try_clone().context("cannot clone the TCP socket")?;
        let progress = Arc::clone(&progress);
        let (done, result) = mpsc::channel();
        // Not scoped: a thread blocked reading a terminal must not keep the
        // program alive after the connection has failed.
        thread::Builder::new()
            .name("tcp-send".to_string())
            .spawn(move || {
                let sent = send_all(input, &stream, &progress, peer);
                if sent.is_err() {
                    // Wakes the receiving side, which then reports this error.
                    let _ = stream.shutdown(Shutdown::Both);
                }
                let _ = done.send(sent);
            })
            .context("cannot start the sending thread")?;
        result
    };
    let receive = Receive {
        timeout: config.timeout,
        peer,
    };
    receive.receive_all(stream, &progress, &sending, output)
}

/// The program's `--tcp`: standard input (or the MESSAGE words) and output,
/// and the system resolver.
pub fn run_cli(config: &Config) -> anyhow::Result<()> {
    let stdout = crate::output::stdout();
    match &config.message {
        Some(message) => {
            let mut line = message.clone();
            line.push(b'\n');
            run(config, &SystemResolver, io::Cursor::new(line), stdout)
        }
        None => run(config, &SystemResolver, io::stdin(), stdout),
    }
}

/// A connection to the server `config` names, and its address.
pub(crate) fn open(
    config: &Config,
    resolver: &impl Resolver,
) -> anyhow::Result<(TcpStream, SocketAddr)> {
    let addrs = server_addresses(&config.server, config.port, resolver)?;
    let stream = connect(&addrs, config.timeout)?;
    let peer = stream
        .peer_addr()
        .context("cannot read the server's address")?;
    debug!("connected over TCP to {peer}");
    // Replies should go out as soon as a line is typed, not wait for Nagle.
    if let Err(err) = stream.set_nodelay(true) {
        debug!("cannot set TCP_NODELAY: {err}");
    }
    Ok((stream, peer))
}

/// Connects to the first address that accepts, in resolver order; the error
/// names every address and why it failed.
fn connect(addrs: &[SocketAddr], timeout: Duration) -> anyhow::Result<TcpStream> {
    let mut failures = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        match upcase_load::connect::connect_tcp(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                debug!("cannot connect to {addr}: {err}");
                failures.push(format!("{addr} ({})", describe(&err, timeout)));
            }
        }
    }
    bail!("cannot connect over TCP to {}", failures.join(", "))
}

fn describe(err: &io::Error, timeout: Duration) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {}", humantime::format_duration(timeout))
        }
        _ => err.to_string(),
    }
}

/// What the sending side has done, for the receiving side to judge silence.
#[derive(Debug)]
struct Progress {
    start: Instant,
    lines_sent: AtomicU64,
    /// When the sender last started a write, in nanoseconds since `start`.
    last_sent_ns: AtomicU64,
    input_done: AtomicBool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            lines_sent: AtomicU64::new(0),
            last_sent_ns: AtomicU64::new(0),
            input_done: AtomicBool::new(false),
        }
    }

    /// Called before each write, so a write that blocks (a server that
    /// reads nothing) counts as owed bytes too.
    fn sending(&self, bytes: &[u8]) {
        self.last_sent_ns
            .store(self.elapsed_ns(Instant::now()), Ordering::Relaxed);
        self.lines_sent
            .fetch_add(newlines(bytes), Ordering::Relaxed);
    }

    fn elapsed_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn last_sent(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_sent_ns.load(Ordering::Relaxed))
    }
}

pub(crate) fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Copies `input` to the server as it comes, ends an unfinished last line
/// with a newline (so its reply is a whole line too), then shuts down the
/// sending side: the server's signal to finish.
fn send_all(
    mut input: impl Read,
    mut stream: &TcpStream,
    progress: &Progress,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut last_byte = None;
    loop {
        let read = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("cannot read standard input"),
        };
        let chunk = &buf[..read];
        progress.sending(chunk);
        stream
            .write_all(chunk)
            .map_err(|err| lost(err, peer, "send to"))?;
        last_byte = chunk.last().copied();
    }
    if last_byte.is_some_and(|b| b != b'\n') {
        progress.sending(b"\n");
        stream
            .write_all(b"\n")
            .map_err(|err| lost(err, peer, "send to"))?;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|err| lost(err, peer, "end the stream to"))?;
    progress.input_done.store(true, Ordering::Relaxed);
    debug!("input sent; waiting for the rest of the reply");
    Ok(())
}

/// A connection error: the server's doing (a reset, or a write to a
/// connection it closed) in plain words, anything else with the OS's.
pub(crate) fn lost(err: io::Error, peer: SocketAddr, doing: &str) -> anyhow::Error {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => {
            anyhow::anyhow!("the connection to {peer} was reset by the server")
        }
        _ => anyhow::Error::new(err).context(format!("cannot {doing} {peer}")),
    }
}

/// The receiving side's settings.
struct Receive {
    timeout: Duration,
    peer: SocketAddr,
}

impl Receive {
    /// Prints the reply as it comes until the server ends the stream, then
    /// makes sure the sending side ended well too.
    fn receive_all(
        &self,
        mut stream: TcpStream,
        progress: &Progress,
        sending: &mpsc::Receiver<anyhow::Result<()>>,
        mut output: impl Write,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; CHUNK_LEN];
        let mut lines_received = 0u64;
        let mut last_received = progress.start;
        let mut last_printed = None;
        let mut received_any = false;
        let mut output_open = true;
        loop {
            let owed = progress.input_done.load(Ordering::Relaxed)
                || progress.lines_sent.load(Ordering::Relaxed) > lines_received;
            let quiet_since = last_received.max(progress.last_sent());
            let wait = if owed {
                self.timeout
                    .saturating_sub(quiet_since.elapsed())
                    .max(Duration::from_millis(1))
            } else {
                self.timeout
            };
            stream
                .set_read_timeout(Some(wait))
                .context("cannot set the receive timeout")?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(read) => {
                    let chunk = &buf[..read];
                    received_any = true;
                    lines_received += newlines(chunk);
                    last_received = Instant::now();
                    if output_open {
                        output_open = print(&mut output, chunk)?;
                        last_printed = chunk.last().copied();
                    }
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if owed && quiet_since.elapsed() >= self.timeout {
                        bail!(
                            "no reply from {} within {} (TCP)",
                            self.peer,
                            humantime::format_duration(self.timeout)
                        );
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(lost(err, self.peer, "receive from")),
            }
        }
        if output_open && last_printed.is_some_and(|b| b != b'\n') {
            print(&mut output, b"\n")?;
        }
        self.sending_ended(progress, sending)?;
        // Lines went out and not one byte came back: the server (or a proxy
        // before it, such as nginx's stream module without
        // `proxy_half_close on`) ended the stream instead of answering.
        // Fewer newlines than lines is not enough to say so: the
        // textbook's TCPServer.py answers a sentence without its newline.
        if !received_any && progress.lines_sent.load(Ordering::Relaxed) > 0 {
            bail!("{} ended the connection without a reply", self.peer);
        }
        Ok(())
    }

    /// After the server's end of stream: fine if all the input went out,
    /// else the sending side's error, or the server closed too early.
    fn sending_ended(
        &self,
        progress: &Progress,
        sending: &mpsc::Receiver<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        if progress.input_done.load(Ordering::Relaxed) {
            return Ok(());
        }
        match sending.recv_timeout(self.timeout) {
            Ok(sent) => sent,
            Err(_) => bail!(
                "{} closed the connection before the end of the input",
                self.peer
            ),
        }
    }
}

/// Writes and flushes, so a person sees each reply as it comes; `false`
/// once the output is closed (`| head -1`), after which the reply is still
/// read to its end but no longer printed.
pub(crate) fn print(output: &mut impl Write, bytes: &[u8]) -> anyhow::Result<bool> {
    match output.write_all(bytes).and_then(|()| output.flush()) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
            debug!("standard output is closed; no longer printing");
            Ok(false)
        }
        Err(err) => Err(err).context("cannot write to standard output"),
    }
}

#[cfg(test)]
mod tests;
