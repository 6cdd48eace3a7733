//! The transform written again, as plainly as possible and without the
//! library's fast paths, for the targets to compare against: every valid
//! UTF-8 run uppercased character by character, every invalid byte copied.

pub fn uppercase(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_upper(valid, &mut out);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // Everything before `valid_up_to` is UTF-8 by definition.
                if let Ok(valid) = std::str::from_utf8(valid) {
                    push_upper(valid, &mut out);
                }
                // `None`: the input ends inside a character; all of it is invalid.
                let invalid = e.error_len().unwrap_or(after.len());
                out.extend_from_slice(&after[..invalid]);
                rest = &after[invalid..];
            }
        }
    }
    out
}

fn push_upper(text: &str, out: &mut Vec<u8>) {
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        for upper in c.to_uppercase() {
            out.extend_from_slice(upper.encode_utf8(&mut utf8).as_bytes());
        }
    }
}
