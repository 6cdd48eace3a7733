//! A server that floods the client, with late replies or garbage, cannot
//! keep it waiting past its timeout: the timeout is a deadline for each try,
//! not restarted by every wrong datagram, and the client reads into one
//! fixed buffer whatever arrives.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use upcase_client::{Config, NoReply, run};

/// How long a flood lasts at most: far longer than the client's timeouts,
/// so a client still waiting when it ends has ignored its deadline.
const FLOOD_LIMIT: Duration = Duration::from_secs(20);

/// A server that answers the first datagram with its uppercase, then sends
/// `flood` to the client from `flooders` threads until `stop` or
/// [`FLOOD_LIMIT`]. Returns whether a flood ran out its time, and how many
/// datagrams it sent.
struct Flooder {
    addr: SocketAddr,
    stop: AtomicBool,
    ran_out: AtomicBool,
    sent: AtomicU64,
}

impl Flooder {
    fn serve(&self, socket: &UdpSocket, flood: &[u8], flooders: usize) {
        let mut buf = vec![0; 65_536];
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            return;
        };
        socket
            .send_to(&upcase_proto::uppercase(&buf[..len]), peer)
            .expect("first reply");
        thread::scope(|s| {
            for _ in 0..flooders {
                s.spawn(|| {
                    let out = socket.try_clone().expect("clone");
                    let deadline = Instant::now() + FLOOD_LIMIT;
                    while !self.stop.load(Ordering::Relaxed) {
                        if Instant::now() > deadline {
                            self.ran_out.store(true, Ordering::Relaxed);
                            return;
                        }
                        // The client's buffer being full is its problem.
                        if out.send_to(flood, peer).is_ok() {
                            self.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
    }
}

fn flood_test(flood: &[u8], input: &[u8]) -> (anyhow::Result<()>, Vec<u8>, Duration, u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(FLOOD_LIMIT)).expect("timeout");
    let flooder = Flooder {
        addr: socket.local_addr().expect("addr"),
        stop: AtomicBool::new(false),
        ran_out: AtomicBool::new(false),
        sent: AtomicU64::new(0),
    };
    let config = Config {
        timeout: Duration::from_millis(200),
        retries: 1,
        ..Config::new(flooder.addr.ip().to_string(), flooder.addr.port())
    };
    let (result, out, took) = thread::scope(|s| {
        s.spawn(|| flooder.serve(&socket, flood, 2));
        let started = Instant::now();
        let mut out = Vec::new();
        let resolver = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Ok(vec![]) };
        let result = run(&config, &resolver, input, false, &mut out);
        let took = started.elapsed();
        flooder.stop.store(true, Ordering::Relaxed);
        (result, out, took)
    });
    assert!(
        !flooder.ran_out.load(Ordering::Relaxed),
        "the client was still waiting after {FLOOD_LIMIT:?} of flood"
    );
    (result, out, took, flooder.sent.load(Ordering::Relaxed))
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
    // The largest datagram, not UTF-8, not a reply to anything: the client
    // takes the first as the server's (strange) answer to the next line and
    // ignores the rest as stale.
    let garbage = vec![0xff; upcase_proto::MAX_PAYLOAD_V4];
    let (result, out, _, _) = flood_test(&garbage, b"first\nsecond\n");
    result.expect("garbage is still an answer");
    let mut expected = b"FIRST\n".to_vec();
    expected.extend_from_slice(&garbage);
    expected.push(b'\n');
    assert_eq!(out, expected);
}
