//! One client session: each message out on a socket of its own, its reply
//! back, printed; the next server address while none has answered yet.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail};
use tracing::{debug, warn};
use upcase_proto::reply::ReplyMatcher;
use upcase_proto::{Family, RECV_BUFFER_LEN, uppercased_len};

use crate::args::Config;
use crate::input::{Line, Lines, PROMPT};
use crate::link::{Link, Wait};
use crate::pick::Pick;
use crate::route::{Miss, Route};

/// Whether printing went through; a closed output (`| head -1`) ends the
/// session quietly, as the reader wants nothing more.
#[derive(Debug, PartialEq, Eq)]
enum Printed {
    Yes,
    OutputClosed,
}

/// Where the reply to a message is, once one came.
pub(crate) enum Reply {
    /// The exact uppercase, this long, in the receive buffer.
    Exact(usize),
    /// Another reply, the best of the try, in the [`Pick`].
    Differing,
}

impl Reply {
    fn bytes<'a>(&self, buf: &'a [u8], pick: &'a Pick) -> &'a [u8] {
        match self {
            Reply::Exact(len) => &buf[..*len],
            Reply::Differing => pick.held().unwrap_or_default(),
        }
    }
}

pub(crate) struct Session<'c, W> {
    config: &'c Config,
    route: Route,
    matcher: ReplyMatcher,
    pick: Pick,
    buf: Vec<u8>,
    output: W,
}

impl<'c, W: Write> Session<'c, W> {
    pub(crate) fn new(config: &'c Config, addrs: Vec<SocketAddr>, output: W) -> Self {
        Session {
            config,
            route: Route::new(addrs),
            matcher: ReplyMatcher::default(),
            pick: Pick::new(),
            buf: vec![0; RECV_BUFFER_LEN],
            output,
        }
    }

    /// Sends the configured message, or every line of `lines`, printing each
    /// reply on its own line; with `prompt`, the textbook's prompt before
    /// each line (the line editor prints its own).
    ///
    /// A line that cannot be sent (it, or its reply, does not fit in one
    /// datagram) is skipped with a warning and the others still go; the
    /// session then ends in an error that says so, for a non-zero exit.
    pub(crate) fn run(&mut self, lines: &mut impl Lines, prompt: bool) -> anyhow::Result<()> {
        if let Some(message) = &self.config.message {
            self.exchange(message)?;
            return Ok(());
        }
        let mut line = Vec::new();
        let mut skipped = Skipped::default();
        for number in 1u64.. {
            if prompt && self.print(PROMPT, false)? == Printed::OutputClosed {
                break;
            }
            let family = self.family();
            let why = match lines.next_line(&mut line, family.max_payload())? {
                Line::End => break,
                Line::TooLong => Unsendable(format!(
                    "message is longer than the largest UDP datagram over {} ({} bytes)",
                    family.name(),
                    family.max_payload()
                )),
                Line::Read => match self.exchange(&line) {
                    Ok(Printed::Yes) => continue,
                    Ok(Printed::OutputClosed) => break,
                    Err(err) => err.downcast::<Unsendable>()?,
                },
            };
            warn!("line {number} not sent: {why}");
            skipped.add(number, why);
        }
        skipped.into_result()
    }

    /// The family of the address in use, which bounds the message size.
    fn family(&self) -> Family {
        self.route.current().map_or(Family::V4, Family::of)
    }

    /// Sends one message and prints its reply, moving on to the next server
    /// address while none has answered yet.
    fn exchange(&mut self, message: &[u8]) -> anyhow::Result<Printed> {
        let (peer, reply) = self.ask(message)?;
        if matches!(reply, Reply::Differing) {
            warn!(
                "the reply from {peer} is not the uppercase of the message as this client computes it"
            );
        }
        let Session {
            buf, pick, output, ..
        } = self;
        print_line(output, reply.bytes(buf, pick), true)
    }

    /// Sends one message until an address answers it, moving on to the next
    /// server address while none has answered yet; which address answered,
    /// and where its reply is. The health probe's exchange too.
    pub(crate) fn ask(&mut self, message: &[u8]) -> anyhow::Result<(SocketAddr, Reply)> {
        self.matcher.start(message);
        loop {
            let peer = self.route.current().context("no server address to try")?;
            check_size(message, Family::of(peer))?;
            // The socket lives for this message only: whatever is sent to it
            // after this is dropped by the kernel once it is closed.
            let outcome = match Link::open(peer) {
                Ok(link) => self.try_link(&link, message)?,
                Err(unreachable) => Err(Miss::Unreachable(unreachable)),
            };
            match outcome {
                Ok(reply) => {
                    self.route.answered();
                    return Ok((peer, reply));
                }
                Err(miss) => {
                    let next = self
                        .route
                        .missed(miss, self.config.tries(), self.config.timeout)?;
                    debug!("trying the next server address, {next}");
                }
            }
        }
    }

    /// The bytes of `reply`, as [`Session::ask`] left them.
    pub(crate) fn reply_bytes(&self, reply: &Reply) -> &[u8] {
        reply.bytes(&self.buf, &self.pick)
    }

