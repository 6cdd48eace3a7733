//! UDP datagram I/O a batch at a time, on two paths behind one interface:
//! Linux's batched path (many datagrams per system call, GRO, GSO) and a
//! portable path for every system (one datagram per call, on socket2).
//!
//! - [`RecvBatch`]: receives into slots allocated once, with each
//!   datagram's sender, its UDP GRO segment size and whether it was cut.
//! - [`SendBatch`] and its [`Queue`]: sends replies that borrow the caller's
//!   buffers (the receive slots themselves, for a server answering in
//!   place), optionally as UDP GSO trains; a message that fails is counted
//!   and skipped, never fatal to the rest of the batch.
//! - [`Io`]: which path a batch takes ([`RecvBatch::with_io`],
//!   [`SendBatch::with_io`]); `new` takes this system's fastest.
//! - [`opts`]: the socket options that go with them (GRO, a receive buffer
//!   beyond `rmem_max` when allowed, balanced port sharing, Windows'
//!   ICMP resets and exclusive binds), and [`gso_supported`], a probe.
//! - [`classify_recv_error`]: what a receive error means, by each system's
//!   codes (WinSock's on Windows); [`is_port_unreachable`]: a connected
//!   socket's "nobody there", however the system says it.
//! - [`Poller`]: waiting on several sockets at once.
//!
//! Every `unsafe` block of the project's socket code is in this crate, each
//! with the argument for why it is sound. The functions take any
//! [`OsSocket`]: on Unix anything `AsFd`, on Windows anything `AsSocket`
//! (`std::net::UdpSocket`, `socket2::Socket`, ...).
//!
//! Modules, leaves first; none imports one above it: `limits`, `io`,
//! `socket`, `errors` and `slots` are leaves; Linux's `addr` and `cmsg`
//! (libc) under `mmsg`, the batched path's headers; `wait` (poll sets) under
//! `single`, the portable path; `opts` (socket options); `recv` and `send`
//! choose between `mmsg` and `single`; `gso` probes with `send`. With the
//! `fuzzing` feature (Linux), `fuzzing` opens the two decoders of what the
//! kernel writes (`addr`, `cmsg`) to the targets in `fuzz/`.

#[cfg(target_os = "linux")]
mod addr;
#[cfg(target_os = "linux")]
mod cmsg;
mod errors;
mod gso;
mod io;
mod limits;
#[cfg(target_os = "linux")]
mod mmsg;
pub mod opts;
mod recv;
mod send;
mod single;
mod slots;
mod socket;
mod wait;

#[cfg(all(feature = "fuzzing", target_os = "linux"))]
#[doc(hidden)]
pub mod fuzzing;

pub use errors::{RecvErrorClass, classify_recv_error, is_port_unreachable};
pub use gso::gso_supported;
pub use io::Io;
pub use limits::{DEFAULT_BATCH, MAX_BATCH};
pub use opts::enable_gro;
pub use recv::RecvBatch;
pub use send::{Queue, SendBatch, SendReport};
pub use slots::{Datagram, DatagramMut, Meta};
pub use socket::OsSocket;
pub use wait::Poller;
