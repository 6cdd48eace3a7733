//! Binding the server's sockets, before anything is served: the UDP
//! sockets (tuned for load) and the TCP listener, on the same address and
//! port.
//!
//! Where the system spreads one port's datagrams across sockets (Linux's
//! SO_REUSEPORT, FreeBSD's SO_REUSEPORT_LB: `opts::BALANCED_REUSE_PORT`),
//! each worker thread gets a socket of its own on the port. Elsewhere (macOS,
//! Windows) the workers share one socket, each blocking in its own receive:
//! the system hands each datagram to one of them. So `--threads` means the
//! same on every system, and the default (one thread per core) too.
//!
//! On Windows, two things differ and are set here: a socket takes the port
//! exclusively (SO_EXCLUSIVEADDRUSE), since Windows would otherwise let a
//! later SO_REUSEADDR socket bind a busy port and take its datagrams; and a
//! UDP socket ignores the ICMP port unreachable a reply to a closed port
//! brings back (SIO_UDP_CONNRESET), which would otherwise fail its next
//! receive.
//!
//! A service that speaks both transports uses the same port number for both
//! (DNS on 53, echo on 7), so a client can pick a transport without learning
//! a new address. With `--port 0` the system chooses UDP's port and TCP
//! binds the same number; if that number is taken for TCP, both are bound
//! again on a new one, a few times.
//!
//! Every interface means `[::]` with IPV6_V6ONLY off, one socket for both
//! families; on a host without IPv6, `0.0.0.0` ([`on_address`] is the one
//! place that falls back).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, info};
use upcase_udp::opts;

use crate::config::{Bind, Config, Transports};

/// How long a worker blocks in a receive before it looks at the stop flag:
/// the bound on how late it notices a stop.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Connections the kernel queues before the server accepts them.
const LISTEN_BACKLOG: i32 = 1024;

/// How many ports `--port 0` tries before it gives up finding one free for
/// both transports; another program taking the same port for TCP a few times
/// in a row is not chance.
const PORT_PAIR_ATTEMPTS: usize = 8;

/// The sockets of every transport asked for, bound, not yet serving.
#[derive(Debug)]
pub(crate) struct Bound {
    /// One per worker thread, all on one address; empty when UDP is not served.
    pub(crate) udp: Vec<UdpSocket>,
    pub(crate) tcp: Option<TcpListener>,
}

impl Bound {
    /// Binds what `config` asks for, on the same address and port, and
    /// tunes the UDP sockets.
    pub(crate) fn bind(config: &Config) -> anyhow::Result<Bound> {
        let bound = match config.transports {
            Transports {
                udp: true,
                tcp: true,
            } => bind_pair(config, listen_tcp)?,
            Transports {
                udp: true,
                tcp: false,
            } => Bound {
                udp: bind_udp(config.bind, config.port, config.threads)?,
                tcp: None,
            },
            Transports {
                udp: false,
                tcp: true,
            } => Bound {
                udp: Vec::new(),
                tcp: Some(bind_tcp(config.bind, config.port)?),
            },
            Transports {
                udp: false,
                tcp: false,
            } => anyhow::bail!("no transport to serve"),
        };
        crate::tuning::tune(&bound.udp, &config.udp)?;
        Ok(bound)
    }

    /// The UDP address, when UDP is served.
    #[cfg(test)]
    pub(crate) fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.first().and_then(|s| s.local_addr().ok())
    }

    /// The TCP address, when TCP is served.
    #[cfg(test)]
    pub(crate) fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// UDP first, then TCP on the address and port UDP got. With port 0, a port
/// that turns out to be taken for TCP means binding both again. The TCP
/// step is given, so that a test can take the port from under it.
fn bind_pair(
    config: &Config,
    mut listen: impl FnMut(SocketAddr) -> io::Result<TcpListener>,
) -> anyhow::Result<Bound> {
    let mut attempt = 1;
    loop {
        let udp = bind_udp(config.bind, config.port, config.threads)?;
        let addr = udp[0]
            .local_addr()
            .context("cannot read the bound address")?;
        match listen(addr) {
            Ok(tcp) => {
                return Ok(Bound {
                    udp,
                    tcp: Some(tcp),
                });
            }
            Err(err)
                if config.port == 0
                    && err.kind() == io::ErrorKind::AddrInUse
                    && attempt < PORT_PAIR_ATTEMPTS =>
            {
                debug!(
                    "port {} is free for UDP but not for TCP; choosing another",
                    addr.port()
                );
                attempt += 1;
            }
            Err(err) => return Err(listen_error(err, addr)),
        }
    }
}

