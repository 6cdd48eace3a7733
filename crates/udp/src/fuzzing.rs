//! What the fuzz targets in `fuzz/` reach: this crate's two decoders of what
//! the kernel writes, the socket address of a received datagram and its GRO
//! control message, fed arbitrary bytes and lengths. Only built with the
//! `fuzzing` feature, and not part of the API.
//!
//! Each decoder reads from the heap, in a block of exactly the size it is
//! given, so that AddressSanitizer reports a read past it.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::net::SocketAddr;

use crate::addr::RawAddr;
use crate::cmsg::{self, RecvControl};

/// The bytes of a raw socket address: room for a `sockaddr_in6`.
pub const ADDR_LEN: usize = RawAddr::LEN;

/// Decodes `bytes` as the address the kernel wrote for a received datagram,
/// with the `namelen` it returned, exactly as a receive does.
pub fn decode_addr(bytes: [u8; ADDR_LEN], namelen: u32) -> Option<SocketAddr> {
    let raw = std::hint::black_box(Box::new(RawAddr::from_bytes(bytes)));
    raw.get(namelen)
}

/// The bytes and the `namelen` a send stores for `addr`.
pub fn encode_addr(addr: SocketAddr) -> ([u8; ADDR_LEN], u32) {
    let mut raw = RawAddr::zeroed();
    let len = raw.set(addr);
    (raw.to_bytes(), len)
}

/// The size of a receive slot's control buffer.
pub const RECV_CONTROL_LEN: usize = cmsg::RECV_CONTROL_LEN;

/// The GRO segment size a receive finds in its slot's own control buffer
/// when the kernel wrote `control` there (cut to the buffer's size, zeros
/// after it) and returned `controllen` (capped at the buffer's size).
pub fn gro_segment_size_in_slot(control: &[u8], controllen: usize) -> Option<u16> {
    cmsg::gro_segment_size_in_slot(control, controllen)
}

/// The GRO segment size found in a control buffer of exactly `control`
/// (aligned like a receive slot's, and all of it given as `msg_controllen`):
/// any read past the bytes the kernel said it wrote is a heap overflow.
pub fn gro_segment_size_exact(control: &[u8]) -> Option<u16> {
    let Ok(layout) = Layout::from_size_align(control.len().max(1), align_of::<RecvControl>())
    else {
        // Only for lengths near isize::MAX, which no input has.
        return None;
    };
    // SAFETY: the layout's size is not zero.
    let buffer = unsafe { alloc(layout) };
    if buffer.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `buffer` is a fresh block of at least control.len() bytes.
    unsafe { buffer.copy_from_nonoverlapping(control.as_ptr(), control.len()) };
    let hdr = msghdr(buffer, control.len());
    // SAFETY: the header points at `buffer`, aligned for cmsghdr and
    // holding control.len() initialised bytes, its length.
    let size = unsafe { cmsg::gro_segment_size(&hdr) };
    // SAFETY: allocated above with this very layout.
    unsafe { dealloc(buffer, layout) };
    size
}

/// A received message's header with only its control buffer set.
fn msghdr(control: *mut u8, controllen: usize) -> libc::msghdr {
    // SAFETY: msghdr is a C struct of integers and raw pointers, for which
    // all-zero bytes is a valid value (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_control = control.cast();
    hdr.msg_controllen = controllen as _;
    hdr
}
