//! A server that floods the client, with late replies or garbage, cannot
//! keep it waiting past its timeout: the timeout is a deadline for each try,
//! not restarted by every wrong datagram, and the client reads into one
//! fixed buffer whatever arrives.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use upcase_client::{Config, NoReply, run};
use upcase_e2e::fake_server::Flooder;

/// How long a flood lasts at most: far longer than the client's timeouts,
/// so a client still waiting when it ends has ignored its deadline.
const FLOOD_LIMIT: Duration = Duration::from_secs(20);

/// Runs the client on `input` against a server that answers the first
/// datagram with its uppercase, then sends `flood` to the client from two
/// threads until the client is done: what the client returned and printed,
/// how long it took, and how many datagrams flooded it.
fn flood_test(flood: &[u8], input: &[u8]) -> (anyhow::Result<()>, Vec<u8>, Duration, u64) {
    let flooder = Flooder::start(flood.to_vec(), 2, FLOOD_LIMIT);
    let config = Config {
        timeout: Duration::from_millis(200),
        retries: 1,
        ..Config::new(flooder.addr.ip().to_string(), flooder.addr.port())
    };
    let started = Instant::now();
    let mut out = Vec::new();
    let resolver = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Ok(vec![]) };
    let result = run(&config, &resolver, input, false, &mut out);
    let took = started.elapsed();
    let flooded = flooder.stop();
    assert!(
        !flooded.ran_out,
        "the client was still waiting after {FLOOD_LIMIT:?} of flood"
    );
    (result, out, took, flooded.sent)
}

#[test]
fn a_flood_of_late_replies_does_not_extend_the_timeout() {
    // After answering `first`, the server only ever repeats `FIRST`: late
    // replies the client must skip, while its tries run out on time.
    let (result, out, took, sent) = flood_test(b"FIRST", b"first\nsecond\nthird\n");
    let err = result.expect_err("no reply to the second line");
    assert!(err.downcast_ref::<NoReply>().is_some(), "{err:#}");
    assert_eq!(out, b"FIRST\n");
    assert!(
        sent > 100,
        "the client was hardly flooded ({sent} datagrams)"
    );
    assert!(took < FLOOD_LIMIT, "{took:?}");
}

#[test]
fn a_flood_of_large_garbage_is_read_into_a_fixed_buffer() {
    // The largest datagram, not UTF-8, not a reply to anything, sent without
    // end at the port the first line came from. The second line goes out
    // on a socket of its own, so none of it is taken for its answer, and
    // the server never answers it.
    let garbage = vec![0xff; upcase_proto::MAX_PAYLOAD_V4];
    let (result, out, took, _) = flood_test(&garbage, b"first\nsecond\n");
    let err = result.expect_err("no reply to the second line");
    assert!(err.downcast_ref::<NoReply>().is_some(), "{err:#}");
    assert_eq!(out, b"FIRST\n");
    assert!(took < FLOOD_LIMIT, "{took:?}");
}