/// Binds the UDP sockets of `count` worker threads, one for each, all on
/// the same address and port: their own sockets, balanced by the system,
/// where it can (see the module's note), else one socket shared by all.
///
/// With port 0 the first socket gets a port from the system and the others
/// bind that port.
fn bind_udp(bind: Bind, port: u16, count: usize) -> anyhow::Result<Vec<UdpSocket>> {
    anyhow::ensure!(count >= 1, "the server needs at least one thread");
    let share = count > 1 && opts::BALANCED_REUSE_PORT;
    let bind_first = |share| {
        on_address(bind, port, "UDP", |addr| open_udp(addr, share))
            .map_err(|(err, addr)| bind_error(err, addr))
    };
    if share && port != 0 {
        // SO_REUSEPORT lets a process of the same user join a group already
        // bound to the port, which would silently split another server's
        // traffic. An exclusive bind first fails on a taken port, as a
        // single socket does. (A port bound between this probe and the group
        // is a race we accept; with port 0 the system picks a free one.)
        drop(bind_first(false)?);
    }
    let first = bind_first(share)?;
    let addr = first
        .local_addr()
        .context("cannot read the bound address")?;
    let mut sockets = Vec::with_capacity(count);
    sockets.push(first);
    if !share && count > 1 {
        info!(
            "the {count} worker threads share one UDP socket: this system does not spread \
             a port's datagrams across sockets (Linux's SO_REUSEPORT and FreeBSD's \
             SO_REUSEPORT_LB do)"
        );
    }
    for _ in 1..count {
        let next = if share {
            open_udp(addr, share).map_err(|err| bind_error(err, addr))?
        } else {
            // A duplicate handle for each worker: the same socket.
            sockets[0]
                .try_clone()
                .context("cannot share the UDP socket between worker threads")?
        };
        sockets.push(next);
    }
    Ok(sockets)
}

/// TCP alone: the address UDP would use, with the same fallback to IPv4.
fn bind_tcp(bind: Bind, port: u16) -> anyhow::Result<TcpListener> {
    on_address(bind, port, "TCP", listen_tcp).map_err(|(err, addr)| listen_error(err, addr))
}

/// Opens a socket with `open` on the address `bind` names: exactly that
/// one, or for every interface `[::]`, falling back to `0.0.0.0` when the
/// host has no IPv6. An error comes with the address it is about.
fn on_address<T>(
    bind: Bind,
    port: u16,
    transport: &str,
    mut open: impl FnMut(SocketAddr) -> io::Result<T>,
) -> Result<T, (io::Error, SocketAddr)> {
    let addr = match bind {
        Bind::Addr(ip) => SocketAddr::new(ip, port),
        Bind::DualStack => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match open(v6) {
                Ok(socket) => {
                    debug!("bound {transport} {v6} as a dual-stack socket (IPv6 and IPv4)");
                    return Ok(socket);
                }
                Err(err) if ipv6_unavailable(&err) => {
                    info!("IPv6 is not available ({err}); serving {transport} on IPv4 only");
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
                }
                Err(err) => return Err((err, v6)),
            }
        }
    };
    open(addr).map_err(|err| (err, addr))
}

/// Whether an error opening `[::]` means the host has no IPv6, rather than
/// a problem the user must hear about (the port in use, say).
fn ipv6_unavailable(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::AddrNotAvailable
        || err
            .raw_os_error()
            .is_some_and(|code| NO_IPV6.contains(&code))
}

/// The codes, besides "address not available", with which a system without
/// IPv6 refuses `[::]`: the family, or the protocol, is not supported. By
/// system, since `raw_os_error` is a WinSock code on Windows (where libc's
/// numbers are the C runtime's, not what sockets report).
#[cfg(unix)]
const NO_IPV6: [i32; 2] = [libc::EAFNOSUPPORT, libc::EPROTONOSUPPORT];
#[cfg(windows)]
const NO_IPV6: [i32; 2] = [
    windows_sys::Win32::Networking::WinSock::WSAEAFNOSUPPORT,
    windows_sys::Win32::Networking::WinSock::WSAEPROTONOSUPPORT,
];

fn bind_error(err: io::Error, addr: SocketAddr) -> anyhow::Error {
    anyhow::Error::new(in_our_words(err)).context(format!("cannot bind UDP socket to {addr}"))
}

fn listen_error(err: io::Error, addr: SocketAddr) -> anyhow::Error {
    anyhow::Error::new(in_our_words(err)).context(format!("cannot listen on TCP {addr}"))
}