    /// Sends `message` on `link` up to `tries` times; where its reply is, or
    /// why this address gave none.
    fn try_link(&mut self, link: &Link, message: &[u8]) -> anyhow::Result<Result<Reply, Miss>> {
        let Session {
            config,
            matcher,
            pick,
            buf,
            ..
        } = self;
        let tries = config.tries();
        for attempt in 1..=tries {
            if let Err(e) = link.send(message) {
                return match miss_of(e) {
                    Ok(miss) => Ok(Err(miss)),
                    Err(e) => Err(e).with_context(|| format!("cannot send to {}", link.peer)),
                };
            }
            debug!(
                "sent {} bytes to {} (try {attempt} of {tries})",
                message.len(),
                link.peer
            );
            pick.clear();
            let wait = link.wait(matcher, pick, buf, Instant::now() + config.timeout)?;
            if pick.others() > 0 {
                debug!(
                    "{} datagrams from {} were neither this message's reply nor a late one",
                    pick.others(),
                    link.peer
                );
            }
            match wait {
                Wait::Exact(len) => return Ok(Ok(Reply::Exact(len))),
                Wait::Held => return Ok(Ok(Reply::Differing)),
                Wait::Refused => return Ok(Err(Miss::Refused)),
                Wait::Timeout => debug!("no reply from {} within {:?}", link.peer, config.timeout),
            }
        }
        Ok(Err(Miss::Silent))
    }

    fn print(&mut self, bytes: &[u8], newline: bool) -> anyhow::Result<Printed> {
        print_line(&mut self.output, bytes, newline)
    }
}

/// A send error that says the address is not usable, as opposed to a local
/// failure that ends the session.
fn miss_of(e: io::Error) -> Result<Miss, io::Error> {
    use io::ErrorKind::*;
    if upcase_udp::is_port_unreachable(&e) {
        return Ok(Miss::Refused);
    }
    match e.kind() {
        NetworkUnreachable | HostUnreachable | AddrNotAvailable => Ok(Miss::Unreachable(e)),
        _ => Err(e),
    }
}

/// Why a message cannot be sent: it, or its reply, does not fit in one
/// datagram. A line of input that is refused so is skipped; the others go.
#[derive(Debug)]
pub struct Unsendable(String);

impl std::fmt::Display for Unsendable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsendable {}

/// The lines of input skipped as unsendable: how many, and the first.
#[derive(Default)]
struct Skipped {
    count: u64,
    first: Option<(u64, Unsendable)>,
}

impl Skipped {
    fn add(&mut self, number: u64, why: Unsendable) {
        self.count += 1;
        self.first.get_or_insert((number, why));
    }

    /// An error naming the first skipped line when any was skipped.
    fn into_result(self) -> anyhow::Result<()> {
        match self.first {
            None => Ok(()),
            Some((number, why)) if self.count == 1 => {
                bail!("line {number} was not sent: {why}")
            }
            Some((number, why)) => bail!(
                "{} lines were not sent; the first, line {number}: {why}",
                self.count
            ),
        }
    }
}

/// Refuses a message that cannot travel as one datagram, or whose reply
/// could not, before anything is sent.
pub fn check_size(message: &[u8], family: Family) -> Result<(), Unsendable> {
    let limit = family.max_payload();
    if message.len() > limit {
        return Err(Unsendable(format!(
            "message is {} bytes, more than the largest UDP datagram over {} ({limit} bytes)",
            message.len(),
            family.name()
        )));
    }
    let reply_len = uppercased_len(message);
    if reply_len > limit {
        return Err(Unsendable(format!(
            "the reply to this {}-byte message would be {reply_len} bytes, more than the largest UDP datagram over {} ({limit} bytes), so the server could not send it",
            message.len(),
            family.name()
        )));
    }
    Ok(())
}

/// Writes `bytes` as they are (replies need not be UTF-8), then flushes so a
/// person sees each reply as it comes.
fn print_line(output: &mut impl Write, bytes: &[u8], newline: bool) -> anyhow::Result<Printed> {
    let written = output
        .write_all(bytes)
        .and_then(|()| {
            if newline {
                output.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| output.flush());
    match written {
        Ok(()) => Ok(Printed::Yes),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            debug!("standard output is closed; stopping");
            Ok(Printed::OutputClosed)
        }
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_per_family() {
        assert!(check_size(&vec![b'a'; 65_507], Family::V4).is_ok());
        let err = check_size(&vec![b'a'; 65_508], Family::V4).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "message is 65508 bytes, more than the largest UDP datagram over IPv4 (65507 bytes)"
        );
        assert!(check_size(&vec![b'a'; 65_527], Family::V6).is_ok());
        assert!(check_size(&vec![b'a'; 65_528], Family::V6).is_err());
    }

    #[test]
    fn a_message_whose_reply_cannot_fit_is_refused() {
        // U+0149 is two bytes; its uppercase, U+02BC U+004E, is three.
        let mut message = "\u{149}".as_bytes().to_vec();
        message.resize(65_507, b'a');
        let err = check_size(&message, Family::V4).expect_err("reply too long");
        assert_eq!(
            err.to_string(),
            "the reply to this 65507-byte message would be 65508 bytes, more than the largest UDP datagram over IPv4 (65507 bytes), so the server could not send it"
        );
        assert!(check_size(&message, Family::V6).is_ok());
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().expect("addr");
        assert_eq!(Family::of(mapped), Family::V4);
        assert_eq!(Family::of("[::1]:5".parse().expect("addr")), Family::V6);
        assert_eq!(Family::of("127.0.0.1:5".parse().expect("addr")), Family::V4);
    }

    #[test]
    fn a_closed_output_stops_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert_eq!(
            print_line(&mut Closed, b"x", true).expect("quiet"),
            Printed::OutputClosed
        );
        let mut out = Vec::new();
        assert_eq!(
            print_line(&mut out, b"\xffA", true).expect("ok"),
            Printed::Yes
        );
        assert_eq!(out, b"\xffA\n");
    }
}
