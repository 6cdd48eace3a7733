//! The portable path: one datagram per system call, on socket2, the same
//! code on every system (Linux, macOS, FreeBSD, Windows).
//!
//! A receive is socket2's `recv_from_vectored`, which is `recvmsg` on Unix
//! (the kernel's `MSG_TRUNC` says a datagram was cut) and `WSARecvFrom` on
//! Windows (where a cut datagram fails with `WSAEMSGSIZE`, which socket2
//! turns into the same flag). Not waiting is `MSG_DONTWAIT` on Unix; Windows
//! has no such flag, so there a zero-timeout `WSAPoll` asks first. A send is
//! `sendto` (or `send` on a connected socket), a GSO train one datagram per
//! segment.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use socket2::{MaybeUninitSlice, SockAddr};

use crate::slots::{Meta, segments};
use crate::socket::{OsSocket, sock_ref};

/// The receive flag that makes one call not wait.
#[cfg(unix)]
const DONT_WAIT: libc::c_int = libc::MSG_DONTWAIT;

/// Windows has no such flag: [`recv`] polls first instead.
#[cfg(windows)]
const DONT_WAIT: i32 = 0;

/// Receives one datagram into `slot`: with `wait`, waits for it (up to the
/// socket's SO_RCVTIMEO, then an error of kind `WouldBlock` or `TimedOut`);
/// without, takes one only if one is already queued (`Ok(None)` if not).
/// Returns its length in the slot (at most the slot's) and its [`Meta`].
///
/// On Windows, when several threads receive on one socket, a datagram the
/// poll saw may be taken by another thread first; this receive then waits
/// like a waiting one (up to SO_RCVTIMEO).
pub(crate) fn recv(
    socket: &impl OsSocket,
    slot: &mut [u8],
    wait: bool,
) -> io::Result<Option<(usize, Meta)>> {
    #[cfg(windows)]
    if !wait && !crate::wait::readable_now(socket)? {
        return Ok(None);
    }
    let capacity = slot.len();
    // SAFETY: MaybeUninit<u8> has the layout of u8, so the cast keeps the
    // slice's length and alignment; the receive only writes bytes into it
    // (it never writes an uninitialised one), so the slot's bytes stay
    // initialised, as `&mut [u8]` requires once the borrow ends.
    let buffer = unsafe { &mut *(std::ptr::from_mut(slot) as *mut [MaybeUninit<u8>]) };
    let flags = if wait { 0 } else { DONT_WAIT };
    let received =
        sock_ref(socket).recv_from_vectored_with_flags(&mut [MaybeUninitSlice::new(buffer)], flags);
    match received {
        Ok((len, flags, from)) => {
            let truncated = flags.is_truncated();
            // A cut datagram fills the slot. Windows says so only with
            // WSAEMSGSIZE and leaves the byte count unset (0, from socket2).
            let len = if truncated {
                capacity
            } else {
                len.min(capacity)
            };
            Ok(Some((len, Meta::single(from.as_socket(), truncated))))
        }
        Err(e) if !wait && e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends `bytes` to `peer` (`None` on a connected socket): one datagram, or
/// with `segment_size` each segment as its own datagram, in order, as a GSO
/// send would have the kernel split them. A signal retries the datagram it
/// interrupted; the first other error ends the send (a train's later
/// segments are not tried: to the same peer, they would fail the same way).
pub(crate) fn send(
    socket: &impl OsSocket,
    peer: Option<SocketAddr>,
    bytes: &[u8],
    segment_size: Option<u16>,
) -> io::Result<()> {
    let sock = sock_ref(socket);
    let peer = peer.map(SockAddr::from);
    for datagram in segments(bytes, segment_size) {
        loop {
            let sent = match &peer {
                Some(peer) => sock.send_to(datagram, peer),
                None => sock.send(datagram),
            };
            match sent {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
