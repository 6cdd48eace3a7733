//! The GRO segment-size decoder (`cmsg::gro_segment_size` in crates/udp),
//! which walks the control messages the kernel wrote after a receive, fed
//! arbitrary bytes and lengths: it never reads past the length it is given
//! (AddressSanitizer watches the exact-size buffer), it finds exactly what a
//! plain slice reading of Linux's layout finds, and a size it finds is > 0.
//!
//! Input: one byte that picks the length the kernel returned for a receive
//! slot's own 64-byte buffer, then the bytes written there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upcase_udp::fuzzing::{RECV_CONTROL_LEN, gro_segment_size_exact, gro_segment_size_in_slot};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, control)) = data.split_first() else {
        return;
    };
    let found = gro_segment_size_exact(control);
    assert_eq!(found, expected(control), "{control:02x?}");
    assert_ne!(found, Some(0));

    // In a slot's buffer, the bytes past the length are stale and ignored.
    let controllen = usize::from(choice) % (RECV_CONTROL_LEN + 1);
    let mut slot = [0; RECV_CONTROL_LEN];
    let written = control.len().min(RECV_CONTROL_LEN);
    slot[..written].copy_from_slice(&control[..written]);
    assert_eq!(
        gro_segment_size_in_slot(control, controllen),
        expected(&slot[..controllen]),
        "{controllen} of {slot:02x?}"
    );
});

/// The segment size in `control` read as Linux lays out control messages
/// (`cmsg(3)`): headers at offsets aligned to a `size_t`, each with its
/// length (header included); a header whose length is shorter than a header
/// or runs past the buffer ends the walk (the kernel never writes one); the
/// first UDP_GRO message with a whole `int` decides.
fn expected(control: &[u8]) -> Option<u16> {
    use std::mem::offset_of;
    const HEADER: usize = size_of::<libc::cmsghdr>();
    // cmsg_len is a size_t on Linux's glibc, which this reading assumes.
    const _: fn(libc::cmsghdr) -> usize = |c| c.cmsg_len;
    let int_at = |at: usize| {
        let bytes = control[at..at + 4].try_into().expect("4 bytes");
        libc::c_int::from_ne_bytes(bytes)
    };
    let mut at = 0;
    while control.len() - at >= HEADER {
        let len_at = at + offset_of!(libc::cmsghdr, cmsg_len);
        let len = usize::from_ne_bytes(control[len_at..len_at + 8].try_into().expect("8 bytes"));
        if len < HEADER || len > control.len() - at {
            return None;
        }
        let level = int_at(at + offset_of!(libc::cmsghdr, cmsg_level));
        let kind = int_at(at + offset_of!(libc::cmsghdr, cmsg_type));
        if level == libc::SOL_UDP && kind == libc::UDP_GRO && len >= HEADER + 4 {
            return u16::try_from(int_at(at + HEADER)).ok().filter(|&s| s > 0);
        }
        // Past the end only when the length ran to it: the walk ends.
        at = (at + len.next_multiple_of(size_of::<usize>())).min(control.len());
    }
    None
}
