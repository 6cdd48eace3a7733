//! Receiving datagrams a batch at a time into slots allocated once: many
//! per system call on the batched path (`recvmmsg`), one per call on the
//! portable path, behind one interface.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;

use crate::errors::{RecvErrorClass, classify_recv_error};
use crate::io::Io;
use crate::limits::MAX_BATCH;
#[cfg(target_os = "linux")]
use crate::mmsg::RecvHeaders;
use crate::single;
use crate::slots::{Datagram, DatagramMut, Meta, Slots};
use crate::socket::OsSocket;

/// Slots for up to N datagrams, filled by one receive.
///
/// Buffers and headers are allocated once, in [`RecvBatch::new`], and reused
/// by every receive: the hot path allocates nothing. Each receive replaces
/// the previous batch's datagrams. The slots are made resident when the
/// batch is built, so the batch's memory is all there from the start.
pub struct RecvBatch {
    slots: Slots,
    path: Path,
    received: usize,
    /// An error the portable path met after the first datagram of a
    /// receive, for the next receive to report.
    pending: Option<io::Error>,
}

/// How a batch receives, and where each path keeps what it learnt of each
/// slot.
enum Path {
    /// `recvmmsg`, into headers that point at the slots.
    #[cfg(target_os = "linux")]
    Batched(RecvHeaders),
    /// One receive per slot; per slot, its length and [`Meta`] as the last
    /// receive left them.
    Portable(Vec<(usize, Meta)>),
}

impl Path {
    /// The path `io` asks for, over `slots` ([`Io::Portable`] where `io` is
    /// not available).
    fn new(io: Io, slots: &mut Slots) -> Path {
        match io {
            #[cfg(target_os = "linux")]
            Io::Batched => Path::Batched(RecvHeaders::new(slots)),
            _ => Path::Portable(vec![(0, Meta::single(None, false)); slots.count()]),
        }
    }

    /// Slot `i`'s length and meta, after a receive that filled it.
    fn datagram(&self, i: usize) -> (usize, Meta) {
        match self {
            #[cfg(target_os = "linux")]
            Path::Batched(headers) => headers.datagram(i),
            Path::Portable(slots) => slots[i],
        }
    }
}

