//! Size limits of one UDP datagram and the port the service uses.

/// The port of the textbook's server, 12000: not a well-known port, as the
/// textbook asks of an application whose protocol is not a published standard.
pub const DEFAULT_PORT: u16 = 12_000;

/// Largest UDP payload over IPv4: 65,535 (IPv4 total length) - 20 (IPv4
/// header) - 8 (UDP header).
pub const MAX_PAYLOAD_V4: usize = 65_507;

/// Largest UDP payload over IPv6 without jumbograms: 65,535 (IPv6 payload
/// length, which excludes the IPv6 header) - 8 (UDP header).
pub const MAX_PAYLOAD_V6: usize = 65_527;

/// Largest payload any peer can send us, whatever its family.
pub const MAX_PAYLOAD: usize = MAX_PAYLOAD_V6;

/// A receive buffer of this size holds any datagram whole, so nothing is ever
/// truncated (the textbook's 2048-byte buffer cuts longer ones silently).
pub const RECV_BUFFER_LEN: usize = 65_536;

/// The address family a datagram travels over, which decides its largest size.
///
/// A peer with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as seen on a
/// dual-stack socket) travels over IPv4 and is [`Family::V4`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The largest UDP payload that can travel to or from a peer of this family.
    pub const fn max_payload(self) -> usize {
        match self {
            Family::V4 => MAX_PAYLOAD_V4,
            Family::V6 => MAX_PAYLOAD_V6,
        }
    }

    /// The family a peer's datagrams travel over: an IPv4-mapped peer on a
    /// dual-stack socket (`[::ffff:a.b.c.d]:p`) is IPv4 on the wire, with
    /// IPv4's smaller limit.
    pub fn of(peer: std::net::SocketAddr) -> Family {
        match peer.ip().to_canonical() {
            std::net::IpAddr::V4(_) => Family::V4,
            std::net::IpAddr::V6(_) => Family::V6,
        }
    }

    /// Human name for messages: "IPv4" or "IPv6".
    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_from_header_sizes() {
        assert_eq!(MAX_PAYLOAD_V4, 65_535 - 20 - 8);
        assert_eq!(MAX_PAYLOAD_V6, 65_535 - 8);
        assert_eq!(Family::V4.max_payload(), 65_507);
        assert_eq!(Family::V6.max_payload(), 65_527);
        const { assert!(RECV_BUFFER_LEN > MAX_PAYLOAD) };
    }

    #[test]
    fn mapped_addresses_are_ipv4_on_the_wire() {
        let peer = |text: &str| text.parse::<std::net::SocketAddr>().expect("addr");
        assert_eq!(Family::of(peer("127.0.0.1:5")), Family::V4);
        assert_eq!(Family::of(peer("[::ffff:127.0.0.1]:5")), Family::V4);
        assert_eq!(Family::of(peer("[::1]:5")), Family::V6);
        // IPv4-compatible (deprecated, ::a.b.c.d) is not mapped: it is IPv6 on the wire.
        assert_eq!(Family::of(peer("[::127.0.0.1]:5")), Family::V6);
    }
}
