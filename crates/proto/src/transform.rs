//! The uppercase transform on bytes.
//!
//! Two paths give the same answer:
//! - the ASCII path uppercases in place, in the buffer the datagram was
//!   received into, with no allocation and no copy: the common case;
//! - the Unicode path walks the input as UTF-8, uppercases every valid run
//!   with the full Unicode mapping (`ß` becomes `SS`, so a reply may be longer
//!   than its request) and copies every invalid byte unchanged.
//!
//! Because ASCII characters map to ASCII in both paths, a datagram is first
//! uppercased in place as far as its ASCII prefix goes; only the rest, from
//! the first non-ASCII byte, takes the Unicode path.

/// Which path produced a reply: what the server counts, and what tests check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// All ASCII: uppercased in place.
    Ascii,
    /// Valid UTF-8 with non-ASCII characters.
    Unicode,
    /// Contains bytes that are not valid UTF-8 (passed through unchanged).
    InvalidUtf8,
}

/// What [`uppercase_datagram`] made of a datagram: where its reply is, or
/// why there is none. The caller sends the reply from where it says, with no
/// need to look at addresses to find out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum DatagramReply {
    /// All ASCII: the reply is the datagram itself, its first `len` bytes
    /// (all of them), uppercased in the buffer it was received into.
    InPlace { len: usize },
    /// Not all ASCII: the reply, `len` bytes from the `path` (Unicode or
    /// invalid UTF-8), was built in the scratch vector, which holds it alone.
    InScratch { len: usize, path: Path },
    /// The reply would be over the limit: there is nothing to send, and the
    /// scratch vector is left empty.
    TooLarge(ReplyTooLarge),
}

impl DatagramReply {
    /// The path the datagram took, whether or not its reply fits.
    pub fn path(self) -> Path {
        match self {
            DatagramReply::InPlace { .. } => Path::Ascii,
            DatagramReply::InScratch { path, .. }
            | DatagramReply::TooLarge(ReplyTooLarge { path, .. }) => path,
        }
    }

    /// The reply's bytes, given the two buffers [`uppercase_datagram`] was
    /// handed; `None` when it was refused.
    pub fn bytes<'a>(self, datagram: &'a [u8], scratch: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            DatagramReply::InPlace { len } => datagram.get(..len),
            DatagramReply::InScratch { len, .. } => scratch.get(..len),
            DatagramReply::TooLarge(_) => None,
        }
    }
}

/// The reply would not fit: the caller must not send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTooLarge {
    /// How long the reply would be.
    pub reply_len: usize,
    /// The limit it exceeds.
    pub limit: usize,
    /// What kind of input it came from.
    pub path: Path,
}

/// Bytes per block of the ASCII fast path: a block is uppercased and checked
/// for non-ASCII bytes in one pass, which the compiler turns into vector
/// instructions, and the loop leaves at the first block that is not ASCII.
const BLOCK: usize = 64;

/// Uppercases the ASCII prefix of `buf` in place and returns its length.
///
/// When the return value equals `buf.len()` the whole buffer was ASCII and is
/// now its own reply. Otherwise `buf[..n]` is already the start of the reply
/// and `buf[n..]` (starting with a non-ASCII byte) needs the Unicode path.
/// Some ASCII letters of `buf[n..]` (those in the block where the prefix
/// ends) may already be uppercase: harmless, since the Unicode path maps an
/// ASCII letter and its capital alike, and leaves every byte of a multi-byte
/// or invalid sequence (all `>= 0x80`) as the fast path found it.
pub fn uppercase_ascii_prefix_in_place(buf: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the function's only requirement is a CPU with AVX2,
        // checked just above.
        #[allow(unsafe_code)]
        return unsafe { ascii_prefix_avx2(buf) };
    }
    ascii_prefix(buf)
}

/// [`ascii_prefix`] compiled for 32-byte vectors: about twice the bytes per
/// cycle of the baseline x86-64 build, which has 16-byte vectors only.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn ascii_prefix_avx2(buf: &mut [u8]) -> usize {
    ascii_prefix(buf)
}

