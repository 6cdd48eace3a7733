//! The transform on arbitrary bytes equals the plain reference, on every
//! path: the in-place ASCII prefix, the Unicode path and invalid bytes.
#![no_main]

mod reference;

use libfuzzer_sys::fuzz_target;
use upcase_proto::{
    DatagramReply, Path, uppercase, uppercase_ascii_prefix_in_place, uppercase_datagram, uppercase_into,
};

fuzz_target!(|data: &[u8]| {
    let expected = reference::uppercase(data);
    assert_eq!(uppercase(data), expected);

    let mut datagram = data.to_vec();
    let mut scratch = Vec::new();
    let reply = uppercase_datagram(&mut datagram, &mut scratch, usize::MAX);
    let bytes = reply
        .bytes(&datagram, &scratch)
        .expect("no reply is over usize::MAX");
    assert_eq!(bytes, expected.as_slice());
    let path = if data.is_ascii() {
        Path::Ascii
    } else if std::str::from_utf8(data).is_ok() {
        Path::Unicode
    } else {
        Path::InvalidUtf8
    };
    assert_eq!(reply.path(), path);
    // Only ASCII is answered in place, and then by the whole datagram.
    assert_eq!(
        matches!(reply, DatagramReply::InPlace { len } if len == data.len()),
        path == Path::Ascii
    );

    // The prefix uppercased in place stops exactly at the first non-ASCII
    // byte; after it, bytes are untouched or ASCII letters uppercased.
    let mut in_place = data.to_vec();
    let done = uppercase_ascii_prefix_in_place(&mut in_place);
    assert_eq!(
        done,
        data.iter()
            .position(|b| !b.is_ascii())
            .unwrap_or(data.len())
    );
    assert_eq!(in_place[..done], expected[..done]);
    for (after, before) in in_place[done..].iter().zip(&data[done..]) {
        assert!(after == before || *after == before.to_ascii_uppercase());
    }

    // Appending keeps what the vector held and reports invalid input.
    let mut appended = b"kept".to_vec();
    let invalid = uppercase_into(data, &mut appended);
    assert_eq!(invalid, std::str::from_utf8(data).is_err());
    assert_eq!(&appended[..4], b"kept");
    assert_eq!(appended[4..], expected[..]);
});
