//! Property tests of the PROXY parser: no input makes it panic or claim a
//! header longer than its bytes, the stream and datagram readings agree,
//! and every header the encoders build reads back as what was built,
//! whole, cut at any point, or followed by any payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use upcase_proto::proxy::{
    self, Addresses, Header, Parsed, Transport, V1_MAX_LEN, V1_SIGNATURE, V2_MAX_LEN, V2_SIGNATURE,
    Version, encode_v1, encode_v2,
};

/// Bytes that often start with a signature, so the fuzz reaches past it.
fn header_like() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        tail.clone(),
        tail.clone()
            .prop_map(|t| [&V1_SIGNATURE[..], &t].concat()),
        "(TCP4|TCP6|UNKNOWN|TCP) [0-9a-f.:]{0,40} [0-9a-f.:]{0,40} [0-9]{0,6} [0-9]{0,6}(\r\n)?.{0,20}"
            .prop_map(|t| [&V1_SIGNATURE[..], t.as_bytes()].concat()),
        tail.prop_map(|t| [&V2_SIGNATURE[..], &t].concat()),
    ]
}

fn socket_addr(v6: bool) -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>()).prop_map(move |(octets, port)| {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
        };
        SocketAddr::new(ip, port)
    })
}

/// Two addresses of one family, or none.
fn addresses() -> impl Strategy<Value = Option<Addresses>> {
    let pair = |v6| {
        (socket_addr(v6), socket_addr(v6)).prop_map(|(source, destination)| {
            Some(Addresses {
                source,
                destination,
            })
        })
    };
    prop_oneof![Just(None), pair(false), pair(true)]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        Just(Transport::Unspecified),
        Just(Transport::Stream),
        Just(Transport::Datagram)
    ]
}

fn tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)),
        0..5,
    )
}

/// A built header and the header it must read back as.
fn built() -> impl Strategy<Value = (Vec<u8>, Header)> {
    let v1 = addresses().prop_map(|addresses| {
        let bytes = encode_v1(addresses);
        let header = Header {
            version: Version::V1,
            transport: if addresses.is_some() {
                Transport::Stream
            } else {
                Transport::Unspecified
            },
            addresses,
            len: bytes.len(),
        };
        (bytes, header)
    });
    let v2 = (transport(), addresses(), tlvs()).prop_map(|(transport, addresses, tlvs)| {
        let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, &v[..])).collect();
        let bytes = encode_v2(transport, addresses, &tlvs).expect("small TLVs fit");
        let header = Header {
            version: Version::V2,
            transport: if addresses.is_some() {
                transport
            } else {
                Transport::Unspecified
            },
            addresses,
            len: bytes.len(),
        };
        (bytes, header)
    });
    prop_oneof![v1, v2]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn no_bytes_make_it_panic_or_overrun(bytes in header_like()) {
        let parsed = proxy::parse(&bytes);
        if let Parsed::Header(header) = parsed {
            prop_assert!(header.len <= bytes.len());
            match header.version {
                proxy::Version::V1 => {
                    prop_assert!(header.len <= V1_MAX_LEN);
                    prop_assert!(bytes[..header.len].ends_with(b"\r\n"));
                }
                proxy::Version::V2 => prop_assert!(header.len <= V2_MAX_LEN),
            }
        }
        let signed = bytes.starts_with(V1_SIGNATURE) || bytes.starts_with(V2_SIGNATURE);
        prop_assert_eq!(parsed == Parsed::NoHeader, !signed);
        // A stream that has sent these bytes agrees once it decides.
        match proxy::parse_stream(&bytes, V2_MAX_LEN) {
            Some(decided) => prop_assert_eq!(decided, parsed),
            None => prop_assert!(!matches!(parsed, Parsed::Header(_))),
        }
    }

    #[test]
    fn a_built_header_reads_back_before_any_payload(
        (bytes, expected) in built(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let datagram = [&bytes[..], &payload].concat();
        prop_assert_eq!(proxy::parse(&datagram), Parsed::Header(expected));
        prop_assert_eq!(proxy::parse(&bytes), Parsed::Header(expected));
        prop_assert_eq!(
            proxy::parse_stream(&datagram, V2_MAX_LEN),
            Some(Parsed::Header(expected))
        );
    }

    #[test]
    fn a_built_header_cut_short_is_never_a_header(
        (bytes, _) in built(),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(bytes.len());
        let short = &bytes[..cut];
        // A stream waits for the rest; a datagram is malformed, unless it
        // is too short to carry a whole signature.
        prop_assert_eq!(proxy::parse_stream(short, V2_MAX_LEN), None);
        let signature_len = if bytes.starts_with(V1_SIGNATURE) {
            V1_SIGNATURE.len()
        } else {
            V2_SIGNATURE.len()
        };
        let parsed = proxy::parse(short);
        if cut < signature_len {
            prop_assert_eq!(parsed, Parsed::NoHeader);
        } else {
            prop_assert!(matches!(parsed, Parsed::Malformed(_)), "{:?}", parsed);
        }
    }
}