#[inline(always)]
fn ascii_prefix(buf: &mut [u8]) -> usize {
    let mut done = 0;
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        let mut seen = 0u8;
        for b in block.iter_mut() {
            seen |= *b;
            *b = ascii_upper(*b);
        }
        if !seen.is_ascii() {
            return done + block.iter().take_while(|b| b.is_ascii()).count();
        }
        done += BLOCK;
    }
    let rest = blocks.into_remainder();
    // A short datagram is all remainder: it goes through one zero-padded
    // block on the stack rather than a byte-at-a-time loop.
    let mut block = [0u8; BLOCK];
    block[..rest.len()].copy_from_slice(rest);
    let mut seen = 0u8;
    for b in block.iter_mut() {
        seen |= *b;
        *b = ascii_upper(*b);
    }
    if seen.is_ascii() {
        rest.copy_from_slice(&block[..rest.len()]);
        return done + rest.len();
    }
    for b in rest {
        if !b.is_ascii() {
            break;
        }
        *b = ascii_upper(*b);
        done += 1;
    }
    done
}

/// Whether `c` is in a block without case: Hangul syllables and everything
/// from the emoji planes up. Checked before the standard library's binary
/// search over its case table, which such characters would otherwise pay
/// for nothing (a test checks every one of them has no capital).
#[inline]
fn has_no_case(c: char) -> bool {
    let c = u32::from(c);
    // Kana, CJK ideographs (with extension A), Hangul syllables, then the
    // planes from the emoji on.
    (0x3040..=0x9FFF).contains(&c) || (0xAC00..=0xD7A3).contains(&c) || c >= 0x1_F000
}

/// The capital of `c`, or `None` when `c` is its own capital.
fn capital_of(c: char) -> Option<std::char::ToUppercase> {
    if has_no_case(c) {
        return None;
    }
    let upper = c.to_uppercase();
    let unchanged = upper.len() == 1 && upper.clone().next() == Some(c);
    (!unchanged).then_some(upper)
}

/// The capital of one two-byte character (U+0080..U+07FF: Latin with
/// accents, Greek, Cyrillic, Armenian, Hebrew, Arabic, ...) as UTF-8.
#[derive(Clone, Copy)]
struct TwoByteUpper {
    /// 0: the character is its own capital; [`TwoByteUpper::LOOK_UP`]: ask
    /// the standard library (a capital longer than `bytes`, if one existed).
    len: u8,
    bytes: [u8; 7],
}

impl TwoByteUpper {
    const LOOK_UP: u8 = u8::MAX;
    const FIRST: u32 = 0x80;
    const END: u32 = 0x800;
}

/// Every two-byte character's capital, worked out once from the standard
/// library's own mapping: an index into 1,920 entries instead of a binary
/// search of the case table per character, for the scripts the Unicode path
/// meets most.
fn two_byte_uppers() -> &'static [TwoByteUpper] {
    static TABLE: std::sync::OnceLock<Vec<TwoByteUpper>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (TwoByteUpper::FIRST..TwoByteUpper::END)
            .map(|code| {
                let mut entry = TwoByteUpper {
                    len: 0,
                    bytes: [0; 7],
                };
                let Some(upper) = char::from_u32(code).and_then(capital_of) else {
                    return entry;
                };
                let mut len = 0;
                for u in upper {
                    let end = len + u.len_utf8();
                    let Some(room) = entry.bytes.get_mut(len..end) else {
                        entry.len = TwoByteUpper::LOOK_UP;
                        return entry;
                    };
                    u.encode_utf8(room);
                    len = end;
                }
                entry.len = len as u8;
                entry
            })
            .collect()
    })
}

/// Branch-free ASCII uppercase of one byte: `a..=z` lose bit 5.
#[inline(always)]
fn ascii_upper(b: u8) -> u8 {
    b ^ ((b.wrapping_sub(b'a') < 26) as u8) << 5
}

/// Length in bytes of the reply to `input`, computed without building it, so
/// a caller can refuse a reply that cannot fit in one datagram.
pub fn uppercased_len(input: &[u8]) -> usize {
    let mut len = input.len();
    for chunk in input.utf8_chunks() {
        // Every ASCII byte and every invalid byte stays one byte.
        for c in chunk.valid().chars().filter(|c| !c.is_ascii()) {
            len = len - c.len_utf8() + c.to_uppercase().map(char::len_utf8).sum::<usize>();
        }
    }
    len
}

