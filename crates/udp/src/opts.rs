//! Socket options for UDP servers, set on any socket (std or socket2), the
//! same call on every system; where a system lacks an option, the function
//! says so (`ErrorKind::Unsupported`) or, where nothing needs doing there,
//! does nothing.
//!
//! socket2 sets what it knows (`SO_RCVBUF`, `SO_REUSEPORT`,
//! `SO_REUSEPORT_LB`); what it lacks is one system call here: Linux's
//! `UDP_GRO` and `SO_RCVBUFFORCE` (a `setsockopt` of an `int`), Windows'
//! `SIO_UDP_CONNRESET`/`SIO_UDP_NETRESET` (`WSAIoctl`) and
//! `SO_EXCLUSIVEADDRUSE`.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;

use crate::socket::{OsSocket, sock_ref};

pub use crate::limits::MAX_GSO_SEGMENTS;

/// Whether this system can spread the datagrams for one port across
/// several sockets bound to it, one per thread: Linux (`SO_REUSEPORT`,
/// by a hash of the sender) and FreeBSD (`SO_REUSEPORT_LB`). Elsewhere
/// (macOS, Windows) one socket must serve every thread, or one thread.
pub const BALANCED_REUSE_PORT: bool = cfg!(any(target_os = "linux", target_os = "freebsd"));

#[cfg(not(target_os = "linux"))]
fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what)
}

/// Turns on UDP GRO: trains of datagrams from one sender may then arrive as
/// one buffer, with their segment size in [`crate::Meta::segment_size`].
/// Receive slots must then be large (64 KiB) to hold a whole train, and the
/// socket must be read by the batched path ([`crate::Io::enable_gro`] checks
/// that): the portable path cannot see the segment size. Linux only;
/// elsewhere an error of kind `Unsupported`.
pub fn enable_gro(socket: &impl OsSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return set_int(socket, libc::SOL_UDP, libc::UDP_GRO, 1);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Err(unsupported("UDP GRO is Linux's"))
    }
}

/// Whether UDP GRO is on for `socket` (never, off Linux).
pub fn gro_enabled(socket: &impl OsSocket) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    return get_int(socket, libc::SOL_UDP, libc::UDP_GRO).map(|on| on != 0);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Ok(false)
    }
}

/// Asks for a receive buffer of `bytes` and returns what the system
/// granted, as it reports it. Linux reports twice the usable size (its
/// bookkeeping) and caps a request at `net.core.rmem_max`; beyond that it
/// tries `SO_RCVBUFFORCE`, which needs CAP_NET_ADMIN. macOS and FreeBSD
/// refuse a request over their limit instead of capping it: there the
/// request is halved until it is taken, or the buffer is left as it was.
pub fn set_recv_buffer(socket: &impl OsSocket, bytes: usize) -> io::Result<usize> {
    let request = bytes.min(i32::MAX as usize);
    let sock = sock_ref(socket);
    #[cfg(target_os = "linux")]
    {
        sock.set_recv_buffer_size(request)?;
        let granted = sock.recv_buffer_size()?;
        // Linux reads back twice what it granted: less than twice the request
        // means net.core.rmem_max cut it.
        if granted / 2 >= request {
            return Ok(granted);
        }
        // Without the capability this fails with EPERM: keep what we have.
        // The request fits a c_int: it was capped above.
        match set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, request as _) {
            Ok(()) => sock.recv_buffer_size(),
            Err(_) => Ok(granted),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let before = sock.recv_buffer_size()?;
        let mut request = request;
        loop {
            match sock.set_recv_buffer_size(request) {
                Ok(()) => return sock.recv_buffer_size(),
                Err(_) if request / 2 > before => request /= 2,
                Err(_) => return Ok(before),
            }
        }
    }
}

/// The receive buffer size the system reports.
pub fn recv_buffer(socket: &impl OsSocket) -> io::Result<usize> {
    sock_ref(socket).recv_buffer_size()
}

/// Lets `socket` share its port with other sockets that do the same, the
/// system spreading incoming datagrams across them (see
/// [`BALANCED_REUSE_PORT`]): `SO_REUSEPORT` on Linux, `SO_REUSEPORT_LB` on
/// FreeBSD (whose plain `SO_REUSEPORT` would deliver to one socket only).
/// Set before binding. Elsewhere an error of kind `Unsupported`: macOS's
/// `SO_REUSEPORT` does not spread unicast datagrams, and Windows has no
/// such option.
pub fn set_reuse_port_balanced(socket: &impl OsSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return sock_ref(socket).set_reuse_port(true);
    #[cfg(target_os = "freebsd")]
    return sock_ref(socket).set_reuse_port_lb(true);
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        let _ = socket;
        Err(unsupported(
            "no option here spreads one port's datagrams across sockets \
             (Linux has SO_REUSEPORT, FreeBSD SO_REUSEPORT_LB)",
        ))
    }
}

