//! The sizes batches live within: what the kernel takes in one call and in
//! one GSO send, and the batch size chosen inside them.

/// Messages per batch unless told otherwise: enough to amortise a system call
/// over many datagrams, small enough to keep latency and memory low.
pub const DEFAULT_BATCH: usize = 64;

/// The most messages one batch holds: what one `recvmmsg`/`sendmmsg` call
/// takes on Linux (`UIO_MAXIOV`). The portable path keeps the same bound, so
/// that a batch size means the same on every system.
pub const MAX_BATCH: usize = 1024;

#[cfg(target_os = "linux")]
const _: () = assert!(MAX_BATCH == libc::UIO_MAXIOV as usize);

/// The most datagrams one GSO send may carry on every kernel with GSO
/// (`UDP_MAX_SEGMENTS` is 64 before Linux 6.x, 128 after).
pub const MAX_GSO_SEGMENTS: usize = 64;
