//! The receive slots, allocated once and made resident at once, and what a
//! received buffer is: its bytes and its [`Meta`]. Both datagram paths fill
//! the same slots.

use std::net::SocketAddr;

/// What the system said about one received buffer, besides its bytes.
/// More may come (a destination address, ECN bits): hence non-exhaustive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Meta {
    /// The sender (`None` if the system gave no IP address).
    pub peer: Option<SocketAddr>,
    /// With UDP GRO on, the size of each datagram of a coalesced train: the
    /// buffer holds datagrams of this size back to back, the last one possibly
    /// shorter. `None` for an ordinary single datagram (always, on the
    /// portable path).
    pub segment_size: Option<u16>,
    /// The datagram (or train) was longer than the slot and was cut (on
    /// Windows: the receive failed with `WSAEMSGSIZE`, which says the same).
    pub truncated: bool,
}

impl Meta {
    /// A single datagram from `peer`.
    pub(crate) fn single(peer: Option<SocketAddr>, truncated: bool) -> Meta {
        Meta {
            peer,
            segment_size: None,
            truncated,
        }
    }
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

/// Splits a buffer by its segment size (GRO's after a receive, GSO's for a
/// send); an ordinary buffer, even an empty one, is a single datagram.
pub(crate) fn segments(bytes: &[u8], segment_size: Option<u16>) -> impl Iterator<Item = &[u8]> {
    let size = match segment_size {
        Some(size) if size > 0 && bytes.len() > usize::from(size) => usize::from(size),
        _ => bytes.len().max(1),
    };
    let whole = std::iter::once(bytes).filter(|b| b.is_empty());
    whole.chain(bytes.chunks(size))
}

/// `count` buffers of `slot_len` bytes, back to back in one allocation that
/// is never resized (so a pointer into it stays good for its life).
pub(crate) struct Slots {
    buffers: Vec<u8>,
    slot_len: usize,
}

impl Slots {
    /// At least one slot of at least one byte, every page resident.
    pub(crate) fn new(count: usize, slot_len: usize) -> Slots {
        let slot_len = slot_len.max(1);
        let mut buffers = vec![0; count.max(1) * slot_len];
        make_resident(&mut buffers);
        Slots { buffers, slot_len }
    }

    pub(crate) fn count(&self) -> usize {
        self.buffers.len() / self.slot_len
    }

    pub(crate) fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// The start of the first slot, for headers the kernel writes through.
    /// `Vec::as_mut_ptr` creates no reference to the bytes, so the slices
    /// handed out later do not invalidate it.
    #[cfg(target_os = "linux")]
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buffers.as_mut_ptr()
    }

    /// Slot `i`'s first `len` bytes (at most the slot).
    pub(crate) fn get(&self, i: usize, len: usize) -> &[u8] {
        let start = i * self.slot_len;
        &self.buffers[start..start + len.min(self.slot_len)]
    }

    /// Every byte of every slot.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buffers
    }

    /// Every slot, writable, all borrowed at once.
    pub(crate) fn iter_mut(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        self.buffers.chunks_exact_mut(self.slot_len)
    }
}

/// Writes into every page of `buffers` so the kernel backs it now rather
/// than at the first datagram long enough to reach it. Left lazy, a server's
/// resident memory climbs for as long as long datagrams keep landing in
/// slots they have not reached before (still, in the second half of a
/// 10-second soak), which looks like a leak, and each such receive pays
/// page faults.
fn make_resident(buffers: &mut [u8]) {
    // The smallest page any of our systems uses; larger pages are covered
    // all the same.
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

    #[test]
    fn slots_are_whole_and_apart() {
        let mut slots = Slots::new(3, 5);
        assert_eq!((slots.count(), slots.slot_len()), (3, 5));
        slots.iter_mut().nth(1).unwrap().copy_from_slice(b"hello");
        assert_eq!(slots.get(1, 5), b"hello");
        assert_eq!(slots.get(1, 99), b"hello", "never past the slot");
        assert_eq!(slots.get(0, 5), [0; 5]);
        assert_eq!(slots.iter_mut().count(), 3);
        let tiny = Slots::new(0, 0);
        assert_eq!((tiny.count(), tiny.slot_len()), (1, 1));
    }
}
