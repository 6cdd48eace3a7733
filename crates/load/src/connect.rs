//! Opening a TCP connection that really reaches a server.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `TcpStream::connect_timeout`, except that a connection that reached
/// itself is refused, as the connection would have been. With nothing
/// listening on a local port, the kernel may pick that very port as the
/// source and join the connection to itself (TCP simultaneous open): every
/// line sent would then come back unchanged, read as if it were the reply.
pub fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    refuse_self(TcpStream::connect_timeout(&addr, timeout)?)
}

fn refuse_self(stream: TcpStream) -> io::Result<TcpStream> {
    if stream.local_addr()? == stream.peer_addr()? {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "nothing listens there (the connection reached itself)",
        ));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn a_connection_to_itself_is_refused() {
        // Bound to a port and connected to that same port: what the kernel
        // does by chance when it picks the destination as the source.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind");
        let own = socket.local_addr().expect("local address");
        socket.connect(&own).expect("simultaneous open with itself");
        let err = refuse_self(socket.into()).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_connection_to_a_listener_is_kept() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
        let addr = listener.local_addr().expect("address");
        let stream = connect_tcp(addr, Duration::from_secs(5)).expect("connect");
        assert_eq!(stream.peer_addr().expect("peer"), addr);
    }
}
