//! Sending a batch of datagrams: many per system call on the batched path
//! (`sendmmsg`), one per call on the portable path, behind one interface.
//!
//! # Why the borrows are sound
//!
//! A [`SendBatch`] owns the storage its messages are queued in (and, on the
//! batched path, the kernel-facing headers) and is reused across batches,
//! so it cannot carry the lifetime of the bytes it sends. Those bytes are
//! borrowed by a [`Queue`] instead: [`SendBatch::queue`] returns a
//! `Queue<'q, 'd, _>` whose [`Queue::push`] takes `&'d [u8]`, and whose
//! every use (push, flush) is therefore inside `'d`, while each pushed slice
//! lives at least as long as `'d` and, being borrowed shared, cannot change
//! before the flush. The raw pointers the batch keeps are only followed
//! inside a flush of the queue that stored them; every new queue starts
//! empty, so a pointer left behind by an earlier queue (even one leaked with
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

use crate::errors::is_broken_socket;
use crate::io::Io;
use crate::limits::DEFAULT_BATCH;
#[cfg(target_os = "linux")]
use crate::limits::MAX_BATCH;
#[cfg(target_os = "linux")]
use crate::mmsg::SendHeaders;
use crate::single;
use crate::socket::OsSocket;

/// Reusable storage for batches of outgoing datagrams; see [`SendBatch::queue`].
pub struct SendBatch {
    /// The batched path's headers, or none for the portable path.
    #[cfg(target_os = "linux")]
    headers: Option<SendHeaders>,
    /// The messages queued since the last flush; never beyond `capacity`.
    messages: Vec<Message>,
    capacity: usize,
    arena: Vec<u8>,
    failed: Vec<usize>,
}

// SAFETY: the raw pointers in `messages` (and the headers) point either into
// storage this struct owns or into data borrowed by a live `Queue` (which
// borrows this struct mutably); they are only followed inside
// `Queue::flush`, on the thread that holds the queue. Moving the struct to
// another thread with stale pointers is harmless: a new queue never reads
// them.
unsafe impl Send for SendBatch {}

/// One queued message: where its bytes are, and where they go.
struct Message {
    peer: Option<SocketAddr>,
    bytes: Bytes,
    len: usize,
    segment_size: Option<u16>,
}

/// Where a queued message's bytes are.
enum Bytes {
    /// Borrowed by the queue for its `'d`.
    Borrowed(*const u8),
    /// In the arena, from this offset.
    Arena(usize),
}

impl Message {
    /// The message's bytes.
    ///
    /// # Safety
    ///
    /// Called inside a flush of the queue that pushed the message, so that
    /// bytes it borrowed are alive and unchanged (see the module's comment).
    unsafe fn bytes<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        match self.bytes {
            // SAFETY: by the caller's promise, `len` bytes borrowed from a
            // live `&'d [u8]` that nothing can change before the flush ends.
            Bytes::Borrowed(start) => unsafe { std::slice::from_raw_parts(start, self.len) },
            // push_copy appended exactly `len` bytes at this offset, and the
            // arena only grows until the flush.
            Bytes::Arena(offset) => &arena[offset..offset + self.len],
        }
    }
}

