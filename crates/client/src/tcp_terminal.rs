//! `--tcp` for a person at a terminal: the line editor's prompt before each
//! line, as over UDP, and the next prompt only once the line's reply is in,
//! so that a reply never prints over what is being typed.
//!
//! Three threads: the person's (the line editor), the connection's reader
//! (prints what comes back and counts its newlines: the transform maps each
//! `\n` to one `\n`, so a line is answered when its newline is back), and
//! this one, which sends each line and judges silence by `--timeout` as the
//! piped client does. The server closing the connection while the person
//! sits at the prompt is its idle timeout: the client says so in plain
//! words and gives the terminal back as it was.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::args::Config;
use crate::input::{Line, Lines};
use crate::resolve::Resolver;
use crate::tcp::{CHUNK_LEN, lost, newlines, open, print};

/// What the other two threads tell this one.
enum Event {
    /// A line typed, without its newline.
    Line(Vec<u8>),
    /// Ctrl-D: no more lines.
    InputEnd,
    InputFailed(anyhow::Error),
    /// Bytes of the reply came and were printed, with this many newlines.
    Received(u64),
    /// The server ended the stream.
    Closed,
    ReceiveFailed(anyhow::Error),
}

/// Talks to the server over TCP, a line from `lines` at a time, printing
/// the replies to `output` as they stream back.
pub(crate) fn run(
    config: &Config,
    resolver: &impl Resolver,
    lines: impl Lines + Send + 'static,
    output: impl Write + Send + 'static,
) -> anyhow::Result<()> {
    let (stream, peer) = open(config, resolver)?;
    let terminal = lines.terminal();
    let (events, event) = mpsc::channel();
    let (prompt, prompts) = mpsc::channel::<()>();
    // Not scoped: a thread blocked reading the terminal or the connection
    // must not keep the program alive once the session has ended.
    spawn("tcp-lines", {
        let events = events.clone();
        move || read_lines(lines, &prompts, &events)
    })?;
    spawn("tcp-receive", {
        let stream = stream.try_clone().context("cannot clone the TCP socket")?;
        move || receive(stream, peer, output, &events)
    })?;

    let mut owed = 0u64; // lines sent whose reply is not all back
    let mut quiet_since = Instant::now();
    let mut prompting = prompt.send(()).is_ok();
    let mut input_done = false;
    loop {
        let next = if owed > 0 || input_done {
            let left = config.timeout.saturating_sub(quiet_since.elapsed());
            match event.recv_timeout(left) {
                Ok(next) => next,
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "no reply from {peer} within {} (TCP)",
                    humantime::format_duration(config.timeout)
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the session's threads ended"),
            }
        } else {
            event.recv().context("the session's threads ended")?
        };
        match next {
            Event::Line(mut line) => {
                prompting = false;
                line.push(b'\n');
                (&stream)
                    .write_all(&line)
                    .map_err(|err| lost(err, peer, "send to"))?;
                owed += 1;
                quiet_since = Instant::now();
            }
            Event::Received(lines) => {
                owed = owed.saturating_sub(lines);
                quiet_since = Instant::now();
                if owed == 0 && !input_done && !prompting {
                    prompting = prompt.send(()).is_ok();
                }
            }
            Event::InputEnd => {
                prompting = false;
                input_done = true;
                quiet_since = Instant::now();
                stream
                    .shutdown(Shutdown::Write)
                    .map_err(|err| lost(err, peer, "end the stream to"))?;
            }
            Event::InputFailed(err) => return Err(err),
            Event::Closed if input_done => return Ok(()),
            Event::Closed if owed > 0 => {
                bail!("{peer} closed the connection before answering the last line")
            }
            Event::Closed => {
                let idle = quiet_since.elapsed();
                if let Some(terminal) = terminal.filter(|_| prompting) {
                    terminal.restore();
                }
                bail!(
                    "{peer} closed the connection after {:.1} s without a line from this client \
                     (the server's idle timeout); run the client again to go on",
                    idle.as_secs_f64()
                )
            }
            Event::ReceiveFailed(err) => {
                if let Some(terminal) = terminal.filter(|_| prompting) {
                    terminal.restore();
                }
                return Err(err);
            }
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map(drop)
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Reads a line each time `prompts` says to, until the input ends.
fn read_lines(mut lines: impl Lines, prompts: &mpsc::Receiver<()>, events: &mpsc::Sender<Event>) {
    let mut line = Vec::new();
    // A line over TCP has no datagram to fit in.
    let no_limit = usize::MAX / 2;
    while prompts.recv().is_ok() {
        let (event, last) = match lines.next_line(&mut line, no_limit) {
            Ok(Line::Read | Line::TooLong) => (Event::Line(std::mem::take(&mut line)), false),
            Ok(Line::End) => (Event::InputEnd, true),
            Err(err) => (Event::InputFailed(err), true),
        };
        if events.send(event).is_err() || last {
            return;
        }
    }
}

/// Prints what the server sends as it comes, until it ends the stream.
fn receive(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut output: impl Write,
    events: &mpsc::Sender<Event>,
) {
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut printing = true;
    loop {
        let event = match stream.read(&mut buf) {
            Ok(0) => Event::Closed,
            Ok(read) => {
                let chunk = &buf[..read];
                // A closed output (`| head -1`) stops the printing only.
                match printing.then(|| print(&mut output, chunk)) {
                    Some(Err(err)) => Event::ReceiveFailed(err),
                    Some(Ok(open)) => {
                        printing = open;
                        Event::Received(newlines(chunk))
                    }
                    None => Event::Received(newlines(chunk)),
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => Event::ReceiveFailed(lost(err, peer, "receive from")),
        };
        let last = !matches!(event, Event::Received(_));
        if events.send(event).is_err() || last {
            return;
        }
    }
}
