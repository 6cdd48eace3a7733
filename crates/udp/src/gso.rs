//! Whether this kernel sends UDP GSO trains: found out by sending one, since
//! a kernel without GSO (or a socket type without it) only says so then.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::OnceLock;

use crate::send::SendBatch;

/// Whether this kernel sends UDP GSO trains: tried once per process by
/// sending a two-segment train to a socket of our own on 127.0.0.1.
pub fn gso_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| probe().is_ok())
}

fn probe() -> io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let me = socket.local_addr()?;
    let mut batch = SendBatch::new(1);
    let mut queue = batch.queue(&socket);
    queue.push(Some(me), b"gsogso", Some(3))?;
    let report = queue.finish()?;
    match report.first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
