//! The UDP worker's loop over io_uring (`--io-uring`, Linux only): a trial
//! of issue 15, measured against the recvmmsg/sendmmsg loop of
//! [`Worker::run`] on the same rows.
//!
//! One multishot `RecvMsg` takes datagrams into a ring of provided buffers
//! (no system call per batch to ask for more); each datagram is answered as
//! in the batched loop ([`State::reply_to`]: the same policy, transform and
//! counters), in place in its buffer when it is ASCII, and its reply goes
//! out as one `SendMsg` of a batch submitted with the next wait. The socket
//! is a registered file. A buffer goes back to the ring once its reply is
//! sent. GRO and busy-polling are not offered here (the option refuses
//! them), and on a stop the loop ends without draining the socket.

use std::alloc::Layout;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use anyhow::Context;
use io_uring::types::{BufRingEntry, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};
use tracing::debug;

use super::{Queued, Reply, Worker};
use crate::binding::RECV_TIMEOUT;
use crate::counters::{Counters, Fate, Outcome};

/// Provided buffers: a power of two, as the kernel's buffer ring wants.
const BUFFERS: u16 = 128;
/// The buffer group of the receive.
const GROUP: u16 = 0;
/// The multishot receive's `user_data`; a send's is its slot.
const RECV: u64 = u64::MAX;
/// `struct io_uring_recvmsg_out`, which the kernel writes first in each
/// buffer (four `u32`s).
const RECVMSG_OUT: usize = 16;
/// Room for the sender's address: an IPv6 one is the longest.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// One provided buffer: the header, the address, then any datagram.
const BUFFER_LEN: usize = RECVMSG_OUT + NAME_LEN + upcase_proto::RECV_BUFFER_LEN;
/// Sends in flight at most: every buffer's reply, and as many copies.
const SLOTS: usize = 2 * BUFFERS as usize;

/// The ring of buffer descriptors the kernel takes receive buffers from:
/// page-aligned memory the kernel reads, which this worker owns.
struct BufRing {
    base: *mut BufRingEntry,
    layout: Layout,
    /// The next tail, published by [`BufRing::publish`].
    tail: u16,
}

