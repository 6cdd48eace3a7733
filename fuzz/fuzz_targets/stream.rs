//! The stream uppercaser, fed a stream cut at arbitrary points, gives the
//! reply to the whole stream, and never emits bytes it would take back.
//!
//! Input: one byte `k`, then `k % 9` little-endian u16 cut positions, then
//! the stream.
#![no_main]

mod reference;

use libfuzzer_sys::fuzz_target;
use upcase_proto::StreamUppercaser;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let cuts_len = (usize::from(k) % 9) * 2;
    if rest.len() < cuts_len {
        return;
    }
    let (cut_bytes, stream) = rest.split_at(cuts_len);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());

    let expected = reference::uppercase(stream);
    let mut uppercaser = StreamUppercaser::new();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts {
        uppercaser.feed(&stream[start..cut], &mut out);
        start = cut;
        assert!(uppercaser.pending() <= 3);
        assert!(
            expected.starts_with(&out),
            "emitted bytes the whole stream does not have"
        );
    }
    uppercaser.finish(&mut out);
    assert_eq!(uppercaser.pending(), 0);
    assert_eq!(out, expected);

    // Byte by byte, the hardest split of all.
    let mut uppercaser = StreamUppercaser::new();
    let mut out = Vec::new();
    for byte in stream.chunks(1) {
        uppercaser.feed(byte, &mut out);
    }
    uppercaser.finish(&mut out);
    assert_eq!(out, expected);
});
