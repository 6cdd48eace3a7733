//! Property tests of the transform against an oracle written independently
//! of it: per UTF-8 chunk, the standard library's `str::to_uppercase` for the
//! valid part and a plain copy of the invalid part.

use proptest::prelude::*;
use upcase_proto::{
    DatagramReply, Path, uppercase, uppercase_ascii_prefix_in_place, uppercase_datagram,
    uppercased_len,
};

fn oracle(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in input.utf8_chunks() {
        out.extend_from_slice(chunk.valid().to_uppercase().as_bytes());
        out.extend_from_slice(chunk.invalid());
    }
    out
}

fn invalid_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes
        .utf8_chunks()
        .flat_map(|c| c.invalid().iter().copied())
        .collect()
}

/// Byte strings that are mostly text: runs of ASCII, of multi-byte
/// characters and of arbitrary bytes, so that every boundary between valid
/// and invalid input is exercised, not only random noise.
fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ,.!?]{0,40}".prop_map(String::into_bytes),
        any::<String>().prop_map(String::into_bytes),
        "[ßﬁﬃΐŉǰάéèüöçñαβγδσςабвгджяअआ한국어ꙁ𐐨🙂]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..8),
        prop::collection::vec(0x80u8..0xC0, 0..4),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn reply_of(input: &[u8]) -> (Vec<u8>, Path) {
    let mut buf = input.to_vec();
    let mut scratch = Vec::new();
    let out = uppercase_datagram(&mut buf, &mut scratch, usize::MAX);
    let bytes = out.bytes(&buf, &scratch).expect("no limit").to_vec();
    (bytes, out.path())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ascii_path_equals_unicode_path_on_ascii(input in "[\\x00-\\x7f]{0,300}") {
        let mut in_place = input.clone().into_bytes();
        let n = uppercase_ascii_prefix_in_place(&mut in_place);
        prop_assert_eq!(n, input.len());
        prop_assert_eq!(&in_place, &oracle(input.as_bytes()));
        prop_assert_eq!(&in_place, &input.to_uppercase().into_bytes());
        let (reply, path) = reply_of(input.as_bytes());
        prop_assert_eq!(path, Path::Ascii);
        prop_assert_eq!(reply, in_place);
    }

    #[test]
    fn valid_utf8_uppercases_like_str_to_uppercase(input in any::<String>()) {
        let (reply, path) = reply_of(input.as_bytes());
        prop_assert_eq!(&reply, &input.to_uppercase().into_bytes());
        prop_assert_ne!(path, Path::InvalidUtf8);
    }

    #[test]
    fn any_bytes_match_the_oracle(input in mostly_text()) {
        let (reply, path) = reply_of(&input);
        prop_assert_eq!(&reply, &oracle(&input));
        prop_assert_eq!(uppercase(&input), reply.clone());
        prop_assert_eq!(path == Path::InvalidUtf8, std::str::from_utf8(&input).is_err());
    }

    #[test]
    fn invalid_bytes_are_preserved_in_order(input in mostly_text()) {
        let reply = uppercase(&input);
        prop_assert_eq!(invalid_bytes(&reply), invalid_bytes(&input));
    }

    #[test]
    fn predicted_length_is_the_real_length(input in mostly_text()) {
        prop_assert_eq!(uppercased_len(&input), uppercase(&input).len());
    }

    #[test]
    fn replies_never_grow_more_than_three_times(input in mostly_text()) {
        prop_assert!(uppercased_len(&input) <= 3 * input.len());
    }

    #[test]
    fn the_limit_is_enforced_exactly(input in mostly_text(), slack in 0usize..3) {
        let len = uppercased_len(&input);
        let mut buf = input.clone();
        let mut scratch = Vec::new();
        let fits = uppercase_datagram(&mut buf, &mut scratch, len + slack);
        prop_assert_eq!(fits.bytes(&buf, &scratch).map(<[u8]>::len), Some(len));
        if len > 0 {
            let mut buf = input.clone();
            let refused = uppercase_datagram(&mut buf, &mut scratch, len - 1);
            let refused_len = match refused {
                DatagramReply::TooLarge(too_large) => Some(too_large.reply_len),
                _ => None,
            };
            prop_assert_eq!(refused_len, Some(len));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_stream_split_anywhere_uppercases_like_the_whole(input in mostly_text(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut stream = upcase_proto::StreamUppercaser::new();
        let mut out = Vec::new();
        let mut start = 0;
        for end in points.into_iter().chain([input.len()]) {
            stream.feed(&input[start..end], &mut out);
            start = end;
        }
        stream.finish(&mut out);
        prop_assert_eq!(out, oracle(&input));
    }
}
