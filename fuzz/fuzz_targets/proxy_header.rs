//! The PROXY header parser (`upcase_proto::proxy`), fed arbitrary bytes as
//! a datagram and as the start of a stream read in pieces: it never panics,
//! never claims more bytes than it was given, the stream's answer at every
//! length agrees with the datagram's once it decides, and a header it reads
//! is one the encoders write back to the same client.
//!
//! Input: one byte `k` (the v2 length limit for the stream is `k * 64`,
//! `k = 0` meaning no limit), then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upcase_proto::proxy::{
    self, Parsed, Transport, V1_MAX_LEN, V2_MAX_LEN, Version, encode_v1, encode_v2,
};

fuzz_target!(|data: &[u8]| {
    let Some((&k, bytes)) = data.split_first() else {
        return;
    };
    let max_v2_len = if k == 0 {
        V2_MAX_LEN
    } else {
        usize::from(k) * 64
    };
    let parsed = proxy::parse(bytes);
    // The stream, as it arrives byte by byte: undecided until some length,
    // then the same answer whatever follows.
    let mut decided = None;
    for end in 0..=bytes.len().min(V2_MAX_LEN) {
        match (proxy::parse_stream(&bytes[..end], max_v2_len), decided) {
            (None, None) => {}
            (Some(now), None) => decided = Some((end, now)),
            (now, Some((_, before))) => assert_eq!(now, Some(before), "changed its mind at {end}"),
        }
        if decided.is_some() && end > V1_MAX_LEN {
            break;
        }
    }
    match decided {
        // A datagram reads the same, unless the stream's limit refused it.
        Some((_, Parsed::Malformed(proxy::Malformed::V2TooLong { len, max }))) => {
            assert!(len > max && max == max_v2_len)
        }
        Some((_, stream)) => assert_eq!(stream, parsed),
        None => assert!(!matches!(parsed, Parsed::Header(_))),
    }
    let Parsed::Header(header) = parsed else {
        return;
    };
    assert!(header.len <= bytes.len());
    if let Some((at, _)) = decided {
        assert!(at <= header.len, "decided at {at}, past the header's end");
    }
    // Built again from what was read, it reads back the same.
    let rebuilt = match header.version {
        Version::V1 => encode_v1(header.addresses),
        Version::V2 => {
            let transport = if header.addresses.is_some() {
                header.transport
            } else {
                Transport::Unspecified
            };
            encode_v2(transport, header.addresses, &[]).expect("no TLVs: fits")
        }
    };
    let Parsed::Header(again) = proxy::parse(&rebuilt) else {
        panic!("{rebuilt:?} does not read back");
    };
    assert_eq!(again.addresses, header.addresses);
    assert_eq!(again.version, header.version);
    assert_eq!(again.len, rebuilt.len());
});
