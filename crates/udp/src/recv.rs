//! Receiving many datagrams per system call with `recvmmsg`.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use crate::addr::RawAddr;
use crate::cmsg::{RECV_CONTROL_LEN, RecvControl, gro_segment_size};
use crate::limits::MAX_BATCH;

/// Slots for up to N datagrams, filled by one `recvmmsg` call.
///
/// Buffers and headers are allocated once, in [`RecvBatch::new`], and reused
/// by every receive: the hot path allocates nothing. Each receive replaces
/// the previous batch's datagrams. The slots are made resident when the
/// batch is built, so the batch's memory is all there from the start.
pub struct RecvBatch {
    buffers: Vec<u8>,
    slot_len: usize,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    controls: Vec<RecvControl>,
    received: usize,
    /// How many headers, from the first, the kernel may have written since
    /// they were last reset.
    dirty: usize,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` point into the heap buffers of
// `buffers`, `iovs`, `addrs` and `controls`, which this struct owns, and they
// are only followed during `&mut self` or `&self` methods; moving the struct
// to another thread moves the sole owner of everything they point to.
unsafe impl Send for RecvBatch {}

/// What the kernel said about one received buffer, besides its bytes.
/// More may come (a destination address, ECN bits): hence non-exhaustive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Meta {
    /// The sender (`None` if the kernel gave no IP address).
    pub peer: Option<SocketAddr>,
    /// With UDP GRO on, the size of each datagram of a coalesced train: the
    /// buffer holds datagrams of this size back to back, the last one possibly
    /// shorter. `None` for an ordinary single datagram.
    pub segment_size: Option<u16>,
    /// The datagram (or train) was longer than the slot and was cut.
    pub truncated: bool,
}

/// One received buffer, read-only.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub bytes: &'a [u8],
    pub meta: Meta,
}

/// One received buffer, writable in place (to build a reply in it, say).
#[derive(Debug)]
pub struct DatagramMut<'a> {
    pub bytes: &'a mut [u8],
    pub meta: Meta,
}

impl<'a> Datagram<'a> {
    /// The datagrams in this buffer: itself, or each datagram of a GRO train.
    pub fn segments(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        segments(self.bytes, self.meta.segment_size)
    }
}

impl DatagramMut<'_> {
    /// The datagrams in this buffer: itself, or each datagram of a GRO train.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        segments(self.bytes, self.meta.segment_size)
    }
}

/// Writes into every page of `buffers` so the kernel backs it now rather
/// than at the first datagram long enough to reach it. Left lazy, a server's
/// resident memory climbs for as long as long datagrams keep landing in
/// slots they have not reached before (still, in the second half of a
/// 10-second soak), which looks like a leak, and each such receive pays
/// page faults.
fn make_resident(buffers: &mut [u8]) {
    // The smallest page Linux uses; larger pages are covered all the same.
    const PAGE: usize = 4096;
    // Chunks start where pages do, so that each write lands in its own page;
    // the head is the part of the first page before the first boundary.
    let first_boundary = buffers.as_ptr().align_offset(PAGE).min(buffers.len());
    let (head, pages) = buffers.split_at_mut(first_boundary);
    for page in std::iter::once(head).chain(pages.chunks_mut(PAGE)) {
        if let Some(first) = page.first_mut() {
            // A zero the compiler cannot see: storing a known zero into
            // memory it knows was allocated zeroed would be removed.
            *first = std::hint::black_box(0);
        }
    }
}

/// Splits a buffer by its GRO segment size; an ordinary buffer, even an empty
/// one, is a single datagram.
fn segments(bytes: &[u8], segment_size: Option<u16>) -> impl Iterator<Item = &[u8]> {
    let size = match segment_size {
        Some(size) if size > 0 && bytes.len() > usize::from(size) => usize::from(size),
        _ => bytes.len().max(1),
    };
    let whole = std::iter::once(bytes).filter(|b| b.is_empty());
    whole.chain(bytes.chunks(size))
}

impl RecvBatch {
    /// A batch of `slots` buffers of `slot_len` bytes each. `slots` is taken
    /// between 1 and [`MAX_BATCH`], `slot_len` at least 1.
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_BATCH);
        let slot_len = slot_len.max(1);
        let mut batch = RecvBatch {
            buffers: vec![0; slots * slot_len],
            slot_len,
            // SAFETY: mmsghdr is a C struct of integers and raw pointers, for
            // which all-zero bytes is a valid value (null pointers, zero lengths).
            hdrs: vec![unsafe { std::mem::zeroed() }; slots],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                slots
            ],
            addrs: vec![RawAddr::zeroed(); slots],
            controls: vec![RecvControl([0; RECV_CONTROL_LEN]); slots],
            received: 0,
            dirty: slots,
        };
        make_resident(&mut batch.buffers);
        batch.point_headers();
        batch
    }

    /// Points each header at its slot, iovec, address and control buffer,
    /// once: the vectors are never resized, so the pointers stay good for the
    /// batch's life (moving the struct moves no heap memory). Every pointer
    /// comes from `Vec::as_mut_ptr`, which creates no reference to the
    /// elements, so the slices [`RecvBatch::iter_mut`] hands out later do not
    /// invalidate them; the kernel writes through them only during a receive,
    /// when `&mut self` says no such slice is alive.
    fn point_headers(&mut self) {
        let (buffers, iovs) = (self.buffers.as_mut_ptr(), self.iovs.as_mut_ptr());
        let (addrs, controls) = (self.addrs.as_mut_ptr(), self.controls.as_mut_ptr());
        for (i, hdr) in self.hdrs.iter_mut().enumerate() {
            // SAFETY: i < slots, the length of iovs, addrs and controls, and
            // i * slot_len + slot_len <= slots * slot_len, the length of buffers:
            // every pointer stays inside its allocation.
            unsafe {
                let iov = iovs.add(i);
                (*iov).iov_base = buffers.add(i * self.slot_len).cast();
                (*iov).iov_len = self.slot_len;
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_name = addrs.add(i).cast();
                hdr.msg_hdr.msg_control = controls.add(i).cast();
            }
            hdr.msg_hdr.msg_iovlen = 1;
        }
    }

    /// How many slots the batch has.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// The size of each slot: longer datagrams arrive truncated.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Waits for at least one datagram, then takes every one already queued,
    /// up to the capacity (`recvmmsg` with `MSG_WAITFORONE`). Returns how many
    /// buffers were filled. A read timeout on the socket (`SO_RCVTIMEO`) ends
    /// the wait with an error of kind `WouldBlock`, as `recv` does.
    pub fn recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        self.recv_with_flags(socket, libc::MSG_WAITFORONE)
    }

    /// Takes the datagrams already queued without waiting (`MSG_DONTWAIT`);
    /// `Ok(0)` when there are none.
    pub fn try_recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        match self.recv_with_flags(socket, libc::MSG_DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    fn recv_with_flags(&mut self, socket: &impl AsFd, flags: libc::c_int) -> io::Result<usize> {
        self.received = 0;
        // Only the headers the kernel wrote since their last reset need it:
        // one datagram at a time (ping) resets one header, not the batch.
        for hdr in &mut self.hdrs[..self.dirty] {
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_namelen = RawAddr::CAPACITY;
            hdr.msg_hdr.msg_controllen = RECV_CONTROL_LEN as _;
            hdr.msg_hdr.msg_flags = 0;
        }
        let fd = socket.as_fd().as_raw_fd();
        // SAFETY: every header points at an iovec, address and control buffer
        // owned by self (`point_headers`), with lengths matching their sizes
        // (just above, or untouched since); `&mut self` guarantees nothing
        // else reads or writes them during the call. The count is the length
        // of `hdrs`, at most MAX_BATCH.
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
        self.received = n as usize;
        // The kernel fills headers 0..n; one past them was at most tried.
        self.dirty = (self.received + 1).min(self.hdrs.len());
        Ok(self.received)
    }

    /// How many buffers the last receive filled.
    pub fn len(&self) -> usize {
        self.received
    }

    /// Whether the last receive filled none.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Buffer `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.received {
            return None;
        }
        let start = i * self.slot_len;
        let len = (self.hdrs[i].msg_len as usize).min(self.slot_len);
        Some(Datagram {
            bytes: &self.buffers[start..start + len],
            meta: meta_of(&self.hdrs[i], &self.addrs[i]),
        })
    }

    /// The buffers of the last receive, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.received).filter_map(|i| self.get(i))
    }

    /// The buffers of the last receive, writable, all borrowed at once: a
    /// reply built in place in one buffer can be queued for sending while the
    /// next one is being built.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = DatagramMut<'_>> {
        let slot_len = self.slot_len;
        self.buffers
            .chunks_exact_mut(slot_len)
            .zip(self.hdrs.iter().zip(&self.addrs))
            .take(self.received)
            .map(move |(slot, (hdr, addr))| {
                let len = (hdr.msg_len as usize).min(slot_len);
                DatagramMut {
                    bytes: &mut slot[..len],
                    meta: meta_of(hdr, addr),
                }
            })
    }
}

