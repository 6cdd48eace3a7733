//! Linux's batched path: the message headers `recvmmsg` fills and
//! `sendmmsg` reads, allocated once per batch and reused by every call.
//!
//! A receive's headers point at the receive slots, their addresses and
//! control buffers from the start, and a receive resets only the headers
//! the last one filled. A send's headers are filled at the flush from the
//! queue's messages, GSO trains carrying their UDP_SEGMENT control message.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use crate::addr::RawAddr;
use crate::cmsg::{
    RECV_CONTROL_LEN, RecvControl, SEGMENT_CONTROL_LEN, SegmentControl, gro_segment_size,
    write_segment,
};
use crate::slots::{Meta, Slots};
use crate::socket::RawSocket;

/// `count` message headers and iovecs, all null pointers and zero lengths.
fn blank(count: usize) -> (Vec<libc::mmsghdr>, Vec<libc::iovec>) {
    // SAFETY: mmsghdr is a C struct of integers and raw pointers, for which
    // all-zero bytes is a valid value (null pointers, zero lengths).
    let hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
    let iov = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    (vec![hdr; count], vec![iov; count])
}

/// The headers of one receive batch, one per slot.
pub(crate) struct RecvHeaders {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    controls: Vec<RecvControl>,
    /// How many headers, from the first, the kernel may have written since
    /// they were last reset.
    dirty: usize,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` point into the heap buffers of
// `iovs`, `addrs` and `controls`, which this struct owns, and of the slots
// (owned, with this struct, by the same `RecvBatch`); they are only followed
// during a receive, which the batch makes with `&mut self`. Moving them to
// another thread moves the sole owner of everything they point to.
unsafe impl Send for RecvHeaders {}

impl RecvHeaders {
    /// Headers for `slots`, pointed at them once: the slots and the vectors
    /// are never resized, so the pointers stay good for the batch's life
    /// (moving a struct moves no heap memory). Every pointer comes from
    /// `Vec::as_mut_ptr`, which creates no reference to the elements.
    pub(crate) fn new(slots: &mut Slots) -> RecvHeaders {
        let count = slots.count();
        let (hdrs, iovs) = blank(count);
        let mut headers = RecvHeaders {
            hdrs,
            iovs,
            addrs: vec![RawAddr::zeroed(); count],
            controls: vec![RecvControl([0; RECV_CONTROL_LEN]); count],
            dirty: count,
        };
        let slot_len = slots.slot_len();
        let buffers = slots.as_mut_ptr();
        let (iovs, addrs) = (headers.iovs.as_mut_ptr(), headers.addrs.as_mut_ptr());
        let controls = headers.controls.as_mut_ptr();
        for (i, hdr) in headers.hdrs.iter_mut().enumerate() {
            // SAFETY: i < count, the length of iovs, addrs and controls, and
            // i * slot_len + slot_len <= count * slot_len, the length of the
            // slots: every pointer stays inside its allocation.
            unsafe {
                let iov = iovs.add(i);
                (*iov).iov_base = buffers.add(i * slot_len).cast();
                (*iov).iov_len = slot_len;
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_name = addrs.add(i).cast();
                hdr.msg_hdr.msg_control = controls.add(i).cast();
            }
            hdr.msg_hdr.msg_iovlen = 1;
        }
        headers
    }

    /// One `recvmmsg` into the slots: with `wait`, waits for the first
    /// datagram and takes those already queued after it
    /// (`MSG_WAITFORONE`), else takes only those already queued
    /// (`MSG_DONTWAIT`). Returns how many headers were filled.
    ///
    /// # Safety
    ///
    /// The slots given to [`RecvHeaders::new`] are alive, and nothing reads
    /// or writes them during the call (the batch owning both is borrowed
    /// `&mut`).
    pub(crate) unsafe fn recv(&mut self, fd: RawSocket, wait: bool) -> io::Result<usize> {
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        // Only the headers the kernel wrote since their last reset need it:
        // one datagram at a time (ping) resets one header, not the batch.
        for hdr in &mut self.hdrs[..self.dirty] {
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_namelen = RawAddr::CAPACITY;
            hdr.msg_hdr.msg_controllen = RECV_CONTROL_LEN as _;
            hdr.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at an iovec, address and control buffer
        // owned by self and at a slot alive by the caller's promise (`new`),
        // with lengths matching their sizes (just above, or untouched since);
        // nothing else reads or writes them during the call (`&mut self`,
        // and the caller's promise for the slots). The count is the length of
        // `hdrs`, at most MAX_BATCH.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            // A failed call fills no header; reset the first anyway, cheaply.
            self.dirty = 1;
            return Err(io::Error::last_os_error());
        }
        let received = n as usize;
        // The kernel fills headers 0..n; one past them was at most tried.
        self.dirty = (received + 1).min(self.hdrs.len());
        Ok(received)
    }

    /// Slot `i`'s length and what the kernel said about it, after a receive
    /// that filled it.
    pub(crate) fn datagram(&self, i: usize) -> (usize, Meta) {
        let hdr = &self.hdrs[i];
        let meta = Meta {
            peer: self.addrs[i].get(hdr.msg_hdr.msg_namelen),
            // SAFETY: msg_control points at this slot's RecvControl (`new`),
            // aligned for cmsghdr, and msg_controllen is at most its size:
            // set so before every receive, then only lowered by the kernel to
            // what it wrote.
            segment_size: unsafe { gro_segment_size(&hdr.msg_hdr) },
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        };
        (hdr.msg_len as usize, meta)
    }
}

/// The headers of one send batch, one per queued message.
pub(crate) struct SendHeaders {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    controls: Vec<SegmentControl>,
}

// SAFETY: the raw pointers in the headers point into storage this struct
// owns or at bytes a live queue borrows; they are only followed inside
// `send`, which its caller makes while those bytes are alive (its safety
// condition), on the thread that holds the queue. Moving the struct to
// another thread with stale pointers is harmless: every header is set
// again before its next send.
unsafe impl Send for SendHeaders {}

impl SendHeaders {
    /// Room for `capacity` messages (at least 1).
    pub(crate) fn new(capacity: usize) -> SendHeaders {
        let capacity = capacity.max(1);
        let (hdrs, iovs) = blank(capacity);
        SendHeaders {
            hdrs,
            iovs,
            addrs: vec![RawAddr::zeroed(); capacity],
            controls: vec![SegmentControl([0; SEGMENT_CONTROL_LEN]); capacity],
        }
    }

    /// Sets message `i` (below the capacity): `bytes` for `peer` (`None` on
    /// a connected socket), a GSO train of `segment_size` datagrams when
    /// given. The header keeps a pointer to `bytes` for the next
    /// [`SendHeaders::send`].
    pub(crate) fn set(
        &mut self,
        i: usize,
        peer: Option<SocketAddr>,
        bytes: &[u8],
        segment_size: Option<u16>,
    ) {
        self.iovs[i] = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        let hdr = &mut self.hdrs[i].msg_hdr;
        // The pointers into this struct's own arrays are taken in `send`,
        // after every write to the arrays, so that none is outdated by one.
        hdr.msg_namelen = match peer {
            Some(peer) => self.addrs[i].set(peer),
            None => 0,
        };
        hdr.msg_iovlen = 1;
        hdr.msg_flags = 0;
        hdr.msg_controllen = match segment_size.filter(|&s| s > 0) {
            Some(size) => {
                write_segment(&raw mut self.controls[i], size);
                SEGMENT_CONTROL_LEN as _
            }
            None => 0,
        };
    }

    /// One `sendmmsg` of messages `range`: how many of them, from the
    /// first, the kernel took. An error means the first message failed.
    ///
    /// # Safety
    ///
    /// Each message in `range` was [`set`](SendHeaders::set) since this
    /// struct last sent it, and the bytes it was given are still alive and
    /// unchanged. `range` is within the capacity.
    pub(crate) unsafe fn send(&mut self, fd: RawSocket, range: Range<usize>) -> io::Result<usize> {
        let (iovs, addrs) = (self.iovs.as_mut_ptr(), self.addrs.as_mut_ptr());
        let controls = self.controls.as_mut_ptr();
        for i in range.clone() {
            let hdr = &mut self.hdrs[i].msg_hdr;
            // SAFETY: i is within the capacity (the caller's promise), the
            // length of iovs, addrs and controls.
            unsafe {
                hdr.msg_iov = iovs.add(i);
                hdr.msg_name = if hdr.msg_namelen > 0 {
                    addrs.add(i).cast()
                } else {
                    std::ptr::null_mut()
                };
                hdr.msg_control = if hdr.msg_controllen > 0 {
                    controls.add(i).cast()
                } else {
                    std::ptr::null_mut()
                };
            }
        }
        let hdrs = &mut self.hdrs[range];
        // SAFETY: each header was set for this send: its iovec points at
        // bytes alive and unchanged (the caller's promise), its name and
        // control at this struct's storage (just above) or null with zero
        // length. The count is the slice's length, at most MAX_BATCH (the
        // caller's ranges never exceed it).
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 && !hdrs.is_empty() {
            // Not documented to happen; treat it as a failure of the first
            // message rather than retry it forever.
            return Err(io::Error::other("sendmmsg sent nothing"));
        }
        Ok(n as usize)
    }
}
