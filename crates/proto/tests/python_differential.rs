//! The transform against Python 3's `str.upper()`, the textbook server's
//! transform, on every Unicode scalar value and on random byte strings.
//!
//! The two may differ only where the Unicode versions differ: Python's
//! `unicodedata` is an older Unicode version than Rust's standard library, and
//! a letter whose capital was added to Unicode later has no uppercase mapping
//! in Python yet. Each such difference is listed below with its reason, and
//! the test checks the reason against Python's own database.

use std::collections::BTreeMap;
use std::process::Command;

use upcase_proto::uppercase;

/// Code points whose uppercase mapping exists in Rust's Unicode version
/// (17.0 for Rust 1.95) but not in Python 3.11's (14.0), because the capital
/// letter was encoded after Unicode 14.
const NEWER_CAPITALS: &[(u32, u32, &str)] = &[
    (
        0x019B,
        0x019B,
        "λ with stroke: capital U+A7DC added in Unicode 16.0",
    ),
    (
        0x0264,
        0x0264,
        "rams horn: capital U+A7CB added in Unicode 16.0",
    ),
    (
        0x1C8A,
        0x1C8A,
        "Cyrillic small tje: letter and capital U+1C89 added in Unicode 16.0",
    ),
    (
        0xA7CD,
        0xA7CD,
        "Latin small s with diagonal stroke: pair added in Unicode 16.0",
    ),
    (
        0xA7CF,
        0xA7CF,
        "Latin small pharyngeal voiced fricative: pair added in Unicode 17.0",
    ),
    (
        0xA7D3,
        0xA7D3,
        "Latin small double thorn: capital U+A7D2 added in Unicode 17.0",
    ),
    (
        0xA7D5,
        0xA7D5,
        "Latin small double wynn: capital U+A7D4 added in Unicode 17.0",
    ),
    (
        0xA7DB,
        0xA7DB,
        "Latin small lambda: pair added in Unicode 16.0",
    ),
    (
        0x10D70,
        0x10D85,
        "Garay small letters: script added in Unicode 16.0",
    ),
    (
        0x16EBB,
        0x16ED3,
        "Beria Erfe small letters: script added in Unicode 17.0",
    ),
];

fn python(script: &str, stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test (it is on the development machines and in CI)");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write to python3");
    drop(input);
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "python3 failed");
    out.stdout
}

/// `code point -> uppercase bytes` for every scalar value that Python changes.
fn python_changes() -> BTreeMap<u32, Vec<u8>> {
    let script = r#"
import sys
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    c = chr(cp)
    u = c.upper()
    if u != c:
        print("%x %s" % (cp, u.encode().hex()))
"#;
    let text = String::from_utf8(python(script, None)).expect("ascii");
    text.lines()
        .map(|line| {
            let (cp, hex) = line.split_once(' ').expect("two fields");
            (u32::from_str_radix(cp, 16).expect("hex"), decode_hex(hex))
        })
        .collect()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ours_changes() -> BTreeMap<u32, Vec<u8>> {
    let mut buf = [0u8; 4];
    (0..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .filter_map(|c| {
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            let upper = uppercase(bytes);
            (upper != bytes).then_some((c as u32, upper))
        })
        .collect()
}

fn allowed(cp: u32) -> Option<&'static str> {
    NEWER_CAPITALS
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&cp))
        .map(|(_, _, why)| *why)
}

/// Whether random bytes happened to form a letter of [`NEWER_CAPITALS`].
fn has_newer_capital(bytes: &[u8]) -> bool {
    bytes
        .utf8_chunks()
        .any(|chunk| chunk.valid().chars().any(|c| allowed(c as u32).is_some()))
}

#[test]
fn every_scalar_value_uppercases_as_in_python_except_newer_capitals() {
    let theirs = python_changes();
    let ours = ours_changes();
    assert!(
        theirs.len() > 1400,
        "python listed too few mappings: {}",
        theirs.len()
    );

    let mut unexplained = Vec::new();
    let mut explained = Vec::new();
    for cp in theirs
        .keys()
        .chain(ours.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (p, o) = (theirs.get(cp), ours.get(cp));
        if p == o {
            continue;
        }
        match (p, allowed(*cp)) {
            // Python leaves the letter alone; we map it to a newer capital.
            (None, Some(_)) => explained.push((*cp, o.cloned().unwrap_or_default())),
            _ => unexplained.push(format!(
                "U+{cp:04X}: python {:?} ours {:?}",
                p.map(|b| encode_hex(b)),
                o.map(|b| encode_hex(b))
            )),
        }
    }
    assert!(
        unexplained.is_empty(),
        "differences from Python with no listed reason:\n{}",
        unexplained.join("\n")
    );

    // The listed reason must be true: the capital we produce is a character
    // Python's (older) Unicode database does not have yet.
    if !explained.is_empty() {
        let input: String = explained
            .iter()
            .map(|(_, upper)| format!("{}\n", encode_hex(upper)))
            .collect();
        let script = r#"
import sys, unicodedata
for line in sys.stdin:
    s = bytes.fromhex(line.strip()).decode()
    print(all(unicodedata.category(c) == "Cn" for c in s))
"#;
        let verdicts = String::from_utf8(python(script, Some(input.as_bytes()))).expect("ascii");
        for ((cp, _), verdict) in explained.iter().zip(verdicts.lines()) {
            assert_eq!(
                verdict, "True",
                "U+{cp:04X}: its capital is already in Python's Unicode database"
            );
        }
    }
}

#[test]
fn random_bytes_uppercase_as_python_with_surrogateescape() {
    // Python's textbook server dies on invalid UTF-8; with errors="surrogateescape"
    // it keeps every invalid byte, which is exactly our rule.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<Vec<u8>> = ["a", "z", "A", " ", "ß", "ﬁ", "é", "ΐ", "한", "🙂", "ǰ", "ꙁ"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain((0x80..=0xff).map(|b| vec![b as u8]))
        .collect();
    let samples: Vec<Vec<u8>> = (0..2000)
        .map(|_| {
            let n = next() % 24;
            (0..n)
                .flat_map(|_| alphabet[(next() % alphabet.len() as u64) as usize].clone())
                .collect()
        })
        .collect();
    let input: String = samples
        .iter()
        .map(|s| format!("{}\n", encode_hex(s)))
        .collect();
    let script = r#"
import sys
for line in sys.stdin:
    b = bytes.fromhex(line.strip())
    print(b.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape").hex())
"#;
    let out = String::from_utf8(python(script, Some(input.as_bytes()))).expect("ascii");
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(answers.len(), samples.len());
    let mut compared = 0;
    for (sample, answer) in samples.iter().zip(answers) {
        if has_newer_capital(sample) {
            continue;
        }
        assert_eq!(
            encode_hex(&uppercase(sample)),
            answer,
            "input {}",
            encode_hex(sample)
        );
        compared += 1;
    }
    assert!(compared > 1900, "only {compared} samples compared");
}
