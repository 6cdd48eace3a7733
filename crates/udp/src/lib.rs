//! Batched UDP I/O for Linux: many datagrams per system call.
//!
//! - [`RecvBatch`]: `recvmmsg` into slots allocated once, with each
//!   datagram's sender, its UDP GRO segment size and whether it was cut.
//! - [`SendBatch`] and its [`Queue`]: `sendmmsg` of replies that borrow the
//!   caller's buffers (the receive slots themselves, for a server answering
//!   in place), optionally as UDP GSO trains; a message that fails is counted
//!   and skipped, never fatal to the rest of the batch.
//! - [`opts`]: the socket options that go with them (GRO, a receive buffer
//!   beyond `rmem_max` when allowed), and [`gso_supported`], a probe.
//! - [`Poller`]: waiting on several sockets at once, to the nanosecond.
//!
//! Every `unsafe` block of the project's socket code is in this crate, each
//! with the argument for why it is sound. The functions take any socket that
//! implements `AsFd`: `std::net::UdpSocket`, `socket2::Socket`, ...
//!
//! Modules, leaves first; none imports one above it: `limits`, `addr`,
//! `cmsg` and `wait` use only libc; `opts` adds socket2; `recv` and `send`
//! build on `limits`, `addr` and `cmsg`; `gso` sends with `send`. With the
//! `fuzzing` feature, `fuzzing` opens the two decoders of what the kernel
//! writes (`addr`, `cmsg`) to the targets in `fuzz/`.
#![warn(unreachable_pub)]

#[cfg(not(target_os = "linux"))]
compile_error!("upcase-udp uses recvmmsg/sendmmsg and UDP GSO/GRO, which are Linux's");

mod addr;
mod cmsg;
mod gso;
mod limits;
pub mod opts;
mod recv;
mod send;
mod wait;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use gso::gso_supported;
pub use limits::{DEFAULT_BATCH, MAX_BATCH};
pub use opts::enable_gro;
pub use recv::{Datagram, DatagramMut, Meta, RecvBatch};
pub use send::{Queue, SendBatch, SendReport};
pub use wait::Poller;
