//! Sending many datagrams per system call with `sendmmsg`.
//!
//! # Why the borrows are sound
//!
//! A [`SendBatch`] owns the kernel-facing arrays (headers, iovecs, addresses,
//! control messages) and is reused across batches, so it cannot carry the
//! lifetime of the bytes it sends. Those bytes are borrowed by a [`Queue`]
//! instead: [`SendBatch::queue`] returns a `Queue<'q, 'd, _>` whose
//! [`Queue::push`] takes `&'d [u8]`, and whose every use (push, flush) is
//! therefore inside `'d`, while each pushed slice lives at least as long as
//! `'d` and, being borrowed shared, cannot change before the flush.
//! The raw pointers the batch keeps are only followed by `sendmmsg` inside a
//! flush of the queue that stored them; every new queue starts empty, so a
//! pointer left behind by an earlier queue (even one leaked with
//! `mem::forget`) is never read again.
//!
//! This lets a server answer from its receive buffers without copying: take
//! the buffers of a [`crate::RecvBatch`] with `iter_mut`, uppercase each in
//! place, and push the resulting shared slices. Replies built elsewhere (in a
//! scratch vector reused per datagram, say) go through [`Queue::push_copy`],
//! which copies them into an arena the batch owns.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::addr::RawAddr;
use crate::cmsg::{SEGMENT_CONTROL_LEN, SegmentControl, write_segment};
use crate::limits::{DEFAULT_BATCH, MAX_BATCH};

/// Marks an entry whose bytes are borrowed rather than in the arena.
const BORROWED: usize = usize::MAX;

/// Reusable storage for batches of outgoing datagrams; see [`SendBatch::queue`].
pub struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    controls: Vec<SegmentControl>,
    /// Per entry: where its bytes start in `arena`, or `BORROWED`.
    arena_offsets: Vec<usize>,
    arena: Vec<u8>,
    len: usize,
    failed: Vec<usize>,
}

// SAFETY: the raw pointers in the arrays point either into storage this struct
// owns or into data borrowed by a live `Queue` (which borrows this struct
// mutably); they are only followed inside `Queue::flush`, on the thread that
// holds the queue. Moving the struct to another thread with stale pointers
// is harmless: a new queue never reads them.
unsafe impl Send for SendBatch {}

/// What a flush did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SendReport {
    /// Messages the kernel accepted (a GSO message counts once).
    pub sent: usize,
    /// Messages that failed and were skipped; their positions in push order
    /// are in [`Queue::failed`].
    pub failed: usize,
    /// The first error a message met, to say why in a log line.
    pub first_error: Option<io::Error>,
}

impl Default for SendBatch {
    /// Room for 64 messages.
    fn default() -> Self {
        SendBatch::new(DEFAULT_BATCH)
    }
}

impl SendBatch {
    /// Room for `capacity` messages (at least 1) before a queue flushes by itself.
    pub fn new(capacity: usize) -> SendBatch {
        let capacity = capacity.max(1);
        SendBatch {
            // SAFETY: mmsghdr is a C struct of integers and raw pointers, for
            // which all-zero bytes is a valid value (null pointers, zero lengths).
            hdrs: vec![unsafe { std::mem::zeroed() }; capacity],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                capacity
            ],
            addrs: vec![RawAddr::zeroed(); capacity],
            controls: vec![SegmentControl([0; SEGMENT_CONTROL_LEN]); capacity],
            arena_offsets: vec![BORROWED; capacity],
            arena: Vec::new(),
            len: 0,
            failed: Vec::new(),
        }
    }

    /// How many messages fit before a queue flushes by itself.
    fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Starts an empty queue of messages to send on `socket`, which may point
    /// into any data that outlives the queue.
    pub fn queue<'q, 'd, S: AsFd>(&'q mut self, socket: &'q S) -> Queue<'q, 'd, S> {
        self.len = 0;
        self.arena.clear();
        self.failed.clear();
        Queue {
            batch: self,
            socket,
            pushed: 0,
            report: SendReport::default(),
            _data: PhantomData,
        }
    }
}

/// Messages waiting to be sent, borrowing their bytes for `'d`.
///
/// Nothing is sent until [`Queue::flush`] or [`Queue::finish`], or until a
/// push finds the batch full. A queue dropped with messages waiting discards
/// them.
pub struct Queue<'q, 'd, S: AsFd> {
    batch: &'q mut SendBatch,
    socket: &'q S,
    /// Messages pushed since the queue began, flushed or not.
    pushed: usize,
    report: SendReport,
    _data: PhantomData<&'d [u8]>,
}

