//! Whether this kernel sends UDP GSO trains, found out by sending one (a
//! kernel without GSO, or a socket type without it, only says so then), and
//! what each [`Io`] path offers of GSO and GRO.

use std::io;

use crate::io::Io;
use crate::socket::OsSocket;

/// Whether this kernel sends UDP GSO trains: tried once per process by
/// sending a two-segment train to a socket of our own on 127.0.0.1. Never
/// off Linux.
pub fn gso_supported() -> bool {
    #[cfg(target_os = "linux")]
    {
        static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SUPPORTED.get_or_init(|| probe().is_ok())
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(target_os = "linux")]
fn probe() -> io::Result<()> {
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let me = socket.local_addr()?;
    let mut batch = crate::send::SendBatch::with_io(1, Io::Batched);
    let mut queue = batch.queue(&socket);
    queue.push(Some(me), b"gsogso", Some(3))?;
    let report = queue.finish()?;
    match report.first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Io {
    /// Whether a GSO train pushed on this path leaves as one send the
    /// kernel splits: the batched path where the kernel has GSO
    /// ([`gso_supported`]). The portable path still takes trains, and sends
    /// their datagrams one by one.
    pub fn gso_supported(self) -> bool {
        match self {
            Io::Batched => gso_supported(),
            Io::Portable => false,
        }
    }

    /// Turns on UDP GRO for a socket this path will read
    /// ([`crate::opts::enable_gro`]); on the portable path an error of kind
    /// `Unsupported`, since it cannot see a train's segment size and would
    /// take the train for one long datagram.
    pub fn enable_gro(self, socket: &impl OsSocket) -> io::Result<()> {
        match self {
            Io::Batched => crate::opts::enable_gro(socket),
            Io::Portable => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the portable path receives one datagram at a time, without UDP GRO",
            )),
        }
    }
}
