//! UDP's control messages: the segment size a GSO send attaches
//! (`UDP_SEGMENT`) and the one a GRO receive finds (`UDP_GRO`).
//!
//! Both sit in buffers aligned like `cmsghdr`, as `CMSG_FIRSTHDR` assumes,
//! and are walked with libc's `CMSG_*` functions, which know the layout of
//! each target's `cmsghdr`.

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
pub(crate) fn gro_segment_size(hdr: &libc::msghdr) -> Option<u16> {
    if hdr.msg_control.is_null() {
        return None;
    }
    let wanted = size_of::<libc::c_int>();
    // SAFETY: msg_control points at this slot's control buffer, aligned for
    // cmsghdr, and msg_controllen is what the kernel wrote into it (at most
    // RECV_CONTROL_LEN). CMSG_FIRSTHDR/CMSG_NXTHDR return null rather than a
    // header that does not fit in msg_controllen, and the data is read only
    // when the header's own length says it holds a whole c_int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data_len = (c.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == libc::UDP_GRO && data_len >= wanted {
                let value = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                return u16::try_from(value).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}