impl<'d, S: AsFd> Queue<'_, 'd, S> {
    /// Queues `bytes` for `peer` (`None` on a connected socket). With
    /// `segment_size`, the kernel splits `bytes` into datagrams of that size
    /// (UDP GSO; the last may be shorter). Flushes first if the batch is full;
    /// the error is that flush's.
    pub fn push(
        &mut self,
        peer: Option<SocketAddr>,
        bytes: &'d [u8],
        segment_size: Option<u16>,
    ) -> io::Result<()> {
        let i = self.next_entry()?;
        self.batch.iovs[i] = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        self.batch.arena_offsets[i] = BORROWED;
        self.fill_header(i, peer, segment_size);
        Ok(())
    }

    /// Queues a copy of `bytes`, for a reply that does not live long enough
    /// to be borrowed. The copy goes to an arena reused by every queue.
    pub fn push_copy(
        &mut self,
        peer: Option<SocketAddr>,
        bytes: &[u8],
        segment_size: Option<u16>,
    ) -> io::Result<()> {
        let i = self.next_entry()?;
        self.batch.arena_offsets[i] = self.batch.arena.len();
        self.batch.arena.extend_from_slice(bytes);
        // The arena may still move as it grows: the pointer is set at flush.
        self.batch.iovs[i] = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: bytes.len(),
        };
        self.fill_header(i, peer, segment_size);
        Ok(())
    }

    /// Messages queued and not yet flushed.
    pub fn len(&self) -> usize {
        self.batch.len
    }

    /// Whether no message waits to be flushed.
    pub fn is_empty(&self) -> bool {
        self.batch.len == 0
    }

    /// Positions (in push order, counting from 0 for this queue) of the
    /// messages that failed so far.
    pub fn failed(&self) -> &[usize] {
        &self.batch.failed
    }

    /// What was sent and what failed so far.
    pub fn report(&self) -> &SendReport {
        &self.report
    }

    /// Sends everything queued and ends the queue with its report.
    pub fn finish(mut self) -> io::Result<SendReport> {
        self.flush()?;
        Ok(std::mem::take(&mut self.report))
    }

    fn next_entry(&mut self) -> io::Result<usize> {
        if self.batch.len == self.batch.capacity() {
            self.flush()?;
        }
        let i = self.batch.len;
        self.batch.len += 1;
        self.pushed += 1;
        Ok(i)
    }

    fn fill_header(&mut self, i: usize, peer: Option<SocketAddr>, segment_size: Option<u16>) {
        let batch = &mut *self.batch;
        let hdr = &mut batch.hdrs[i].msg_hdr;
        match peer {
            Some(peer) => {
                hdr.msg_namelen = batch.addrs[i].set(peer);
                hdr.msg_name = (&raw mut batch.addrs[i]).cast();
            }
            None => {
                hdr.msg_name = std::ptr::null_mut();
                hdr.msg_namelen = 0;
            }
        }
        hdr.msg_iov = &raw mut batch.iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_flags = 0;
        match segment_size.filter(|&s| s > 0) {
            Some(size) => {
                let control = &raw mut batch.controls[i];
                write_segment(control, size);
                hdr.msg_control = control.cast();
                hdr.msg_controllen = SEGMENT_CONTROL_LEN as _;
            }
            None => {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
        }
    }

    /// Sends the queued messages, as few `sendmmsg` calls as the kernel
    /// allows. A message that fails is counted and skipped and the rest are
    /// still sent; if the socket would block, the rest are counted as failed.
    /// Only a broken socket (not a socket, bad descriptor) is an error.
    pub fn flush(&mut self) -> io::Result<()> {
        let batch = &mut *self.batch;
        let len = std::mem::take(&mut batch.len);
        let first = self.pushed - len;
        for i in 0..len {
            if batch.arena_offsets[i] != BORROWED {
                // SAFETY: offset + iov_len <= arena.len(): push_copy appended
                // exactly iov_len bytes at this offset, and the arena only
                // grows until the next queue.
                batch.iovs[i].iov_base =
                    unsafe { batch.arena.as_mut_ptr().add(batch.arena_offsets[i]) }.cast();
            }
            // Every pointer into the batch's own arrays is taken afresh, after
            // the last push, so no later access to the arrays has outdated it.
            let hdr = &mut batch.hdrs[i].msg_hdr;
            hdr.msg_iov = &raw mut batch.iovs[i];
            if !hdr.msg_name.is_null() {
                hdr.msg_name = (&raw mut batch.addrs[i]).cast();
            }
            if !hdr.msg_control.is_null() {
                hdr.msg_control = (&raw mut batch.controls[i]).cast();
            }
        }
        let fd = self.socket.as_fd();
        let mut done = 0;
        while done < len {
            let count = (len - done).min(MAX_BATCH);
            match send_some(fd, &mut batch.hdrs[done..done + count]) {
                Ok(sent) => {
                    self.report.sent += sent;
                    done += sent;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_broken_socket(&e) => return Err(e),
                Err(e) => {
                    let skipped = if e.kind() == io::ErrorKind::WouldBlock {
                        len - done
                    } else {
                        1
                    };
                    batch.failed.extend(first + done..first + done + skipped);
                    self.report.failed += skipped;
                    self.report.first_error.get_or_insert(e);
                    done += skipped;
                }
            }
        }
        Ok(())
    }
}

/// One `sendmmsg` call: how many of `hdrs`, from the first, the kernel took.
/// An error means the first message failed.
fn send_some(fd: BorrowedFd<'_>, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: each header was filled by push/push_copy in this queue: its
    // iovec points at bytes borrowed for 'd (alive: we are inside a method of
    // the queue) or into the arena (fixed up just before), its name and
    // control at this batch's storage or null with zero length. The count is
    // the slice's length, at most MAX_BATCH.
    let n = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 && !hdrs.is_empty() {
        // Not documented to happen; treat it as a failure of the first message
        // rather than retry it forever.
        return Err(io::Error::other("sendmmsg sent nothing"));
    }
    Ok(n as usize)
}

/// Errors that say the socket itself is unusable, as opposed to one message
/// or the network failing (ECONNREFUSED, ENOBUFS, EPERM, EMSGSIZE, ...).
fn is_broken_socket(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT)
    )
}
