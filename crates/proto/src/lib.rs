//! The upcase protocol without any I/O: what a datagram may hold and what the
//! server answers.
//!
//! A request is any sequence of bytes that fits in one UDP datagram; the reply
//! is the same bytes with every valid UTF-8 run uppercased (full Unicode case
//! mapping, as Python 3's `str.upper()`), and every byte that is not part of
//! valid UTF-8 copied unchanged. Nothing here opens a socket: the binaries own
//! the I/O, this crate owns the rules, so every rule is tested without a
//! network. The PROXY protocol's headers, which a proxy in front of the
//! server puts before what it forwards, are read here too (`proxy`).
#![deny(unsafe_code)]

pub mod limits;
pub mod proxy;
pub mod ratelimit;
pub mod reply;
pub mod stream;
pub mod transform;

pub use limits::{
    DEFAULT_PORT, Family, MAX_PAYLOAD, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6, RECV_BUFFER_LEN,
};
pub use stream::StreamUppercaser;
pub use transform::{
    DatagramReply, Path, ReplyTooLarge, uppercase, uppercase_ascii_prefix_in_place,
    uppercase_datagram, uppercase_into, uppercased_len,
};
