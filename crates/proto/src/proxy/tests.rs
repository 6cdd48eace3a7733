//! Every branch of the PROXY parser, with the bytes nginx really sends and
//! hand-written v2 headers (not only the encoder's, so that a bug shared by
//! the encoder and the parser cannot hide).

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn addresses(source: &str, destination: &str) -> Option<Addresses> {
    Some(Addresses {
        source: addr(source),
        destination: addr(destination),
    })
}

/// What Debian's nginx 1.22 sends with `proxy_protocol on`, for UDP and TCP.
const NGINX: &[u8] = b"PROXY TCP4 10.0.1.12 10.0.100.100 42631 12000\r\n";

fn malformed(bytes: &[u8]) -> Malformed {
    match parse(bytes) {
        Parsed::Malformed(why) => why,
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn header(bytes: &[u8]) -> Header {
    match parse(bytes) {
        Parsed::Header(header) => header,
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn nginx_s_line_names_the_client_and_the_payload_follows_it() {
    let datagram = [NGINX, b"hello"].concat();
    let header = header(&datagram);
    assert_eq!(
        header,
        Header {
            version: Version::V1,
            transport: Transport::Stream,
            addresses: addresses("10.0.1.12:42631", "10.0.100.100:12000"),
            len: NGINX.len(),
        }
    );
    assert_eq!(header.source(), Some(addr("10.0.1.12:42631")));
    assert_eq!(&datagram[header.len..], b"hello");
    assert_eq!(encode_v1(header.addresses), NGINX);
}

#[test]
fn v1_tcp6_and_unknown() {
    let line = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    assert_eq!(
        header(line).addresses,
        addresses("[2001:db8::1]:65535", "[::1]:0")
    );
    for unknown in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN anything at all, ignored\r\n",
    ] {
        let header = header(unknown);
        assert_eq!(header.addresses, None);
        assert_eq!(header.transport, Transport::Unspecified);
        assert_eq!(header.len, unknown.len());
    }
}

#[test]
fn bytes_without_a_signature_are_payload() {
    for payload in [
        &b""[..],
        b"hello",
        b"PROXY",
        b"PROX",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXYTCP4",
        b"\r\n\r\n\0\r\nQUI",
        b"\r\n\r\n\0\r\nQUITX",
    ] {
        assert_eq!(parse(payload), Parsed::NoHeader, "{payload:?}");
    }
}

#[test]
fn a_v1_line_must_end_in_crlf_within_107_bytes() {
    assert_eq!(
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
        Malformed::V1NoLineEnd
    );
    assert_eq!(
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        Malformed::V1NoLineEnd
    );
    assert_eq!(malformed(b"PROXY "), Malformed::V1NoLineEnd);
    // UNKNOWN lets a line carry anything: exactly 107 bytes is a header,
    // 108 is not.
    let longest = [&b"PROXY UNKNOWN "[..], &[b'x'; 91], b"\r\n"].concat();
    assert_eq!(longest.len(), V1_MAX_LEN);
    assert_eq!(header(&longest).len, V1_MAX_LEN);
    let too_long = [&b"PROXY UNKNOWN "[..], &[b'x'; 92], b"\r\n"].concat();
    assert_eq!(malformed(&too_long), Malformed::V1NoLineEnd);
}

#[test]
fn v1_fields_are_checked_one_by_one() {
    let cases: [(&[u8], Malformed); 15] = [
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Malformed::V1Protocol),
        (b"PROXY \r\n", Malformed::V1Protocol),
        (b"PROXY UNKNOWNX\r\n", Malformed::V1Protocol),
        (b"PROXY TCP4\r\n", Malformed::V1Fields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Malformed::V1Fields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Malformed::V1Fields),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Malformed::V1Fields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Malformed::V1Fields),
        (
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            Malformed::V1Address {
                field: "source address",
            },
        ),
        (
            b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
            Malformed::V1Address {
                field: "destination address",
            },
        ),
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            Malformed::V1Address {
                field: "source address",
            },
        ),
        (
            b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n",
            Malformed::V1Address {
                field: "source address",
            },
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            Malformed::V1Port {
                field: "source port",
            },
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n",
            Malformed::V1Port {
                field: "destination port",
            },
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            Malformed::V1Port {
                field: "source port",
            },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            malformed(bytes),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n"),
        Malformed::V1Port {
            field: "destination port"
        }
    );
    assert_eq!(
        header(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n").addresses,
        addresses("1.2.3.4:0", "5.6.7.8:65535")
    );
}

/// A v2 header written out by hand: signature, the two bytes, the length,
/// then `block`.
fn v2_bytes(version_command: u8, family_transport: u8, block: &[u8]) -> Vec<u8> {
    let len = u16::try_from(block.len()).expect("test block fits");
    [
        &V2_SIGNATURE[..],
        &[version_command, family_transport],
        &len.to_be_bytes(),
        block,
    ]
    .concat()
}

const INET_BLOCK: [u8; 12] = [10, 0, 1, 12, 10, 0, 100, 100, 0xA6, 0x87, 0x2E, 0xE0];

#[test]
fn v2_inet_dgram_names_the_client() {
    let datagram = [v2_bytes(0x21, 0x12, &INET_BLOCK), b"payload".to_vec()].concat();
    assert_eq!(
        header(&datagram),
        Header {
            version: Version::V2,
            transport: Transport::Datagram,
            addresses: addresses("10.0.1.12:42631", "10.0.100.100:12000"),
            len: 28,
        }
    );
}

#[test]
fn v2_inet6_stream_names_the_client() {
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("ip").octets());
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&[0, 80, 0x2E, 0xE0]);
    let header = header(&v2_bytes(0x21, 0x21, &block));
    assert_eq!(header.transport, Transport::Stream);
    assert_eq!(
        header.addresses,
        addresses("[2001:db8::7]:80", "[::1]:12000")
    );
    assert_eq!(header.len, 16 + 36);
}

