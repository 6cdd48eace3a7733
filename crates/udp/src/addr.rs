//! Socket addresses as the kernel reads and writes them.
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for the address of any UDP peer: an IPv4 or an IPv6 socket address.
///
/// `sockaddr_storage` would do too, but it is 128 bytes where 28 suffice, and
/// a batch holds one of these per message.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

// Neither member has padding and the union is exactly the larger one, so
// every byte of a RawAddr is one of a member's integers: built from
// `zeroed`, whose member covers all of them, a RawAddr has no byte that is
// not initialised (what `to_bytes` needs).
const _: () = assert!(
    size_of::<RawAddr>() == size_of::<libc::sockaddr_in6>()
        && size_of::<libc::sockaddr_in6>() == 2 + 2 + 4 + 16 + 4
        && size_of::<libc::sockaddr_in>() == 2 + 2 + 4 + 8
);

impl RawAddr {
    /// The size the kernel may write into (`msg_namelen` before a receive).
    pub(crate) const CAPACITY: libc::socklen_t = size_of::<RawAddr>() as libc::socklen_t;

    /// Its size in bytes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) const LEN: usize = size_of::<RawAddr>();

    /// A RawAddr holding `bytes`, as if the kernel had written them.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn from_bytes(bytes: [u8; RawAddr::LEN]) -> RawAddr {
        // SAFETY: the sizes are equal, and both members are C structs of
        // integers, for which every bit pattern is a valid value.
        unsafe { std::mem::transmute::<[u8; RawAddr::LEN], RawAddr>(bytes) }
    }

    /// Its bytes, as the kernel reads them.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn to_bytes(self) -> [u8; RawAddr::LEN] {
        // SAFETY: the sizes are equal, and every byte is initialised: the
        // constructors (`zeroed`, `from_bytes`) write all of them, `set`
        // overwrites a member whole, and no member has padding (asserted
        // above).
        unsafe { std::mem::transmute::<RawAddr, [u8; RawAddr::LEN]>(self) }
    }

    pub(crate) fn zeroed() -> RawAddr {
        RawAddr {
            v6: libc::sockaddr_in6 {
                sin6_family: 0,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
                sin6_scope_id: 0,
            },
        }
    }

    /// Stores `addr` and returns the length to pass as `msg_namelen`.
    pub(crate) fn set(&mut self, addr: SocketAddr) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                self.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                self.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    /// The address the kernel wrote, given the `msg_namelen` it returned;
    /// `None` for no address or a family that is not IP.
    pub(crate) fn get(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        if len < size_of::<libc::sa_family_t>() {
            return None;
        }
        // Reading either member is sound whatever was written last: every
        // byte of a RawAddr is initialised (see the assertion above) and
        // every bit pattern is a valid value of these C structs of integers.
        // The family and the length say which member is meaningful.
        // SAFETY: as above; both members start with the family, at offset 0.
        let family = unsafe { self.v4.sin_family };
        match i32::from(family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: as above; and the kernel wrote a whole sockaddr_in.
                let a = unsafe { self.v4 };
                let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above; and the kernel wrote a whole sockaddr_in6.
                let a = unsafe { self.v6 };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    u32::from_be(a.sin6_flowinfo),
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let cases: [SocketAddr; 4] = [
            "127.0.0.1:12000".parse().unwrap(),
            "10.1.2.3:1".parse().unwrap(),
            "[::1]:65535".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0x12345, 3)),
        ];
        for addr in cases {
            let mut raw = RawAddr::zeroed();
            let len = raw.set(addr);
            assert_eq!(raw.get(len), Some(addr));
        }
        assert_eq!(RawAddr::zeroed().get(0), None);
        assert_eq!(RawAddr::zeroed().get(RawAddr::CAPACITY), None);
    }

    #[test]
    fn the_kernels_bytes_decode_only_when_whole() {
        // sockaddr_in for 127.0.0.1:12000, as the kernel writes it.
        let mut v4 = [0u8; RawAddr::LEN];
        v4[..8].copy_from_slice(&[2, 0, 0x2e, 0xe0, 127, 0, 0, 1]);
        let raw = RawAddr::from_bytes(v4);
        assert_eq!(raw.get(16), Some("127.0.0.1:12000".parse().unwrap()));
        assert_eq!(raw.get(15), None, "cut short");
        assert_eq!(raw.to_bytes(), v4);
        // sockaddr_in6 for [::1]:53 with scope 0.
        let mut v6 = [0u8; RawAddr::LEN];
        v6[..4].copy_from_slice(&[10, 0, 0, 53]);
        v6[23] = 1;
        let raw = RawAddr::from_bytes(v6);
        assert_eq!(raw.get(28), Some("[::1]:53".parse().unwrap()));
        assert_eq!(raw.get(27), None, "cut short");
        // AF_UNIX (1): not an IP address, whatever its length.
        assert_eq!(RawAddr::from_bytes([1; RawAddr::LEN]).get(28), None);
    }
}
