//! Blocking UDP clients for tests, bounded by [`PATIENCE`]: one socket
//! connected to a server, one request and its reply at a time.

use std::net::{SocketAddr, UdpSocket};

use crate::PATIENCE;

/// A UDP client of `server` (on the loopback of its family) that gets
/// each reply within [`PATIENCE`].
pub fn client(server: SocketAddr) -> UdpSocket {
    let local = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).expect("client");
    socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
    socket.connect(server).expect("connect");
    socket
}

/// Sends `request` and returns the reply; panics (for tests) if none comes.
pub fn ask(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    socket.send(request).expect("send");
    let mut buf = vec![0; 65_536];
    let n = socket.recv(&mut buf).expect("reply");
    buf.truncate(n);
    buf
}