impl BufRing {
    fn new() -> anyhow::Result<BufRing> {
        let layout = Layout::from_size_align(
            usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .context("buffer ring layout")?;
        // SAFETY: the layout has a non-zero size; null is checked below.
        #[allow(unsafe_code)]
        let base = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if base.is_null() {
            anyhow::bail!("cannot allocate the io_uring buffer ring");
        }
        Ok(BufRing {
            base,
            layout,
            tail: 0,
        })
    }

    /// Offers buffer `bid` (at `addr`, `BUFFER_LEN` bytes) to the kernel,
    /// from the next [`BufRing::publish`] on.
    fn push(&mut self, bid: u16, addr: *mut u8) {
        let index = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `index` < BUFFERS, the entries `alloc_zeroed` made; the
        // kernel reads only entries before the published tail, and this
        // one is at or past it.
        #[allow(unsafe_code)]
        let entry = unsafe { &mut *self.base.add(index) };
        entry.set_addr(addr as u64);
        entry.set_len(BUFFER_LEN as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see every buffer pushed so far.
    fn publish(&self) {
        // SAFETY: `base` is the ring's first entry, initialised (zeroed),
        // whose `resv` field is the ring's tail, a naturally aligned u16
        // that the kernel only reads; the release store orders the entries
        // written by `push` before it.
        #[allow(unsafe_code)]
        let tail = unsafe { &*BufRingEntry::tail(self.base).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that read it
        // is dropped first (it is declared before this in `Uring`).
        #[allow(unsafe_code)]
        unsafe {
            std::alloc::dealloc(self.base.cast(), self.layout);
        }
    }
}

/// One send in flight: the `msghdr` the kernel reads, what it points at,
/// and what to count once the kernel says how it went.
struct SendSlot {
    peer: socket2::SockAddr,
    iov: libc::iovec,
    msg: libc::msghdr,
    /// The receive buffer the reply lies in, given back after the send.
    buffer: Option<u16>,
    /// The reply when it was built in the scratch, not in place.
    copy: Vec<u8>,
    queued: Option<Queued>,
}

/// The ring, the memory it reads and writes, and the send slots. Fields
/// drop in order: the ring (cancelling what is in flight) before the
/// memory it used.
struct Uring {
    ring: IoUring,
    bufring: BufRing,
    buffers: Vec<u8>,
    slots: Box<[SendSlot]>,
    free: Vec<usize>,
    /// The receive's `msghdr`: only its name and control lengths count.
    recv_msg: Box<libc::msghdr>,
    completions: Vec<(u64, i32, u32)>,
}

impl Worker {
    /// [`Worker::run`] over io_uring.
    pub(super) fn run_uring(mut self, stop: &AtomicBool) -> anyhow::Result<Counters> {
        let mut uring = Uring::new(self.socket.as_raw_fd())
            .with_context(|| format!("cannot set up io_uring on {}", self.local))?;
        uring.arm_recv()?;
        let timeout = Timespec::from(RECV_TIMEOUT);
        while !stop.load(Ordering::Relaxed) {
            let args = SubmitArgs::new().timespec(&timeout);
            match uring.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(err) => return Err(anyhow::Error::new(err).context("io_uring_enter")),
            }
            self.answer_completions(&mut uring)?;
        }
        debug!("worker on {} stops: {}", self.local, self.state.counters);
        Ok(self.state.counters)
    }

    /// Answers every receive completed, settles every send, and gives the
    /// kernel back the buffers that are free again.
    fn answer_completions(&mut self, uring: &mut Uring) -> anyhow::Result<()> {
        let received_before = self.state.counters.received;
        uring.completions.clear();
        uring.completions.extend(
            uring
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        let mut rearm = false;
        for i in 0..uring.completions.len() {
            let (user_data, result, flags) = uring.completions[i];
            if user_data != RECV {
                uring.sent(user_data as usize, result, &mut self.state.counters);
                continue;
            }
            rearm |= !cqueue::more(flags);
            if result < 0 {
                let err = io::Error::from_raw_os_error(-result);
                // Out of buffers ends the multishot receive: rearmed below,
                // once the replies sent have given theirs back.
                if result != -libc::ENOBUFS {
                    self.on_recv_error(err)?;
                }
                continue;
            }
            if let Some(bid) = cqueue::buffer_select(flags) {
                self.answer_buffer(uring, bid, result as usize)?;
            }
        }
        uring.bufring.publish();
        if rearm {
            uring.arm_recv()?;
        }
        let state = &mut self.state;
        let batch = state.counters.received - received_before;
        if batch > 0 {
            state.counters.batches.observe(batch);
        }
        state.live.publish(&state.counters);
        Ok(())
    }

    /// Answers the datagram in buffer `bid` (`len` bytes with the kernel's
    /// header and the address), queueing its reply's send.
    fn answer_buffer(&mut self, uring: &mut Uring, bid: u16, len: usize) -> anyhow::Result<()> {
        let start = usize::from(bid) * BUFFER_LEN;
        let buffer = &mut uring.buffers[start..start + len.min(BUFFER_LEN)];
        let Ok(out) = RecvMsgOut::parse(buffer, &uring.recv_msg) else {
            uring.give_back(bid);
            return Ok(());
        };
        let peer = decode_peer(out.name_data());
        let truncated = out.is_payload_truncated();
        let payload_at = out.payload_data().as_ptr() as usize - buffer.as_ptr() as usize;
        let payload_len = out.payload_data().len();
        let Some(peer) = peer else {
            self.state
                .counters
                .record(&Outcome::unanswerable(Fate::NoPeer));
            uring.give_back(bid);
            return Ok(());
        };
        if truncated {
            self.state
                .counters
                .record(&Outcome::unanswerable(Fate::Truncated));
            uring.give_back(bid);
            return Ok(());
        }
        let datagram = &mut buffer[payload_at..payload_at + payload_len];
        let Some(reply) = self.state.reply_to(datagram, peer) else {
            uring.give_back(bid);
            return Ok(());
        };
        let queued = self.state.to_queued(reply, payload_len, peer);
        let Some(index) = uring.free.pop() else {
            // Every slot is in flight: the replies are not being sent as
            // fast as they come, so this one fails as a full socket buffer
            // would fail it.
            self.state.counters.record(&queued.outcome(false));
            uring.give_back(bid);
            return Ok(());
        };
        let slot = &mut uring.slots[index];
        slot.peer = socket2::SockAddr::from(peer);
        match reply {
            Reply::InPlace { len } => {
                slot.iov = libc::iovec {
                    iov_base: datagram.as_mut_ptr().cast(),
                    iov_len: len,
                };
                slot.buffer = Some(bid);
            }
            Reply::InScratch { .. } => {
                slot.copy.clear();
                slot.copy.extend_from_slice(&self.state.scratch);
                slot.iov = libc::iovec {
                    iov_base: slot.copy.as_mut_ptr().cast(),
                    iov_len: slot.copy.len(),
                };
                slot.buffer = None;
                uring.give_back(bid);
            }
        }
        let slot = &mut uring.slots[index];
        slot.msg.msg_name = slot.peer.as_ptr().cast_mut().cast();
        slot.msg.msg_namelen = slot.peer.len();
        slot.msg.msg_iov = &mut slot.iov;
        slot.msg.msg_iovlen = 1;
        slot.queued = Some(queued);
        let send = opcode::SendMsg::new(Fixed(0), &slot.msg)
            .build()
            .user_data(index as u64);
        uring.push(&send)
    }
}

impl Uring {
    fn new(fd: std::os::fd::RawFd) -> anyhow::Result<Uring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(2 * SLOTS as u32)
            .context("io_uring_setup")?;
        ring.submitter()
            .register_files(&[fd])
            .context("registering the socket")?;
        let mut bufring = BufRing::new()?;
        // Written, not only allocated, so the buffers are resident before
        // the ready line, as the batched loop's slots are.
        let mut buffers = vec![0xA5_u8; usize::from(BUFFERS) * BUFFER_LEN];
        // SAFETY: `bufring` holds BUFFERS entries, page-aligned, and lives
        // in the same `Uring` as the ring, which is dropped first.
        #[allow(unsafe_code)]
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufring.base as u64, BUFFERS, GROUP, 0)
                .context("registering the buffer ring")?;
        }
        for bid in 0..BUFFERS {
            let addr = buffers[usize::from(bid) * BUFFER_LEN..].as_mut_ptr();
            bufring.push(bid, addr);
        }
        bufring.publish();
        // SAFETY: an all-zero msghdr is a valid one (null pointers, zero
        // lengths).
        #[allow(unsafe_code)]
        let zero_msg: libc::msghdr = unsafe { std::mem::zeroed() };
        let slots = (0..SLOTS)
            .map(|_| SendSlot {
                peer: socket2::SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                msg: zero_msg,
                buffer: None,
                copy: Vec::new(),
                queued: None,
            })
            .collect();
        let mut recv_msg = Box::new(zero_msg);
        recv_msg.msg_namelen = NAME_LEN as u32;
        Ok(Uring {
            ring,
            bufring,
            buffers,
            slots,
            free: (0..SLOTS).rev().collect(),
            recv_msg,
            completions: Vec::with_capacity(2 * SLOTS),
        })
    }

    /// Queues the multishot receive, for the next submit.
    fn arm_recv(&mut self) -> anyhow::Result<()> {
        let recv = opcode::RecvMsgMulti::new(Fixed(0), &*self.recv_msg, GROUP)
            .build()
            .user_data(RECV);
        self.push(&recv)
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> anyhow::Result<()> {
        loop {
            // SAFETY: what the entry points at lives until its completion:
            // the receive's msghdr and the send slots are in `self`, which
            // outlives the ring's use of them (a slot is reused only after
            // its completion; the ring is dropped before the rest).
            #[allow(unsafe_code)]
            let pushed = unsafe { self.ring.submission().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            // Full: hand the kernel what is queued, then try again.
            self.ring.submit().context("io_uring_enter")?;
        }
    }

    /// Buffer `bid` is free again: offered to the kernel at the next publish.
    fn give_back(&mut self, bid: u16) {
        let addr = self.buffers[usize::from(bid) * BUFFER_LEN..].as_mut_ptr();
        self.bufring.push(bid, addr);
    }

    /// The send of slot `index` completed with `result`.
    fn sent(&mut self, index: usize, result: i32, counters: &mut Counters) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if let Some(queued) = slot.queued.take() {
            counters.record(&queued.outcome(result >= 0));
        }
        if let Some(bid) = slot.buffer.take() {
            self.give_back(bid);
        }
        self.free.push(index);
    }
}

/// The sender of a received datagram, from the `sockaddr` the kernel
/// wrote: IPv4 or IPv6, else none.
fn decode_peer(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(name.get(..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddrV4::new(Ipv4Addr::from(ip), port).into())
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_decode_from_the_kernels_sockaddr() {
        let v4 = socket2::SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 4000)));
        // SAFETY: as_ptr points at len() initialised bytes of the address.
        #[allow(unsafe_code)]
        let bytes =
            unsafe { std::slice::from_raw_parts(v4.as_ptr().cast::<u8>(), v4.len() as usize) };
        assert_eq!(
            decode_peer(bytes),
            Some(SocketAddr::from(([127, 0, 0, 1], 4000)))
        );
        let addr: SocketAddr = "[::1]:5000".parse().expect("an address");
        let v6 = socket2::SockAddr::from(addr);
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let bytes =
            unsafe { std::slice::from_raw_parts(v6.as_ptr().cast::<u8>(), v6.len() as usize) };
        assert_eq!(decode_peer(bytes), Some(addr));
        assert_eq!(decode_peer(&[0; 3]), None);
        assert_eq!(decode_peer(&[0; 16]), None, "AF_UNSPEC");
    }

    #[test]
    fn a_buffer_holds_the_header_an_address_and_any_datagram() {
        const { assert!(BUFFERS.is_power_of_two()) };
        const { assert!(BUFFER_LEN - RECVMSG_OUT - NAME_LEN > upcase_proto::MAX_PAYLOAD) };
    }
}