fn meta_of(hdr: &libc::mmsghdr, addr: &RawAddr) -> Meta {
    Meta {
        peer: addr.get(hdr.msg_hdr.msg_namelen),
        // SAFETY: msg_control points at this slot's RecvControl
        // (`point_headers`), aligned for cmsghdr, and msg_controllen is at
        // most its size: set so before every receive, then only lowered by
        // the kernel to what it wrote.
        segment_size: unsafe { gro_segment_size(&hdr.msg_hdr) },
        truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_trains_and_keep_single_datagrams_whole() {
        let split = |b: &[u8], s| segments(b, s).map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(split(b"abcdefg", Some(3)), [&b"abc"[..], b"def", b"g"]);
        assert_eq!(split(b"abcdef", Some(3)), [&b"abc"[..], b"def"]);
        assert_eq!(split(b"abc", Some(3)), [&b"abc"[..]]);
        assert_eq!(split(b"abc", Some(8)), [&b"abc"[..]]);
        assert_eq!(split(b"abc", None), [&b"abc"[..]]);
        assert_eq!(split(b"", None), [&b""[..]]);
        assert_eq!(split(b"", Some(4)), [&b""[..]]);
        assert_eq!(split(b"ab", Some(0)), [&b"ab"[..]]);
    }

    /// Pages of `bytes` the kernel has not backed with memory (mincore(2)).
    fn pages_not_resident(bytes: &[u8]) -> usize {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
        let start = bytes.as_ptr() as usize;
        let first_page = start - start % page;
        let len = start + bytes.len() - first_page;
        let mut resident = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range starts page-aligned and covers only pages that
        // hold `bytes`, which are mapped; `resident` has one byte per page.
        let rc = unsafe { libc::mincore(first_page as *mut _, len, resident.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        resident.iter().filter(|&&flags| flags & 1 == 0).count()
    }

    #[test]
    fn every_slot_is_resident_before_the_first_receive() {
        // 8 slots of 64 KiB: allocated by mmap, so untouched pages would
        // show, and under 2 MiB, so one transparent huge page cannot hide them.
        let batch = RecvBatch::new(8, 64 * 1024);
        assert_eq!(pages_not_resident(&batch.buffers), 0);
    }
}
