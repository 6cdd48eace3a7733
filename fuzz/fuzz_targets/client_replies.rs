//! The client's handling of arbitrary input lines and arbitrary reply bytes:
//! lines are read bounded, sizes are checked, and every datagram received is
//! classified exactly as a plain model says (the current reply, a late reply
//! to one of the remembered earlier lines, or unexpected bytes to report).
//!
//! Input: a byte choosing how many earlier lines are remembered, one for the
//! read buffer's capacity, one for the line limit, then the client's input;
//! its lines are taken in turn as a message sent and a datagram received.
#![no_main]

mod reference;

use std::collections::VecDeque;
use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use upcase_client::{Line, check_size, read_line};
use upcase_proto::reply::{ReplyMatcher, Verdict};
use upcase_proto::{Family, uppercased_len};

fuzz_target!(|data: &[u8]| {
    let [remembered, capacity, max_len, input @ ..] = data else {
        return;
    };
    let remembered = usize::from(*remembered % 70);
    let max_len = usize::from(*max_len);
    let mut input = BufReader::with_capacity(usize::from(*capacity % 32) + 1, input);

    let mut matcher = ReplyMatcher::new(remembered);
    let mut current: Vec<u8> = Vec::new();
    let mut started = false;
    let mut earlier: VecDeque<Vec<u8>> = VecDeque::new();
    let mut line = Vec::new();
    let mut sending = true;
    loop {
        match read_line(&mut input, &mut line, max_len).expect("in memory") {
            Line::End => break,
            Line::TooLong => {
                // Skipped, as the client does; reading goes on at the next line.
                assert!(line.len() <= max_len + 2, "kept {} bytes", line.len());
                continue;
            }
            Line::Read => {
                assert!(line.len() <= max_len);
                assert!(!line.contains(&b'\n'));
            }
        }
        if sending {
            for family in [Family::V4, Family::V6] {
                let fits = line.len() <= family.max_payload()
                    && uppercased_len(&line) <= family.max_payload();
                assert_eq!(check_size(&line, family).is_ok(), fits);
            }
            matcher.start(&line);
            let previous = std::mem::replace(&mut current, reference::uppercase(&line));
            if started && remembered > 0 {
                if earlier.len() == remembered {
                    earlier.pop_front();
                }
                earlier.push_back(previous);
            }
            started = true;
            assert_eq!(matcher.expected(), current.as_slice());
        } else {
            let model = if line == current {
                Verdict::Answer
            } else if earlier.contains(&line) {
                Verdict::Late
            } else {
                Verdict::Unexpected
            };
            assert_eq!(matcher.classify(&line), model, "reply {line:?}");
        }
        sending = !sending;
    }
});
