//! UDP's control messages: the segment size a GSO send attaches
//! (`UDP_SEGMENT`) and the one a GRO receive finds (`UDP_GRO`).
//!
//! Both sit in buffers aligned like `cmsghdr`, as `CMSG_FIRSTHDR` assumes,
//! and are walked with libc's `CMSG_*` functions, which know the layout of
//! each target's `cmsghdr`.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

/// Room for the control messages a receive may carry: the UDP GRO segment
/// size (one `int`) with ample slack for others the socket might enable.
pub(crate) const RECV_CONTROL_LEN: usize = 64;

/// A receive's control buffer, aligned like `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct RecvControl(pub(crate) [u8; RECV_CONTROL_LEN]);

// SAFETY: CMSG_SPACE only computes an aligned size (no pointer is involved).
pub(crate) const SEGMENT_CONTROL_LEN: usize =
    unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;

/// A send's control buffer holding exactly one UDP_SEGMENT message (a `u16`),
/// aligned like `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct SegmentControl(pub(crate) [u8; SEGMENT_CONTROL_LEN]);

const _: () = assert!(
    align_of::<RecvControl>() >= align_of::<libc::cmsghdr>()
        && align_of::<SegmentControl>() >= align_of::<libc::cmsghdr>()
);

/// Writes a UDP_SEGMENT control message with `size` into `control`.
pub(crate) fn write_segment(control: *mut SegmentControl, size: u16) {
    // SAFETY: `control` points at a buffer of SEGMENT_CONTROL_LEN bytes aligned
    // for cmsghdr, the space CMSG_SPACE(2) asks for one u16 of data; a msghdr
    // is built around it only to let CMSG_FIRSTHDR/CMSG_DATA find the offsets.
    unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_control = control.cast();
        hdr.msg_controllen = SEGMENT_CONTROL_LEN as _;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(size);
    }
}

/// The segment size of a UDP GRO control message, if the kernel attached one.
///
/// A header whose length is shorter than a header or runs past
/// `msg_controllen` ends the walk: the kernel never writes one, and neither
/// its data nor the header after it can be trusted.
///
/// # Safety
///
/// `hdr.msg_control` is null or points at `hdr.msg_controllen` initialised
/// bytes aligned for `cmsghdr` (a receive's [`RecvControl`], after the
/// kernel lowered its length to what it wrote).
pub(crate) unsafe fn gro_segment_size(hdr: &libc::msghdr) -> Option<u16> {
    let controllen: usize = hdr.msg_controllen as _;
    let end = (hdr.msg_control as usize).wrapping_add(controllen);
    // SAFETY: by the caller's promise the buffer holds msg_controllen bytes,
    // aligned. CMSG_FIRSTHDR returns its start only when a whole header fits
    // in it (null otherwise, or when msg_control is null); CMSG_NXTHDR
    // returns a header at cmsg + CMSG_ALIGN(cmsg_len) only when that whole
    // header fits before `end`, and null when the step wraps. Each header is
    // thus whole, aligned (CMSG_ALIGN keeps the buffer's alignment) and
    // inside the buffer. libc's CMSG_NXTHDR (unlike glibc's macro) does not
    // check that a header's own length fits, and would wrap to the same
    // header for a length near usize::MAX, so `len <= room` is checked here
    // first: then the data CMSG_DATA points at, `len - CMSG_LEN(0)` bytes of
    // which hold a whole c_int, is inside the buffer, and CMSG_NXTHDR's step
    // neither overflows nor stands still.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let len = c.cmsg_len as usize;
            let room = end - cmsg as usize;
            if len < libc::CMSG_LEN(0) as usize || len > room {
                return None;
            }
            let whole_int = len >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
            if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == libc::UDP_GRO && whole_int {
                let value = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                return u16::try_from(value).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// The GRO segment size a receive finds in its slot's own control buffer
/// when the kernel wrote `control` there (cut to the buffer's size, zeros
/// after it) and returned `controllen` (capped at the buffer's size).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn gro_segment_size_in_slot(control: &[u8], controllen: usize) -> Option<u16> {
    // Boxed: a read past it is a heap overflow AddressSanitizer reports.
    let mut slot = Box::new(RecvControl([0; RECV_CONTROL_LEN]));
    let written = control.len().min(RECV_CONTROL_LEN);
    slot.0[..written].copy_from_slice(&control[..written]);
    // SAFETY: msghdr is a C struct of integers and raw pointers, for which
    // all-zero bytes is a valid value (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_control = slot.0.as_mut_ptr().cast();
    hdr.msg_controllen = controllen.min(RECV_CONTROL_LEN) as _;
    // SAFETY: the header points at the slot's buffer, aligned for cmsghdr,
    // with a length no greater than the buffer's.
    unsafe { gro_segment_size(&hdr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control message as Linux lays it out: length, level, type, data,
    /// padding to the next header.
    fn message(len: usize, level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut bytes = len.to_ne_bytes().to_vec();
        bytes.extend(level.to_ne_bytes());
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(data);
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        bytes
    }

    fn gro(size: i32) -> Vec<u8> {
        message(20, libc::SOL_UDP, libc::UDP_GRO, &size.to_ne_bytes())
    }

    #[test]
    fn a_gro_message_gives_its_segment_size() {
        assert_eq!(gro_segment_size_in_slot(&gro(1200), 24), Some(1200));
        let tos = message(17, libc::SOL_IP, libc::IP_TOS, &[0]);
        let both = [tos, gro(1472)].concat();
        assert_eq!(gro_segment_size_in_slot(&both, both.len()), Some(1472));
        assert_eq!(gro_segment_size_in_slot(&[], 0), None);
        for size in [0, -1, 65_536] {
            assert_eq!(gro_segment_size_in_slot(&gro(size), 24), None, "{size}");
        }
    }

    #[test]
    fn nothing_past_the_length_the_kernel_returned_is_read() {
        // The header fits in 16 bytes, its data (stale bytes) does not.
        assert_eq!(gro_segment_size_in_slot(&gro(1200), 16), None);
        // The same for a second header whose data runs past the end.
        let first = message(24, libc::SOL_IP, libc::IP_TOS, &[0; 8]);
        let control = [first, gro(1200)].concat();
        assert_eq!(gro_segment_size_in_slot(&control, 40), None);
        assert_eq!(gro_segment_size_in_slot(&control, 48), Some(1200));
    }

    #[test]
    fn a_length_near_usize_max_ends_the_walk() {
        // libc's CMSG_NXTHDR would step by CMSG_ALIGN(len), which overflows
        // (wrapping to zero: the same header again, forever, in release).
        for len in [usize::MAX, usize::MAX - 6] {
            let control = message(len, libc::SOL_IP, libc::IP_TOS, &[0; 8]);
            assert_eq!(gro_segment_size_in_slot(&control, 64), None);
        }
    }

    #[test]
    fn a_segment_control_message_holds_its_size() {
        let mut control = SegmentControl([0xff; SEGMENT_CONTROL_LEN]);
        write_segment(&raw mut control, 1200);
        let mut expected = message(18, libc::SOL_UDP, libc::UDP_SEGMENT, &1200u16.to_ne_bytes());
        expected[18..].copy_from_slice(&[0xff; 6]); // padding left as it was
        assert_eq!(control.0.as_slice(), expected);
    }
}
