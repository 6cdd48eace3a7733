//! Batched UDP I/O for Linux: many datagrams per system call.
//!
//! - [`RecvBatch`]: `recvmmsg` into slots allocated once, with each
//!   datagram's sender, its UDP GRO segment size and whether it was cut.
//! - [`SendBatch`] and its [`Queue`]: `sendmmsg` of replies that borrow the
//!   caller's buffers (the receive slots themselves, for a server answering
//!   in place), optionally as UDP GSO trains; a message that fails is counted
//!   and skipped, never fatal to the rest of the batch.
//! - [`opts`]: the socket options that go with them (GRO, SO_REUSEPORT, buffer
//!   sizes, busy-poll) and a [`gso_supported`] probe.
//! - [`Poller`]: waiting on several sockets at once, to the nanosecond.
//!
//! Every `unsafe` block of the project's socket code is in this crate, each
//! with the argument for why it is sound. The functions take any socket that
//! implements `AsFd`: `std::net::UdpSocket`, `socket2::Socket`, ...
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "linux"))]
compile_error!("upcase-udp uses recvmmsg/sendmmsg and UDP GSO/GRO, which are Linux's");

mod addr;
pub mod opts;
mod recv;
mod send;
mod wait;

pub use opts::{enable_gro, gso_supported};
pub use recv::{Datagram, DatagramMut, Meta, RecvBatch};
pub use send::{Queue, SendBatch, SendReport};
pub use wait::Poller;

/// Messages per batch unless told otherwise: enough to amortise a system call
/// over many datagrams, small enough to keep latency and memory low.
pub const DEFAULT_BATCH: usize = 64;

/// The most messages one `recvmmsg`/`sendmmsg` call takes (`UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;