impl RecvBatch {
    /// A batch of `slots` buffers of `slot_len` bytes each, on this
    /// system's fastest path ([`Io::default`]). `slots` is taken between 1
    /// and [`MAX_BATCH`], `slot_len` at least 1.
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        RecvBatch::with_io(slots, slot_len, Io::default())
    }

    /// The same on the path `io` ([`Io::Portable`] where `io` is not
    /// available: see [`RecvBatch::io`]).
    pub fn with_io(slots: usize, slot_len: usize, io: Io) -> RecvBatch {
        let mut slots = Slots::new(slots.clamp(1, MAX_BATCH), slot_len);
        let path = Path::new(io, &mut slots);
        RecvBatch {
            slots,
            path,
            received: 0,
            pending: None,
        }
    }

    /// The path this batch receives on.
    pub fn io(&self) -> Io {
        match self.path {
            #[cfg(target_os = "linux")]
            Path::Batched(_) => Io::Batched,
            Path::Portable(_) => Io::Portable,
        }
    }

    /// How many slots the batch has.
    pub fn capacity(&self) -> usize {
        self.slots.count()
    }

    /// The size of each slot: longer datagrams arrive truncated.
    pub fn slot_len(&self) -> usize {
        self.slots.slot_len()
    }

    /// Waits for at least one datagram, then takes every one already queued,
    /// up to the capacity (`recvmmsg` with `MSG_WAITFORONE`, or one receive
    /// per datagram). Returns how many buffers were filled. A read timeout
    /// on the socket (`SO_RCVTIMEO`) ends the wait with an error of kind
    /// `WouldBlock` (Unix) or `TimedOut` (Windows), as `recv` does.
    pub fn recv(&mut self, socket: &impl OsSocket) -> io::Result<usize> {
        self.receive(socket, true)
    }

    /// Takes the datagrams already queued without waiting; `Ok(0)` when
    /// there are none.
    pub fn try_recv(&mut self, socket: &impl OsSocket) -> io::Result<usize> {
        match self.receive(socket, false) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    fn receive(&mut self, socket: &impl OsSocket, wait: bool) -> io::Result<usize> {
        self.received = 0;
        self.received = match &mut self.path {
            #[cfg(target_os = "linux")]
            Path::Batched(headers) => {
                let fd = crate::socket::raw(socket);
                // SAFETY: the headers were made for `self.slots` (`with_io`),
                // which live as long as `self` and are never resized; `&mut
                // self` says no slice of them is alive during the call.
                unsafe { headers.recv(fd, wait) }?
            }
            Path::Portable(metas) => {
                one_by_one(socket, &mut self.slots, metas, &mut self.pending, wait)?
            }
        };
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
        let (len, meta) = self.path.datagram(i);
        Some(Datagram {
            bytes: self.slots.get(i, len),
            meta,
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
        let path = &self.path;
        self.slots
            .iter_mut()
            .take(self.received)
            .enumerate()
            .map(move |(i, slot)| {
                let (len, meta) = path.datagram(i);
                let len = len.min(slot.len());
                DatagramMut {
                    bytes: &mut slot[..len],
                    meta,
                }
            })
    }
}

/// The portable path's receive: waits for the first datagram (with
/// `wait`), then takes those already queued, one system call each, up to
/// the slots. An error after the first datagram ends the batch and is kept
/// for the next receive to report before it receives anything, as the
/// kernel does for `recvmmsg`; a timeout or a signal there only ends the
/// batch.
fn one_by_one(
    socket: &impl OsSocket,
    slots: &mut Slots,
    metas: &mut [(usize, Meta)],
    pending: &mut Option<io::Error>,
    wait: bool,
) -> io::Result<usize> {
    if let Some(err) = pending.take() {
        return Err(err);
    }
    let mut received = 0;
    for (slot, meta) in slots.iter_mut().zip(metas) {
        match single::recv(socket, slot, wait && received == 0) {
            Ok(Some(got)) => {
                *meta = got;
                received += 1;
            }
            Ok(None) => break,
            Err(err) if received == 0 => return Err(err),
            Err(err) => {
                if classify_recv_error(&err) != RecvErrorClass::Idle {
                    *pending = Some(err);
                }
                break;
            }
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `bytes` the kernel has not backed with memory (mincore(2)).
    #[cfg(unix)]
    fn pages_not_resident(bytes: &[u8]) -> usize {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
        let start = bytes.as_ptr() as usize;
        let first_page = start - start % page;
        let len = start + bytes.len() - first_page;
        let mut resident = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range starts page-aligned and covers only pages that
        // hold `bytes`, which are mapped; `resident` has one byte per page
        // (`unsigned char` on Linux, `char` on the BSDs: `cast` fits both).
        let rc = unsafe {
            libc::mincore(
                first_page as *mut libc::c_void,
                len,
                resident.as_mut_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        resident.iter().filter(|&&flags| flags & 1 == 0).count()
    }

    #[cfg(unix)]
    #[test]
    fn every_slot_is_resident_before_the_first_receive() {
        // 8 slots of 64 KiB: allocated by mmap, so untouched pages would
        // show, and under 2 MiB, so one transparent huge page cannot hide them.
        for io in Io::ALL {
            let batch = RecvBatch::with_io(8, 64 * 1024, io);
            assert_eq!(pages_not_resident(batch.slots.bytes()), 0, "{io}");
        }
    }

    #[test]
    fn a_batch_says_which_path_it_took() {
        for io in Io::ALL {
            let batch = RecvBatch::with_io(4, 16, io);
            let expected = if io.is_available() { io } else { Io::Portable };
            assert_eq!(batch.io(), expected);
            assert_eq!((batch.capacity(), batch.slot_len()), (4, 16));
            assert!(batch.is_empty() && batch.get(0).is_none());
        }
        assert_eq!(RecvBatch::new(0, 0).capacity(), 1);
        assert_eq!(RecvBatch::new(usize::MAX, 1).capacity(), MAX_BATCH);
    }
}
