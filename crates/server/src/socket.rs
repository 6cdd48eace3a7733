//! Opening the server's sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, info};

use crate::config::Bind;

/// How long a worker blocks in a receive before it looks at the stop flag:
/// the bound on how late it notices a signal.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Binds `count` sockets to the same address and port (SO_REUSEPORT when
/// there are several), each ready for one worker thread.
///
/// With port 0 the first socket gets a port from the system and the others
/// bind that port.
pub fn bind_all(bind: Bind, port: u16, count: usize) -> anyhow::Result<Vec<UdpSocket>> {
    let share = count > 1;
    let bind_first = |share| match bind {
        Bind::Addr(ip) => bind_one(SocketAddr::new(ip, port), share),
        Bind::DualStack => bind_dual_stack(port, share),
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
    for _ in 1..count {
        sockets.push(bind_one(addr, share)?);
    }
    Ok(sockets)
}

/// `[::]` with IPV6_V6ONLY off, so one socket receives both families; on a
/// host without IPv6, `0.0.0.0`.
fn bind_dual_stack(port: u16, share: bool) -> anyhow::Result<UdpSocket> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    match open(v6, share) {
        Ok(socket) => {
            debug!("bound {v6} as a dual-stack socket (IPv6 and IPv4)");
            Ok(socket)
        }
        Err(err) if ipv6_unavailable(&err) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            info!("IPv6 is not available ({err}); receiving on IPv4 only");
            bind_one(v4, share)
        }
        Err(err) => Err(bind_error(err, v6)),
    }
}

/// Whether an error opening `[::]` means the host has no IPv6, rather than
/// a problem the user must hear about (the port in use, say).
pub fn ipv6_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

fn bind_one(addr: SocketAddr, share: bool) -> anyhow::Result<UdpSocket> {
    open(addr, share).map_err(|err| bind_error(err, addr))
}

fn bind_error(err: io::Error, addr: SocketAddr) -> anyhow::Error {
    anyhow::Error::new(err).context(format!("cannot bind UDP socket to {addr}"))
}

fn open(addr: SocketAddr, share: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    if share {
        socket.set_reuse_port(true)?;
    }
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_sockets_share_one_system_chosen_port() {
        let sockets = bind_all(Bind::Addr(Ipv4Addr::LOCALHOST.into()), 0, 3).expect("bind");
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
        let taken = bind_all(Bind::Addr(Ipv4Addr::LOCALHOST.into()), 0, 1).expect("bind");
        let port = taken[0].local_addr().expect("addr").port();
        let err = bind_all(Bind::Addr(Ipv4Addr::LOCALHOST.into()), port, 1).expect_err("in use");
        let message = format!("{err:#}");
        assert!(
            message.starts_with(&format!("cannot bind UDP socket to 127.0.0.1:{port}: ")),
            "{message}"
        );
    }

    #[test]
    fn a_group_never_joins_another_servers_port() {
        let taken = bind_all(Bind::Addr(Ipv4Addr::LOCALHOST.into()), 0, 2).expect("bind");
        let port = taken[0].local_addr().expect("addr").port();
        let err = bind_all(Bind::Addr(Ipv4Addr::LOCALHOST.into()), port, 2).expect_err("in use");
        assert!(
            format!("{err:#}").contains("Address already in use"),
            "{err:#}"
        );
    }

    #[test]
    fn the_default_socket_takes_both_families() {
        let sockets = bind_all(Bind::DualStack, 0, 1).expect("bind");
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
        assert!(ipv6_unavailable(&os(libc::EAFNOSUPPORT)));
        assert!(ipv6_unavailable(&os(libc::EADDRNOTAVAIL)));
        assert!(!ipv6_unavailable(&os(libc::EADDRINUSE)));
        assert!(!ipv6_unavailable(&os(libc::EACCES)));
    }
}