/// A busy port said the same way on every system: the system's own text
/// differs (Windows' is a WinSock number, and Wine has no text for it at
/// all), and this is the bind error people meet.
fn in_our_words(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::AddrInUse {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            "address already in use (another program, or another server, has the port)",
        )
    } else {
        err
    }
}

/// A UDP socket on `addr`, both families when `addr` is `[::]` (FreeBSD
/// and Windows default to IPv6 only, so this is always said), with the
/// receive timeout a worker needs to notice the stop; `share` joins the
/// port's balanced group.
fn open_udp(addr: SocketAddr, share: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    if share {
        opts::set_reuse_port_balanced(&socket)?;
    }
    opts::set_exclusive_address_use(&socket)?;
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    socket.bind(&SockAddr::from(addr))?;
    opts::ignore_port_unreachable(&socket)?;
    Ok(socket.into())
}

/// A listening TCP socket on `addr`: address reuse, so a restarted server
/// can listen at once while old connections linger in TIME_WAIT (on Unix;
/// Windows' SO_REUSEADDR would let another socket take a busy port, and its
/// listeners rebind past TIME_WAIT anyway, so there the port is taken
/// exclusively instead); both IPv4 and IPv6 when `addr` is `[::]`; a
/// backlog of [`LISTEN_BACKLOG`].
pub(crate) fn listen_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    opts::set_exclusive_address_use(&socket)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Bind {
        Bind::Addr(Ipv4Addr::LOCALHOST.into())
    }

    fn config(transports: Transports, ip: &str, port: u16) -> Config {
        Config {
            bind: Bind::Addr(ip.parse().expect("ip")),
            port,
            transports,
            ..Config::default()
        }
    }

    #[test]
    fn several_sockets_share_one_system_chosen_port() {
        let sockets = bind_udp(loopback(), 0, 3).expect("bind");
        assert_eq!(sockets.len(), 3);
        let addrs: Vec<_> = sockets
            .iter()
            .map(|s| s.local_addr().expect("addr"))
            .collect();
        assert_ne!(addrs[0].port(), 0);
        assert!(addrs.iter().all(|a| *a == addrs[0]), "{addrs:?}");
    }

    #[test]
    fn a_single_socket_does_not_share_its_port() {
        let taken = bind_udp(loopback(), 0, 1).expect("bind");
        let port = taken[0].local_addr().expect("addr").port();
        let err = bind_udp(loopback(), port, 1).expect_err("in use");
        let message = format!("{err:#}");
        assert!(
            message.starts_with(&format!("cannot bind UDP socket to 127.0.0.1:{port}: ")),
            "{message}"
        );
    }

    #[test]
    fn a_group_never_joins_another_servers_port() {
        let taken = bind_udp(loopback(), 0, 2).expect("bind");
        let port = taken[0].local_addr().expect("addr").port();
        let err = bind_udp(loopback(), port, 2).expect_err("in use");
        assert_eq!(
            format!("{err:#}"),
            format!(
                "cannot bind UDP socket to 127.0.0.1:{port}: address already in use \
                 (another program, or another server, has the port)"
            )
        );
    }

    #[test]
    fn threads_have_sockets_of_their_own_only_where_the_system_balances() {
        let sockets = bind_udp(loopback(), 0, 2).expect("bind");
        // An option set through one handle shows through the other only
        // when the two are one socket. (Both sizes are within Linux's
        // default net.core.rmem_max.)
        let small = opts::set_recv_buffer(&sockets[0], 32 << 10).expect("set");
        let large = opts::set_recv_buffer(&sockets[1], 128 << 10).expect("set");
        assert_ne!(small, large);
        let first = opts::recv_buffer(&sockets[0]).expect("read back");
        assert_eq!(
            first == large,
            !opts::BALANCED_REUSE_PORT,
            "the first socket's buffer is {first} (set {small}, the other's {large})"
        );
    }

    #[test]
    fn zero_threads_is_an_error_not_a_panic() {
        assert!(bind_udp(loopback(), 0, 0).is_err());
    }

    #[test]
    fn the_default_socket_takes_both_families() {
        let sockets = bind_udp(Bind::DualStack, 0, 1).expect("bind");
        let addr = sockets[0].local_addr().expect("addr");
        assert!(addr.ip().is_unspecified());
        if addr.is_ipv6() {
            let v4 = UdpSocket::bind("127.0.0.1:0").expect("client");
            v4.send_to(b"x", (Ipv4Addr::LOCALHOST, addr.port()))
                .expect("send");
            let mut buf = [0; 4];
            let (n, from) = sockets[0].recv_from(&mut buf).expect("receive over IPv4");
            assert_eq!(&buf[..n], b"x");
            assert_eq!(from.ip().to_canonical(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }

    #[test]
    fn only_missing_ipv6_falls_back() {
        let os = io::Error::from_raw_os_error;
        for code in NO_IPV6 {
            assert!(ipv6_unavailable(&os(code)), "code {code}");
        }
        assert!(ipv6_unavailable(&io::ErrorKind::AddrNotAvailable.into()));
        assert!(!ipv6_unavailable(&io::ErrorKind::AddrInUse.into()));
        assert!(!ipv6_unavailable(&io::ErrorKind::PermissionDenied.into()));
    }

    #[test]
    fn every_interface_falls_back_to_ipv4_for_both_transports_alike() {
        let mut tried = Vec::new();
        let opened = on_address(Bind::DualStack, 7, "UDP", |addr| {
            tried.push(addr);
            if addr.is_ipv6() {
                Err(io::Error::from_raw_os_error(NO_IPV6[0]))
            } else {
                Ok(addr)
            }
        });
        assert_eq!(opened.expect("IPv4"), "0.0.0.0:7".parse().expect("addr"));
        assert_eq!(tried.len(), 2);
        let refused = on_address(Bind::DualStack, 7, "TCP", |_| {
            Err::<(), _>(io::Error::from(io::ErrorKind::AddrInUse))
        });
        let (err, addr) = refused.expect_err("in use is no reason to fall back");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(addr, "[::]:7".parse().expect("addr"));
    }

    #[test]
    fn a_taken_tcp_address_is_named_in_the_error() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = bind_tcp(Bind::Addr(addr.ip()), addr.port()).expect_err("address in use");
        assert!(
            format!("{err:#}").starts_with(&format!("cannot listen on TCP {addr}: ")),
            "{err:#}"
        );
    }

    #[test]
    fn both_transports_share_a_system_chosen_port() {
        let bound = Bound::bind(&config(Transports::BOTH, "127.0.0.1", 0)).expect("bind");
        let udp = bound.udp_addr().expect("udp");
        assert_ne!(udp.port(), 0);
        assert_eq!(bound.tcp_addr(), Some(udp));
    }

    #[test]
    fn a_port_taken_for_tcp_is_an_error_when_it_was_asked_for() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = Bound::bind(&config(Transports::BOTH, "127.0.0.1", port)).expect_err("taken");
        assert!(
            format!("{err:#}").starts_with(&format!("cannot listen on TCP 127.0.0.1:{port}: ")),
            "{err:#}"
        );
    }

    #[test]
    fn a_system_chosen_port_taken_for_tcp_is_chosen_again() {
        let mut tried = Vec::new();
        let mut squatters = Vec::new();
        let bound = bind_pair(&config(Transports::BOTH, "127.0.0.1", 0), |addr| {
            tried.push(addr.port());
            if tried.len() == 1 {
                // Someone else takes the TCP side of the port UDP just got.
                squatters.extend(TcpListener::bind(addr).ok());
            }
            listen_tcp(addr)
        })
        .expect("a second port");
        assert_eq!(tried.len(), 2, "ports tried: {tried:?}");
        let udp = bound.udp_addr().expect("udp");
        assert_eq!(bound.tcp_addr(), Some(udp));
        assert_ne!(udp.port(), tried[0]);
        assert_eq!(udp.port(), tried[1]);
    }

    #[test]
    fn a_system_chosen_port_always_taken_for_tcp_ends_in_an_error() {
        let mut tried = 0;
        let mut squatters = Vec::new();
        let err = bind_pair(&config(Transports::BOTH, "127.0.0.1", 0), |addr| {
            tried += 1;
            squatters.extend(TcpListener::bind(addr).ok());
            listen_tcp(addr)
        })
        .expect_err("every port taken");
        assert_eq!(tried, PORT_PAIR_ATTEMPTS);
        assert!(
            format!("{err:#}").contains("cannot listen on TCP 127.0.0.1:"),
            "{err:#}"
        );
    }

    #[test]
    fn one_transport_binds_only_its_socket() {
        let udp = Bound::bind(&config(Transports::UDP, "127.0.0.1", 0)).expect("bind");
        assert!(!udp.udp.is_empty() && udp.tcp.is_none());
        let tcp = Bound::bind(&config(Transports::TCP, "127.0.0.1", 0)).expect("bind");
        assert!(tcp.udp.is_empty());
        assert_ne!(tcp.tcp_addr().expect("tcp").port(), 0);
    }

    #[test]
    fn no_transport_is_an_error() {
        let none = Transports {
            udp: false,
            tcp: false,
        };
        assert!(Bound::bind(&config(none, "127.0.0.1", 0)).is_err());
    }
}
