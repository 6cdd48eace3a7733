//! Socket options for fast UDP, set on any socket (std or socket2).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::OnceLock;

/// `SOL_UDP`, the option level of UDP (the protocol number, 17).
pub const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` (Linux 4.18): the GSO segment size of a send, as a socket
/// option or as a control message of one send.
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (Linux 5.0): deliver trains of datagrams as one coalesced buffer.
pub const UDP_GRO: libc::c_int = 104;
/// `SO_BUSY_POLL`: microseconds to busy-poll the device queue on a blocking receive.
pub const SO_BUSY_POLL: libc::c_int = 46;
/// The most datagrams one GSO send may carry on every kernel with GSO
/// (`UDP_MAX_SEGMENTS` is 64 before Linux 6.x, 128 after).
pub const MAX_GSO_SEGMENTS: usize = 64;

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

/// Turns on UDP GRO: trains of datagrams from one sender may then arrive as
/// one buffer, with their segment size in [`crate::Meta::segment_size`].
/// Receive slots must then be large (64 KiB) to hold a whole train.
pub fn enable_gro(socket: &impl AsFd) -> io::Result<()> {
    set_int(socket, SOL_UDP, UDP_GRO, 1)
}

/// Whether UDP GRO is on for `socket`.
pub fn gro_enabled(socket: &impl AsFd) -> io::Result<bool> {
    get_int(socket, SOL_UDP, UDP_GRO).map(|on| on != 0)
}

/// `SO_REUSEPORT`: several sockets may bind the same port and the kernel
/// spreads datagrams over them. Must be set before `bind`, so on a socket2
/// socket rather than a bound std one.
pub fn set_reuse_port(socket: &impl AsFd, on: bool) -> io::Result<()> {
    set_int(
        socket,
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        libc::c_int::from(on),
    )
}

/// Asks for a receive buffer of `bytes` and returns what the kernel granted,
/// as it reports it (twice the usable size, by its bookkeeping). Beyond
/// `net.core.rmem_max`, tries `SO_RCVBUFFORCE`, which needs CAP_NET_ADMIN.
pub fn set_recv_buffer(socket: &impl AsFd, bytes: usize) -> io::Result<usize> {
    set_buffer(socket, bytes, libc::SO_RCVBUF, libc::SO_RCVBUFFORCE)
}

/// Asks for a send buffer of `bytes` and returns what the kernel granted;
/// see [`set_recv_buffer`].
pub fn set_send_buffer(socket: &impl AsFd, bytes: usize) -> io::Result<usize> {
    set_buffer(socket, bytes, libc::SO_SNDBUF, libc::SO_SNDBUFFORCE)
}

fn set_buffer(
    socket: &impl AsFd,
    bytes: usize,
    name: libc::c_int,
    force: libc::c_int,
) -> io::Result<usize> {
    let request = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(socket, libc::SOL_SOCKET, name, request)?;
    let mut granted = get_int(socket, libc::SOL_SOCKET, name)?;
    // Linux reads back twice what it granted: less than twice the request
    // means net.core.[rw]mem_max cut it.
    if granted / 2 < request {
        // Without the capability this fails with EPERM: keep what we have.
        if set_int(socket, libc::SOL_SOCKET, force, request).is_ok() {
            granted = get_int(socket, libc::SOL_SOCKET, name)?;
        }
    }
    Ok(usize::try_from(granted).unwrap_or(0))
}

/// The receive buffer size the kernel reports.
pub fn recv_buffer(socket: &impl AsFd) -> io::Result<usize> {
    get_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| usize::try_from(v).unwrap_or(0))
}

/// The send buffer size the kernel reports.
pub fn send_buffer(socket: &impl AsFd) -> io::Result<usize> {
    get_int(socket, libc::SOL_SOCKET, libc::SO_SNDBUF).map(|v| usize::try_from(v).unwrap_or(0))
}

/// `SO_BUSY_POLL`: a blocking receive polls the device for `micros` before
/// sleeping. It helps with real NICs; over loopback spinning in user space
/// (non-blocking receives in a loop) is what removes the wake-up cost.
pub fn set_busy_poll(socket: &impl AsFd, micros: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(micros).unwrap_or(libc::c_int::MAX);
    set_int(socket, libc::SOL_SOCKET, SO_BUSY_POLL, value)
}

/// Whether this kernel sends UDP GSO trains: tried once per process by
/// sending a two-segment train to a socket of our own on 127.0.0.1.
pub fn gso_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| probe_gso().is_ok())
}

fn probe_gso() -> io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let me = socket.local_addr()?;
    let mut batch = crate::SendBatch::new(1);
    let mut queue = batch.queue(&socket);
    queue.push(Some(me), b"gsogso", Some(3))?;
    let report = queue.finish()?;
    match report.first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