#[test]
fn v2_tlvs_are_skipped_and_must_fit() {
    let tlvs = [&INET_BLOCK[..], &[0x04, 0, 2, b'x', b'y'], &[0x01, 0, 0]].concat();
    let bytes = [v2_bytes(0x21, 0x11, &tlvs), b"after".to_vec()].concat();
    let header = header(&bytes);
    assert_eq!(&bytes[header.len..], b"after");
    assert_eq!(header.source(), Some(addr("10.0.1.12:42631")));
    for bad_tlvs in [&[0x04, 0, 3, b'x', b'y'][..], &[0x04, 0], &[0x04]] {
        let block = [&INET_BLOCK[..], bad_tlvs].concat();
        assert_eq!(malformed(&v2_bytes(0x21, 0x11, &block)), Malformed::V2Tlv);
    }
}

#[test]
fn v2_headers_that_name_no_one_are_the_proxy_s_own() {
    // LOCAL: family and addresses ignored, whatever they are.
    for family_transport in [0x00, 0x12, 0xFF] {
        let local = header(&v2_bytes(0x20, family_transport, &INET_BLOCK));
        assert_eq!(local.addresses, None);
        assert_eq!(local.len, 28);
    }
    // PROXY with UNSPEC, or with UNIX paths.
    assert_eq!(header(&v2_bytes(0x21, 0x00, b"")).addresses, None);
    let unix = header(&v2_bytes(0x21, 0x32, &[0; 216]));
    assert_eq!(
        (unix.addresses, unix.transport),
        (None, Transport::Datagram)
    );
}

