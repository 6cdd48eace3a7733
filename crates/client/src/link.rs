//! One line's socket: opened for the line, connected to one server address,
//! closed when the line is done, as the textbook's client has one socket
//! for its one line.
//!
//! A fresh socket per line, on a new ephemeral port, means nothing sent to
//! an earlier line's port (duplicates, late replies, a flood after the
//! answer, or datagrams forged by someone who learnt that port) can reach
//! this line: the kernel drops it, and no drain loop is needed with a budget
//! a flood could outrun. What reaches the new port was sent by someone who
//! has seen this line's request, and the junk rule of [`crate::pick`] sorts
//! that. Connecting makes the kernel drop datagrams from any other address
//! and report ICMP port unreachable as a refused connection. The cost, a
//! socket, bind and connect per line, is the few system calls the drain
//! made before each line.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

use anyhow::Context;
use tracing::debug;
use upcase_proto::reply::ReplyMatcher;

use crate::pick::{Pick, Step};

/// A socket connected to one server address, for one line.
pub(crate) struct Link {
    socket: UdpSocket,
    pub(crate) peer: SocketAddr,
}

/// What waiting out one try gave.
pub(crate) enum Wait {
    /// The exact reply, this many bytes at the start of the buffer.
    Exact(usize),
    /// No exact reply within the timeout, but other datagrams came: the
    /// best of them is in the [`Pick`].
    Held,
    /// Nothing but late replies, if anything, within the timeout.
    Timeout,
    /// ICMP port unreachable: no socket on that port.
    Refused,
}

impl Link {
    /// Binds an OS-chosen port of the peer's family and connects it to the
    /// peer.
    pub(crate) fn open(peer: SocketAddr) -> io::Result<Link> {
        let local: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        Ok(Link { socket, peer })
    }

    pub(crate) fn send(&self, message: &[u8]) -> io::Result<usize> {
        self.socket.send(message)
    }

    /// Waits until `deadline` for the exact reply `matcher` expects, reading
    /// every datagram into `buf` and offering it to `pick`. Returns early
    /// only for the exact reply or a refusal: a flood of anything else can
    /// neither make the wait longer nor end it.
    pub(crate) fn wait(
        &self,
        matcher: &ReplyMatcher,
        pick: &mut Pick,
        buf: &mut [u8],
        deadline: Instant,
    ) -> anyhow::Result<Wait> {
        let ended = |pick: &Pick, otherwise| {
            Ok(if pick.held().is_some() {
                Wait::Held
            } else {
                otherwise
            })
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return ended(pick, Wait::Timeout);
            }
            self.socket
                .set_read_timeout(Some(left))
                .context("cannot set the receive timeout")?;
            match self.socket.recv(buf) {
                Ok(len) => match pick.offer(matcher, &buf[..len]) {
                    Step::Answer => {
                        debug!("received the {len}-byte reply from {}", self.peer);
                        return Ok(Wait::Exact(len));
                    }
                    Step::Late => {
                        debug!("discarding a late {len}-byte reply to an earlier message");
                    }
                    Step::Held => {
                        debug!("a {len}-byte datagram that is not the reply: waiting on");
                    }
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return ended(pick, Wait::Timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The port closed after it sent something: that is its reply.
                Err(e) if upcase_udp::is_port_unreachable(&e) => {
                    return ended(pick, Wait::Refused);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot receive from {}", self.peer));
                }
            }
        }
    }
}