/// `input` as runs of valid UTF-8, each followed by the invalid bytes after
/// it (empty after the last run), as `<[u8]>::utf8_chunks` splits it.
/// Validated with `simdutf8`, many bytes per instruction: `utf8_chunks`,
/// and `str::from_utf8` after it, looked at each byte of non-ASCII text in
/// turn and took a third of the Unicode path's time on mixed-script text.
fn utf8_runs(mut input: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    std::iter::from_fn(move || {
        if input.is_empty() {
            return None;
        }
        let (valid, bad_len) = match simdutf8::compat::from_utf8(input) {
            Ok(all) => (all, 0),
            Err(e) => {
                let (valid, rest) = input.split_at(e.valid_up_to());
                // Checked again, but only the prefix just vouched for, once
                // per invalid sequence: no `unsafe` for the conversion.
                let valid = std::str::from_utf8(valid).unwrap_or_default();
                (valid, e.error_len().unwrap_or(rest.len()))
            }
        };
        let (bad, rest) = input[valid.len()..].split_at(bad_len);
        input = rest;
        Some((valid, bad))
    })
}

/// Appends the reply to `input` to `out`; returns whether `input` held bytes
/// that are not valid UTF-8.
pub fn uppercase_into(input: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let mut invalid = false;
    for (valid, bad) in utf8_runs(input) {
        push_with_non_ascii_uppercased(valid, out);
        invalid |= !bad.is_empty();
        out.extend_from_slice(bad);
    }
    // ASCII letters were copied as they came: one vectorised pass uppercases
    // them all. It changes no other byte: invalid sequences and multi-byte
    // characters are all bytes >= 0x80, and the capitals of other characters
    // hold no ASCII lowercase letter (tested over every scalar value).
    for b in &mut out[start..] {
        *b = ascii_upper(*b);
    }
    invalid
}