#[test]
fn v2_fields_are_checked() {
    let cases: [(Vec<u8>, Malformed); 8] = [
        (v2_bytes(0x11, 0x11, &INET_BLOCK), Malformed::V2Version(1)),
        (v2_bytes(0x31, 0x11, &INET_BLOCK), Malformed::V2Version(3)),
        (v2_bytes(0x22, 0x11, &INET_BLOCK), Malformed::V2Command(2)),
        (v2_bytes(0x21, 0x41, &INET_BLOCK), Malformed::V2Family(4)),
        (v2_bytes(0x21, 0x13, &INET_BLOCK), Malformed::V2Transport(3)),
        (
            v2_bytes(0x21, 0x11, &INET_BLOCK[..11]),
            Malformed::V2AddressLen { need: 12, len: 11 },
        ),
        (
            v2_bytes(0x21, 0x21, &INET_BLOCK),
            Malformed::V2AddressLen { need: 36, len: 12 },
        ),
        (
            v2_bytes(0x21, 0x31, &[0; 215]),
            Malformed::V2AddressLen {
                need: 216,
                len: 215,
            },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(malformed(&bytes), expected, "{bytes:?}");
    }
}

#[test]
fn a_v2_header_cut_short_is_malformed_in_a_datagram() {
    let whole = v2_bytes(0x21, 0x12, &INET_BLOCK);
    assert_eq!(
        malformed(&whole[..12]),
        Malformed::V2Truncated { need: 16, have: 12 }
    );
    assert_eq!(
        malformed(&whole[..15]),
        Malformed::V2Truncated { need: 16, have: 15 }
    );
    assert_eq!(
        malformed(&whole[..27]),
        Malformed::V2Truncated { need: 28, have: 27 }
    );
}

#[test]
fn a_stream_waits_for_the_whole_header() {
    let v2 = v2_bytes(0x21, 0x12, &INET_BLOCK);
    for whole in [NGINX, &v2[..]] {
        for cut in 0..whole.len() {
            assert_eq!(parse_stream(&whole[..cut], 1024), None, "{cut} bytes");
        }
        let with_payload = [whole, b"payload"].concat();
        match parse_stream(&with_payload, 1024) {
            Some(Parsed::Header(header)) => assert_eq!(header.len, whole.len()),
            other => panic!("{other:?}"),
        }
    }
    // Decided as soon as the bytes tell.
    assert_eq!(
        parse_stream(b"GET / HTTP/1.1", 1024),
        Some(Parsed::NoHeader)
    );
    assert_eq!(parse_stream(b"PROXX", 1024), Some(Parsed::NoHeader));
    assert_eq!(parse_stream(&[0; 13], 1024), Some(Parsed::NoHeader));
    assert_eq!(
        parse_stream(&v2_bytes(0x11, 0x12, &INET_BLOCK)[..16], 1024),
        Some(Parsed::Malformed(Malformed::V2Version(1)))
    );
    assert_eq!(
        parse_stream(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 1024),
        Some(Parsed::Malformed(Malformed::V1Fields))
    );
    let long_line = [&b"PROXY UNKNOWN "[..], &[b'x'; 93]].concat();
    assert_eq!(
        parse_stream(&long_line, 1024),
        Some(Parsed::Malformed(Malformed::V1NoLineEnd))
    );
}

#[test]
fn a_stream_refuses_a_v2_header_longer_than_its_buffer_at_once() {
    let big = v2_bytes(0x21, 0x11, &[0; 2000]);
    assert_eq!(
        parse_stream(&big[..16], 1024),
        Some(Parsed::Malformed(Malformed::V2TooLong {
            len: 2016,
            max: 1024
        }))
    );
    assert_eq!(parse_stream(&big[..16], 2016), None);
    // A datagram has no such limit: its length bounds it.
    assert_eq!(malformed(&big), Malformed::V2Tlv);
}

#[test]
fn the_encoders_write_what_the_parser_reads() {
    let inet = addresses("10.0.1.12:42631", "10.0.100.100:12000");
    let v2 = encode_v2(Transport::Datagram, inet, &[]).expect("fits");
    assert_eq!(v2, v2_bytes(0x21, 0x12, &INET_BLOCK));
    let local = encode_v2(Transport::Stream, None, &[(0x04, b"no")]).expect("fits");
    assert_eq!(local, v2_bytes(0x20, 0x00, &[0x04, 0, 2, b'n', b'o']));
    assert_eq!(encode_v1(None), b"PROXY UNKNOWN\r\n");
    // Mixed families travel as IPv6, the IPv4 address mapped.
    let mixed = addresses("10.0.0.1:1", "[2001:db8::1]:2");
    assert_eq!(
        encode_v1(mixed),
        b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 1 2\r\n"
    );
    let parsed = header(&encode_v2(Transport::Stream, mixed, &[]).expect("fits"));
    assert_eq!(
        parsed.addresses,
        addresses("[::ffff:10.0.0.1]:1", "[2001:db8::1]:2")
    );
    let too_much = vec![0; 65_535];
    assert_eq!(encode_v2(Transport::Stream, inet, &[(1, &too_much)]), None);
    let too_many: Vec<(u8, &[u8])> = (0..30).map(|_| (1, &too_much[..3_000])).collect();
    assert_eq!(encode_v2(Transport::Stream, inet, &too_many), None);
}

#[test]
fn every_malformation_says_what_it_is() {
    let all = [
        Malformed::V1NoLineEnd,
        Malformed::V1Protocol,
        Malformed::V1Fields,
        Malformed::V1Address {
            field: "source address",
        },
        Malformed::V1Port {
            field: "source port",
        },
        Malformed::V2Truncated { need: 28, have: 20 },
        Malformed::V2Version(1),
        Malformed::V2Command(2),
        Malformed::V2Family(4),
        Malformed::V2Transport(3),
        Malformed::V2AddressLen { need: 12, len: 4 },
        Malformed::V2Tlv,
        Malformed::V2TooLong {
            len: 2016,
            max: 1024,
        },
    ];
    let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
    for text in &texts {
        assert!(text.starts_with("a PROXY v"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
    assert_eq!(
        texts[0],
        "a PROXY v1 line without its CRLF within 107 bytes"
    );
    assert_eq!(
        texts[5],
        "a PROXY v2 header of 28 bytes cut short at 20 bytes"
    );
    assert_eq!(
        texts[3],
        "a PROXY v1 line whose source address is not of its protocol"
    );
}
