//! The raw socket-address decoder (`RawAddr::get` in crates/udp), which
//! reads the address the kernel wrote for a received datagram, fed arbitrary
//! bytes and any `namelen`: it decodes exactly the whole IPv4 and IPv6
//! addresses, and what it decodes, a send stores back byte for byte.
//!
//! Input: `namelen` (4 bytes, little-endian), then the address bytes (cut
//! or zero-padded to the 28 of a `sockaddr_in6`).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use upcase_udp::fuzzing::{ADDR_LEN, decode_addr, encode_addr};

fuzz_target!(|data: &[u8]| {
    let (len, rest) = data.split_at(data.len().min(4));
    let mut namelen = [0; 4];
    namelen[..len.len()].copy_from_slice(len);
    let namelen = u32::from_le_bytes(namelen);
    let mut bytes = [0; ADDR_LEN];
    let given = rest.len().min(ADDR_LEN);
    bytes[..given].copy_from_slice(&rest[..given]);

    let decoded = decode_addr(bytes, namelen);
    let family = i32::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
    let whole = match family {
        libc::AF_INET => namelen as usize >= size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => namelen as usize >= size_of::<libc::sockaddr_in6>(),
        _ => false,
    };
    assert_eq!(decoded.is_some(), whole, "{namelen} {bytes:02x?}");
    let Some(addr) = decoded else {
        return;
    };
    let (stored, stored_len) = encode_addr(addr);
    assert!(stored_len <= namelen);
    assert_eq!(decode_addr(stored, stored_len), Some(addr));
    // Every byte that carries the address comes back: all of a sockaddr_in6,
    // a sockaddr_in but its sin_zero padding.
    let carried = match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => ADDR_LEN,
    };
    assert_eq!(stored[..carried], bytes[..carried], "{addr}");
});