/// Appends `text` with each non-ASCII character uppercased and ASCII left as
/// it is. Runs that do not change (ASCII, scripts without case, capitals)
/// are copied whole; only characters that change are written one by one.
fn push_with_non_ascii_uppercased(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let two_byte = two_byte_uppers();
    let mut copied = 0;
    let mut at = 0;
    while let Some(skip) = bytes[at..].iter().position(|b| !b.is_ascii()) {
        let start = at + skip;
        // `text` is valid UTF-8: a lead byte 0xC2..=0xDF has one continuation.
        if let [lead @ 0xC2..=0xDF, next, ..] = bytes[start..] {
            let code = u32::from(lead & 0x1F) << 6 | u32::from(next & 0x3F);
            let entry = two_byte[(code - TwoByteUpper::FIRST) as usize];
            if entry.len != TwoByteUpper::LOOK_UP {
                at = start + 2;
                if entry.len > 0 {
                    out.extend_from_slice(&bytes[copied..start]);
                    out.extend_from_slice(&entry.bytes[..usize::from(entry.len)]);
                    copied = at;
                }
                continue;
            }
        }
        let Some(c) = text[start..].chars().next() else {
            break;
        };
        at = start + c.len_utf8();
        let Some(upper) = capital_of(c) else {
            continue;
        };
        out.extend_from_slice(&bytes[copied..start]);
        let mut utf8 = [0u8; 4];
        for u in upper {
            out.extend_from_slice(u.encode_utf8(&mut utf8).as_bytes());
        }
        copied = at;
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// The reply to `input` as a new vector (for callers off the hot path).
pub fn uppercase(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    uppercase_into(input, &mut out);
    out
}

/// Turns a received datagram into its reply, refusing replies over `limit`.
///
/// ASCII datagrams are uppercased in place in `datagram`
/// ([`DatagramReply::InPlace`]); others are built in `scratch`
/// ([`DatagramReply::InScratch`]), which the caller keeps between calls so
/// that its capacity is reused rather than allocated per datagram.
pub fn uppercase_datagram(
    datagram: &mut [u8],
    scratch: &mut Vec<u8>,
    limit: usize,
) -> DatagramReply {
    let ascii_len = uppercase_ascii_prefix_in_place(datagram);
    if ascii_len == datagram.len() {
        if ascii_len > limit {
            return DatagramReply::TooLarge(ReplyTooLarge {
                reply_len: ascii_len,
                limit,
                path: Path::Ascii,
            });
        }
        return DatagramReply::InPlace { len: ascii_len };
    }
    // Built first and measured after: one pass instead of two, and the
    // scratch stays bounded, since a reply is at most three times its
    // request (a datagram is at most 64 KiB).
    let (done, rest) = datagram.split_at(ascii_len);
    scratch.clear();
    scratch.extend_from_slice(done);
    let path = if uppercase_into(rest, scratch) {
        Path::InvalidUtf8
    } else {
        Path::Unicode
    };
    let len = scratch.len();
    if len > limit {
        scratch.clear();
        return DatagramReply::TooLarge(ReplyTooLarge {
            reply_len: len,
            limit,
            path,
        });
    }
    DatagramReply::InScratch { len, path }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(input: &[u8]) -> Vec<u8> {
        let mut buf = input.to_vec();
        let mut scratch = Vec::new();
        let out = uppercase_datagram(&mut buf, &mut scratch, usize::MAX);
        let bytes = out.bytes(&buf, &scratch).expect("no limit").to_vec();
        assert_eq!(
            bytes,
            uppercase(input),
            "datagram path and plain path disagree"
        );
        assert_eq!(
            bytes.len(),
            uppercased_len(input),
            "predicted length is wrong"
        );
        bytes
    }

    #[test]
    fn textbook_examples() {
        assert_eq!(reply(b"hello world"), b"HELLO WORLD");
        assert_eq!(reply("straße".as_bytes()), "STRASSE".as_bytes());
        assert_eq!(reply("ﬁ".as_bytes()), b"FI");
        assert_eq!(
            reply("안녕하세요 123".as_bytes()),
            "안녕하세요 123".as_bytes()
        );
        assert_eq!(reply(b"\xff\xfeabc"), b"\xff\xfeABC");
    }

    #[test]
    fn empty_input_gives_empty_reply() {
        assert_eq!(reply(b""), b"");
        let mut empty: [u8; 0] = [];
        let mut scratch = Vec::new();
        let out = uppercase_datagram(&mut empty, &mut scratch, 0);
        assert_eq!(out, DatagramReply::InPlace { len: 0 });
        assert_eq!(out.path(), Path::Ascii);
    }

    #[test]
    fn every_ascii_byte_uppercases_like_the_standard_library() {
        for b in 0u8..=127 {
            assert_eq!(ascii_upper(b), b.to_ascii_uppercase(), "byte {b:#x}");
            assert_eq!(reply(&[b]), [b.to_ascii_uppercase()]);
        }
    }

    #[test]
    fn invalid_utf8_is_copied_byte_for_byte() {
        // A lone continuation byte.
        assert_eq!(reply(b"a\x80b"), b"A\x80B");
        // A sequence truncated at the end of the datagram.
        assert_eq!(reply(b"ab\xe2\x82"), b"AB\xe2\x82");
        assert_eq!(reply(b"\xf0\x9f\x98"), b"\xf0\x9f\x98");
        // Overlong encodings of '/' and NUL.
        assert_eq!(reply(b"x\xc0\xafy"), b"X\xc0\xafY");
        assert_eq!(reply(b"\xe0\x80\x80z"), b"\xe0\x80\x80Z");
        // A surrogate (U+D800) encoded in UTF-8 (CESU-8/WTF-8 style).
        assert_eq!(reply(b"q\xed\xa0\x80q"), b"Q\xed\xa0\x80Q");
        // Beyond U+10FFFF, and bytes that never appear in UTF-8.
        assert_eq!(
            reply(b"\xf4\x90\x80\x80\xf8\xfe\xff"),
            b"\xf4\x90\x80\x80\xf8\xfe\xff"
        );
        // A valid multi-byte character right after an invalid byte is still uppercased.
        assert_eq!(reply("\u{ff}é".as_bytes()), "\u{178}É".as_bytes());
        assert_eq!(reply(b"\xff\xc3\xa9"), b"\xff\xc3\x89");
    }

    #[test]
    fn paths_are_reported() {
        let mut scratch = Vec::new();
        let mut ascii = *b"abc";
        assert_eq!(
            uppercase_datagram(&mut ascii, &mut scratch, 100),
            DatagramReply::InPlace { len: 3 }
        );
        let mut unicode = "ß".as_bytes().to_vec();
        assert_eq!(
            uppercase_datagram(&mut unicode, &mut scratch, 100),
            DatagramReply::InScratch {
                len: 2,
                path: Path::Unicode
            }
        );
        assert_eq!(scratch, b"SS");
        let mut invalid = b"ab\xff".to_vec();
        let out = uppercase_datagram(&mut invalid, &mut scratch, 100);
        assert_eq!(
            out,
            DatagramReply::InScratch {
                len: 3,
                path: Path::InvalidUtf8
            }
        );
        assert_eq!(out.path(), Path::InvalidUtf8);
        assert_eq!(out.bytes(&invalid, &scratch), Some(&b"AB\xff"[..]));
    }

    #[test]
    fn ascii_reply_is_built_in_place() {
        let mut buf = *b"in place";
        let mut scratch = Vec::new();
        let out = uppercase_datagram(&mut buf, &mut scratch, 100);
        assert_eq!(out, DatagramReply::InPlace { len: 8 });
        assert_eq!(&buf, b"IN PLACE", "the datagram is its own reply");
        assert_eq!(out.bytes(&buf, &scratch), Some(&b"IN PLACE"[..]));
        assert_eq!(scratch.capacity(), 0, "the ASCII path must not allocate");
    }

    #[test]
    fn replies_can_grow_up_to_three_times() {
        // U+0390 (2 bytes) uppercases to three characters, 6 bytes.
        let input = "\u{390}".repeat(10);
        let out = reply(input.as_bytes());
        assert_eq!(out.len(), 3 * input.len());
        assert_eq!(out, "\u{399}\u{308}\u{301}".repeat(10).as_bytes());
    }

    #[test]
    fn replies_over_the_limit_are_refused_and_leave_no_reply() {
        let mut buf = "ß".repeat(4).into_bytes(); // 8 bytes in, 8 out
        let mut scratch = Vec::new();
        assert!(matches!(
            uppercase_datagram(&mut buf.clone(), &mut Vec::new(), 8),
            DatagramReply::InScratch { len: 8, .. }
        ));
        let err = uppercase_datagram(&mut buf, &mut scratch, 7);
        assert_eq!(
            err,
            DatagramReply::TooLarge(ReplyTooLarge {
                reply_len: 8,
                limit: 7,
                path: Path::Unicode
            })
        );
        assert_eq!(err.bytes(&buf, &scratch), None);
        assert!(
            scratch.is_empty(),
            "nothing may be built for a refused reply"
        );

        let mut big = "\u{390}".repeat(20_000).into_bytes(); // 40,000 bytes in, 120,000 out
        let err = uppercase_datagram(&mut big, &mut scratch, crate::MAX_PAYLOAD_V6);
        assert!(
            matches!(
                err,
                DatagramReply::TooLarge(ReplyTooLarge {
                    reply_len: 120_000,
                    ..
                })
            ),
            "{err:?}"
        );

        let mut ascii = vec![b'a'; 10];
        let err = uppercase_datagram(&mut ascii, &mut scratch, 9);
        assert!(matches!(err, DatagramReply::TooLarge(_)), "10 > 9: {err:?}");
        assert_eq!(err.path(), Path::Ascii);
    }

    #[test]
    fn ascii_prefix_stops_at_the_first_non_ascii_byte_in_any_position() {
        // Both builds: the one this CPU dispatches to, and the baseline.
        let builds: [fn(&mut [u8]) -> usize; 2] = [uppercase_ascii_prefix_in_place, ascii_prefix];
        for (len, at, prefix) in (0..200)
            .flat_map(|len| (0..len).map(move |at| (len, at)))
            .flat_map(|(len, at)| builds.map(|prefix| (len, at, prefix)))
        {
            let mut buf = vec![b'x'; len];
            buf[at] = 0xc3;
            let n = prefix(&mut buf);
            assert_eq!(n, at);
            assert!(buf[..at].iter().all(|&b| b == b'X'));
            assert_eq!(buf[at], 0xc3, "the non-ASCII byte must be untouched");
            assert!(
                buf[at + 1..].iter().all(|&b| b == b'x' || b == b'X'),
                "bytes after the prefix may only have been uppercased"
            );
        }
    }

    #[test]
    fn both_ascii_builds_uppercase_every_byte_alike() {
        let all: Vec<u8> = (0u8..=127).cycle().take(1000).collect();
        for len in 0..all.len() {
            let (mut dispatched, mut baseline) = (all[..len].to_vec(), all[..len].to_vec());
            assert_eq!(uppercase_ascii_prefix_in_place(&mut dispatched), len);
            assert_eq!(ascii_prefix(&mut baseline), len);
            assert_eq!(dispatched, all[..len].to_ascii_uppercase());
            assert_eq!(baseline, dispatched);
        }
    }

    #[test]
    fn no_capital_holds_an_ascii_lowercase_letter() {
        // What lets `uppercase_into` uppercase ASCII in one pass at the end.
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            assert!(
                !c.to_uppercase().any(|u| u.is_ascii_lowercase()),
                "{c:?} uppercases to an ASCII lowercase letter"
            );
        }
    }

    #[test]
    fn characters_said_to_have_no_case_have_no_capital() {
        let caseless = (0..=0x10_ffff)
            .filter_map(char::from_u32)
            .filter(|&c| has_no_case(c));
        let mut seen = 0;
        for c in caseless {
            assert!(c.to_uppercase().eq([c]), "{c:?} has a capital");
            seen += 1;
        }
        assert!(seen > 900_000, "only {seen} characters checked");
    }

    #[test]
    fn every_scalar_value_uppercases_like_the_standard_library() {
        let all: String = (0..=0x10_ffff).filter_map(char::from_u32).collect();
        assert_eq!(reply(all.as_bytes()), all.to_uppercase().into_bytes());
        // Alone too, so each one also starts and ends a datagram.
        for c in (0x80..=0x10_ffff).step_by(7).filter_map(char::from_u32) {
            let text = c.to_string();
            assert_eq!(reply(text.as_bytes()), text.to_uppercase().into_bytes());
        }
    }

    #[test]
    fn utf8_runs_split_like_the_standard_librarys_utf8_chunks() {
        let cases: [&[u8]; 9] = [
            b"",
            b"plain",
            "caf\u{e9} \u{1F980}".as_bytes(),
            b"\xff",
            b"a\xffb\xfe\xfdc",
            b"ok\xe2\x82",
            b"\xf0\x9f\xa6\x80\xf0\x9f",
            b"\xc3(\xa0\xa1\xe2\x28\xa1",
            b"\xed\xa0\x80 surrogate",
        ];
        for input in cases {
            let ours: Vec<_> = utf8_runs(input).collect();
            let std: Vec<_> = input
                .utf8_chunks()
                .map(|c| (c.valid(), c.invalid()))
                .collect();
            assert_eq!(ours, std, "{input:?}");
        }
    }

    #[test]
    fn every_two_byte_character_uppercases_like_the_standard_library() {
        let table = two_byte_uppers();
        assert_eq!(table.len(), 0x800 - 0x80);
        for c in (0x80..0x800).filter_map(char::from_u32) {
            // Alone, and between ASCII and a character of the same kind, so
            // both the table and the runs copied around it are exercised.
            for text in [c.to_string(), format!("a{c}b{c}\u{e9}")] {
                assert_eq!(
                    reply(text.as_bytes()),
                    text.to_uppercase().into_bytes(),
                    "{text:?}"
                );
            }
        }
        assert!(table.iter().all(|e| e.len != TwoByteUpper::LOOK_UP));
    }

    #[test]
    fn scratch_capacity_is_reused() {
        let mut scratch = Vec::new();
        let mut first = "é".repeat(100).into_bytes();
        let _ = uppercase_datagram(&mut first, &mut scratch, usize::MAX);
        let cap = scratch.capacity();
        let ptr = scratch.as_ptr();
        let mut second = "ü".repeat(50).into_bytes();
        let _ = uppercase_datagram(&mut second, &mut scratch, usize::MAX);
        assert_eq!(scratch.capacity(), cap);
        assert_eq!(scratch.as_ptr(), ptr);
    }
}