/// Stops an ICMP error that a reply brought back (port unreachable: the
/// peer's socket is gone; time exceeded) from failing this unconnected
/// socket's next receive. Windows reports them there, as `WSAECONNRESET`
/// and `WSAENETRESET`; this turns the first off (`SIO_UDP_CONNRESET`), and
/// the second where the system knows how (`SIO_UDP_NETRESET`: Wine 8, for
/// one, refuses it with `WSAEOPNOTSUPP`). Unix reports ICMP errors only on
/// connected sockets, so there is nothing to do there. Either way a receive
/// error of that kind is [`crate::RecvErrorClass::Transient`].
pub fn ignore_port_unreachable(socket: &impl OsSocket) -> io::Result<()> {
    #[cfg(windows)]
    {
        use windows_sys::Win32::Networking::WinSock::{SIO_UDP_CONNRESET, SIO_UDP_NETRESET};
        ioctl_off(socket, SIO_UDP_CONNRESET)?;
        // Best effort: a time-exceeded error left on is transient anyway.
        let _ = ioctl_off(socket, SIO_UDP_NETRESET);
        Ok(())
    }
    #[cfg(not(windows))]
    {
        let _ = socket;
        Ok(())
    }
}

/// Makes a bind fail with "address in use" while another socket holds the
/// port, whatever options that socket set. Windows lets a socket with
/// `SO_REUSEADDR` bind a port another socket already has (and take its
/// datagrams) unless the first set `SO_EXCLUSIVEADDRUSE`, which this does;
/// set it before binding. Unix already refuses a busy port unless both
/// sockets asked to share it, so there is nothing to do there.
pub fn set_exclusive_address_use(socket: &impl OsSocket) -> io::Result<()> {
    #[cfg(windows)]
    {
        use windows_sys::Win32::Networking::WinSock::{
            SO_EXCLUSIVEADDRUSE, SOL_SOCKET, WSAGetLastError, setsockopt,
        };
        let on: i32 = 1;
        // SAFETY: the option value is a live BOOL (an i32) and its exact
        // size is passed; the socket is borrowed, so open.
        let rc = unsafe {
            setsockopt(
                crate::socket::raw(socket),
                SOL_SOCKET,
                SO_EXCLUSIVEADDRUSE,
                (&raw const on).cast(),
                size_of::<i32>() as i32,
            )
        };
        if rc != 0 {
            // SAFETY: WSAGetLastError has no preconditions.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        Ok(())
    }
    #[cfg(not(windows))]
    {
        let _ = socket;
        Ok(())
    }
}

/// A `WSAIoctl` that turns a BOOL setting off.
#[cfg(windows)]
fn ioctl_off(socket: &impl OsSocket, code: u32) -> io::Result<()> {
    use windows_sys::Win32::Networking::WinSock::{WSAGetLastError, WSAIoctl};
    let off: u32 = 0;
    let mut returned: u32 = 0;
    // SAFETY: the input is a live 4-byte BOOL and its exact size; there is
    // no output buffer (null, length 0); `returned` is a live local; no
    // OVERLAPPED and no completion routine make it a plain synchronous
    // call. The socket is borrowed, so open.
    let rc = unsafe {
        WSAIoctl(
            crate::socket::raw(socket),
            code,
            (&raw const off).cast(),
            size_of::<u32>() as u32,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc != 0 {
        // SAFETY: WSAGetLastError has no preconditions.
        return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn set_int(
    socket: &impl OsSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let fd = crate::socket::raw(socket);
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

#[cfg(target_os = "linux")]
fn get_int(
    socket: &impl OsSocket,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let fd = crate::socket::raw(socket);
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

    #[test]
    fn a_buffer_is_granted_and_read_back() {
        let socket = socket();
        let granted = set_recv_buffer(&socket, 64 * 1024).expect("SO_RCVBUF");
        assert!(granted >= 64 * 1024, "granted {granted}");
        assert_eq!(recv_buffer(&socket).expect("read back"), granted);
        // A request beyond a c_int (or the system's limit) is capped, not
        // wrapped to a small one.
        let granted = set_recv_buffer(&socket, usize::MAX).expect("SO_RCVBUF");
        assert!(granted >= 64 * 1024, "granted {granted}");
    }

    #[test]
    fn what_each_system_lacks_is_said_or_needs_nothing() {
        let socket = socket();
        let gro = enable_gro(&socket);
        assert_eq!(gro.is_ok(), cfg!(target_os = "linux"), "{gro:?}");
        let balanced = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("socket");
        let set = set_reuse_port_balanced(&balanced);
        assert_eq!(set.is_ok(), BALANCED_REUSE_PORT, "{set:?}");
        if let Err(e) = set {
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        }
        ignore_port_unreachable(&socket).expect("SIO_UDP_CONNRESET, or nothing to do");
        set_exclusive_address_use(&balanced).expect("SO_EXCLUSIVEADDRUSE, or nothing to do");
    }

    /// Two sockets asking for balanced sharing both bind one port where the
    /// system spreads datagrams across them.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    #[test]
    fn balanced_sockets_share_a_port() {
        let open = || {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )
            .expect("socket");
            set_reuse_port_balanced(&s).expect("balanced reuse");
            s
        };
        let first = open();
        first
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .expect("bind");
        let port = first.local_addr().unwrap();
        open().bind(&port).expect("a second socket joins the port");
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use super::*;

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
}
