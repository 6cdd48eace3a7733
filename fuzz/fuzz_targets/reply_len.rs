//! The predicted reply length equals the real one, and the datagram path
//! refuses exactly the replies over its limit.
#![no_main]

mod reference;

use libfuzzer_sys::fuzz_target;
use upcase_proto::{DatagramReply, uppercase, uppercase_datagram, uppercased_len};

fuzz_target!(|data: &[u8]| {
    let predicted = uppercased_len(data);
    assert_eq!(predicted, reference::uppercase(data).len());
    assert_eq!(predicted, uppercase(data).len());

    // Limits around the reply's length, and one the input chooses.
    let chosen = data
        .get(..2)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    for limit in [
        chosen,
        predicted.saturating_sub(1),
        predicted,
        predicted + 1,
    ] {
        let mut datagram = data.to_vec();
        let mut scratch = Vec::new();
        match uppercase_datagram(&mut datagram, &mut scratch, limit) {
            DatagramReply::InPlace { len } | DatagramReply::InScratch { len, .. } => {
                assert!(predicted <= limit);
                assert_eq!(len, predicted);
            }
            DatagramReply::TooLarge(too_large) => {
                assert!(predicted > limit);
                assert_eq!(too_large.reply_len, predicted);
                assert_eq!(too_large.limit, limit);
                assert!(scratch.is_empty(), "a refused reply leaves nothing behind");
            }
        }
    }
});
