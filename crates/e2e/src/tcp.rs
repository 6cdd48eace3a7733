//! Plain blocking TCP clients for tests of the server's TCP half, each
//! bounded by [`PATIENCE`] so a stuck server fails the test, never hangs it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::PATIENCE;

/// A connection to `addr` whose reads and writes time out after [`PATIENCE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Reads exactly `len` bytes, failing the test on an early end of stream.
pub fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut got = vec![0; len];
    stream.read_exact(&mut got).expect("reply");
    got
}

/// Reads until the server ends the stream.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read to end");
    got
}

/// Sends `bytes` and ends the stream while another thread reads the reply
/// to its end (so neither side can block on a full buffer); returns it.
pub fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let reader = {
        let mut stream = stream.try_clone().expect("clone");
        thread::spawn(move || read_to_end(&mut stream))
    };
    stream.write_all(bytes).expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    reader.join().expect("reader")
}

/// Whether the server closed the connection: end of stream or a reset.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    }
}

/// How far [`write_until_stalled`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub bytes: usize,
    /// A write blocked: the peer stopped reading.
    pub stalled: bool,
}

/// Writes until the peer stops reading (one write blocks for `stall`), at
/// most `cap` bytes and [`PATIENCE`]; the stream keeps `stall` as its write
/// timeout. Panics if a write fails otherwise.
pub fn write_until_stalled(stream: &mut TcpStream, stall: Duration, cap: usize) -> Written {
    stream.set_write_timeout(Some(stall)).expect("timeout");
    let chunk = vec![b'a'; 64 * 1024];
    let mut bytes = 0usize;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match stream.write(&chunk) {
            Ok(n) => bytes += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Written {
                    bytes,
                    stalled: true,
                };
            }
            Err(e) => panic!("send failed after {bytes} bytes: {e}"),
        }
        if bytes >= cap || Instant::now() > deadline {
            return Written {
                bytes,
                stalled: false,
            };
        }
    }
}