/// What a flush did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SendReport {
    /// Messages the system accepted (a GSO message counts once).
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
    /// Room for `capacity` messages (at least 1) before a queue flushes by
    /// itself, on this system's fastest path ([`Io::default`]).
    pub fn new(capacity: usize) -> SendBatch {
        SendBatch::with_io(capacity, Io::default())
    }

    /// The same on the path `io` ([`Io::Portable`] where `io` is not
    /// available: see [`SendBatch::io`]).
    pub fn with_io(capacity: usize, io: Io) -> SendBatch {
        let capacity = capacity.max(1);
        #[cfg(not(target_os = "linux"))]
        let _ = io; // the portable path is the only one here
        SendBatch {
            #[cfg(target_os = "linux")]
            headers: (io == Io::Batched).then(|| SendHeaders::new(capacity)),
            messages: Vec::with_capacity(capacity),
            capacity,
            arena: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The path this batch sends on.
    pub fn io(&self) -> Io {
        #[cfg(target_os = "linux")]
        if self.headers.is_some() {
            return Io::Batched;
        }
        Io::Portable
    }

    /// Starts an empty queue of messages to send on `socket`, which may point
    /// into any data that outlives the queue.
    pub fn queue<'q, 'd, S: OsSocket>(&'q mut self, socket: &'q S) -> Queue<'q, 'd, S> {
        self.messages.clear();
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
pub struct Queue<'q, 'd, S: OsSocket> {
    batch: &'q mut SendBatch,
    socket: &'q S,
    /// Messages pushed since the queue began, flushed or not.
    pushed: usize,
    report: SendReport,
    _data: PhantomData<&'d [u8]>,
}

impl<'d, S: OsSocket> Queue<'_, 'd, S> {
    /// Queues `bytes` for `peer` (`None` on a connected socket). With
    /// `segment_size`, the datagrams are `bytes` cut into that size (the
    /// last may be shorter): one UDP GSO send on the batched path, one
    /// datagram after another on the portable path. Flushes first if the
    /// batch is full; the error is that flush's.
    pub fn push(
        &mut self,
        peer: Option<SocketAddr>,
        bytes: &'d [u8],
        segment_size: Option<u16>,
    ) -> io::Result<()> {
        self.make_room()?;
        self.batch.messages.push(Message {
            peer,
            bytes: Bytes::Borrowed(bytes.as_ptr()),
            len: bytes.len(),
            segment_size,
        });
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
        self.make_room()?;
        let offset = self.batch.arena.len();
        self.batch.arena.extend_from_slice(bytes);
        self.batch.messages.push(Message {
            peer,
            bytes: Bytes::Arena(offset),
            len: bytes.len(),
            segment_size,
        });
        Ok(())
    }

    /// Messages queued and not yet flushed.
    pub fn len(&self) -> usize {
        self.batch.messages.len()
    }

    /// Whether no message waits to be flushed.
    pub fn is_empty(&self) -> bool {
        self.batch.messages.is_empty()
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

    /// Flushes if the batch is full, and counts the message about to be
    /// pushed.
    fn make_room(&mut self) -> io::Result<()> {
        if self.batch.messages.len() == self.batch.capacity {
            self.flush()?;
        }
        self.pushed += 1;
        Ok(())
    }

    /// Sends the queued messages: as few `sendmmsg` calls as the kernel
    /// allows on the batched path, one send per datagram on the portable
    /// path. A message that fails is counted and skipped and the rest are
    /// still sent; if the socket would block, the rest are counted as failed.
    /// Only a broken socket (not a socket, bad descriptor) is an error.
    pub fn flush(&mut self) -> io::Result<()> {
        let batch = &mut *self.batch;
        let len = batch.messages.len();
        let mut tally = Tally {
            report: &mut self.report,
            failed: &mut batch.failed,
            first: self.pushed - len,
            len,
        };
        let (messages, arena) = (&batch.messages, &batch.arena);
        let socket = self.socket;
        let portable = |tally: &mut Tally<'_>| {
            tally.send_all(|done| {
                let message = &messages[done];
                // SAFETY: inside this queue's flush.
                let bytes = unsafe { message.bytes(arena) };
                single::send(socket, message.peer, bytes, message.segment_size).map(|()| 1)
            })
        };
        #[cfg(target_os = "linux")]
        let result = match batch.headers.as_mut() {
            Some(headers) => {
                for (i, message) in messages.iter().enumerate() {
                    // SAFETY: inside this queue's flush.
                    let bytes = unsafe { message.bytes(arena) };
                    headers.set(i, message.peer, bytes, message.segment_size);
                }
                let fd = crate::socket::raw(socket);
                tally.send_all(|done| {
                    let count = (len - done).min(MAX_BATCH);
                    // SAFETY: every message in range was set just above from
                    // bytes alive until this flush ends; the range is within
                    // the queued messages, so within the capacity.
                    unsafe { headers.send(fd, done..done + count) }
                })
            }
            None => portable(&mut tally),
        };
        #[cfg(not(target_os = "linux"))]
        let result = portable(&mut tally);
        batch.messages.clear();
        batch.arena.clear();
        result
    }
}

/// The counts one flush keeps, whichever path sends.
struct Tally<'a> {
    report: &'a mut SendReport,
    failed: &'a mut Vec<usize>,
    /// The push position of the flush's first message.
    first: usize,
    /// How many messages the flush sends.
    len: usize,
}

impl Tally<'_> {
    /// Sends every message with `send`, which sends from message `done` on
    /// and says how many it sent (at least one), or fails for message
    /// `done`: counted and skipped, or, when the socket would block, counted
    /// with every message after it. A signal retries; a broken socket ends
    /// the flush with its error.
    fn send_all(&mut self, mut send: impl FnMut(usize) -> io::Result<usize>) -> io::Result<()> {
        let mut done = 0;
        while done < self.len {
            match send(done) {
                Ok(sent) => {
                    self.report.sent += sent;
                    done += sent;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_broken_socket(&e) => return Err(e),
                Err(e) => {
                    let skipped = if e.kind() == io::ErrorKind::WouldBlock {
                        self.len - done
                    } else {
                        1
                    };
                    let at = self.first + done;
                    self.failed.extend(at..at + skipped);
                    self.report.failed += skipped;
                    self.report.first_error.get_or_insert(e);
                    done += skipped;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_says_which_path_it_took() {
        for io in Io::ALL {
            let expected = if io.is_available() { io } else { Io::Portable };
            assert_eq!(SendBatch::with_io(4, io).io(), expected);
        }
        assert_eq!(SendBatch::default().io(), Io::default());
        assert_eq!(SendBatch::new(0).capacity, 1);
    }

    #[test]
    fn failures_are_counted_at_their_push_positions() {
        let mut report = SendReport::default();
        let mut failed = Vec::new();
        let mut tally = Tally {
            report: &mut report,
            failed: &mut failed,
            first: 10,
            len: 6,
        };
        // Message 1 fails, a signal interrupts message 2 once, 3 and 4 go
        // in one call, then the socket would block for message 5.
        let mut calls = Vec::new();
        let mut interrupted = false;
        tally
            .send_all(|done| {
                calls.push(done);
                match done {
                    1 => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                    2 if !interrupted => {
                        interrupted = true;
                        Err(io::Error::from(io::ErrorKind::Interrupted))
                    }
                    3 => Ok(2),
                    5 => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                    _ => Ok(1),
                }
            })
            .unwrap();
        assert_eq!(calls, [0, 1, 2, 2, 3, 5]);
        assert_eq!((report.sent, report.failed), (4, 2));
        assert_eq!(failed, [11, 15]);
        assert_eq!(
            report.first_error.map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }
}
