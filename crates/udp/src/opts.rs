//! Socket options for fast UDP, set on any socket (std or socket2).
//!
//! socket2 sets what it knows (`SO_RCVBUF`; `SO_REUSEPORT` and
//! `SO_BUSY_POLL` are there for callers that need them); what it lacks,
//! `UDP_GRO` and `SO_RCVBUFFORCE`, is one `setsockopt` of an `int` here.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use socket2::SockRef;

pub use crate::limits::MAX_GSO_SEGMENTS;

/// Turns on UDP GRO: trains of datagrams from one sender may then arrive as
/// one buffer, with their segment size in [`crate::Meta::segment_size`].
/// Receive slots must then be large (64 KiB) to hold a whole train.
pub fn enable_gro(socket: &impl AsFd) -> io::Result<()> {
    set_int(socket, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether UDP GRO is on for `socket`.
pub fn gro_enabled(socket: &impl AsFd) -> io::Result<bool> {
    get_int(socket, libc::SOL_UDP, libc::UDP_GRO).map(|on| on != 0)
}

/// Asks for a receive buffer of `bytes` and returns what the kernel granted,
/// as it reports it (twice the usable size, by its bookkeeping). Beyond
/// `net.core.rmem_max`, tries `SO_RCVBUFFORCE`, which needs CAP_NET_ADMIN.
pub fn set_recv_buffer(socket: &impl AsFd, bytes: usize) -> io::Result<usize> {
    let request = bytes.min(libc::c_int::MAX as usize);
    let sock = SockRef::from(socket);
    sock.set_recv_buffer_size(request)?;
    let granted = sock.recv_buffer_size()?;
    // Linux reads back twice what it granted: less than twice the request
    // means net.core.rmem_max cut it.
    if granted / 2 >= request {
        return Ok(granted);
    }
    // Without the capability this fails with EPERM: keep what we have. The
    // request fits a c_int: it was capped above.
    match set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, request as _) {
        Ok(()) => sock.recv_buffer_size(),
        Err(_) => Ok(granted),
    }
}

/// The receive buffer size the kernel reports.
pub fn recv_buffer(socket: &impl AsFd) -> io::Result<usize> {
    SockRef::from(socket).recv_buffer_size()
}

fn set_int(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: the option value is a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get_int(socket: &impl AsFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let fd = socket.as_fd().as_raw_fd();
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live locals; len holds value's size, and the
    // kernel writes at most that many bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    /// `net.core.rmem_max`: the most `SO_RCVBUF` grants on its own.
    fn rmem_max() -> usize {
        let text = std::fs::read_to_string("/proc/sys/net/core/rmem_max").expect("rmem_max");
        text.trim().parse().expect("a number")
    }

    /// Whether this process may go beyond it (CAP_NET_ADMIN).
    fn may_force() -> bool {
        set_int(&socket(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4096).is_ok()
    }

    #[test]
    fn a_buffer_within_rmem_max_is_granted_as_asked() {
        let request = rmem_max().min(256 * 1024);
        let socket = socket();
        let granted = set_recv_buffer(&socket, request).expect("SO_RCVBUF");
        assert_eq!(granted, 2 * request, "Linux reports twice the request");
        assert_eq!(recv_buffer(&socket).expect("read back"), granted);
    }

    #[test]
    fn beyond_rmem_max_the_buffer_is_forced_when_allowed() {
        let request = 2 * rmem_max();
        let socket = socket();
        let granted = set_recv_buffer(&socket, request).expect("SO_RCVBUF");
        if may_force() {
            assert_eq!(granted, 2 * request, "SO_RCVBUFFORCE went past rmem_max");
        } else {
            assert_eq!(granted, 2 * rmem_max(), "capped, and the EPERM swallowed");
        }
        assert_eq!(recv_buffer(&socket).expect("read back"), granted);
        // A request beyond a c_int is capped, not wrapped to a small one.
        let granted = set_recv_buffer(&socket, usize::MAX).expect("SO_RCVBUF");
        assert!(granted >= 2 * rmem_max(), "granted {granted}");
    }

    #[test]
    fn gro_is_off_until_enabled() {
        let socket = socket();
        assert!(!gro_enabled(&socket).expect("read UDP_GRO"));
        enable_gro(&socket).expect("UDP_GRO");
        assert!(gro_enabled(&socket).expect("read UDP_GRO"));
    }
}
