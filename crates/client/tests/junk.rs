//! Junk after an answer: a server (or anyone who can forge its address) that
//! keeps sending datagrams after it has answered a line never has one of
//! them printed as the answer to a later line, however many arrive, and
//! each line still ends within its timeout and retries.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use upcase_client::{Config, NoReply, run};
use upcase_proto::uppercase;

/// What the junk server sends for the n-th datagram it receives (from 0):
/// each datagram with the address it goes to. It is told the request, who
/// sent it, and who sent the first one.
type Script = dyn Fn(usize, &[u8], SocketAddr, SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> + Send;

/// A loopback server in a thread that follows its script until dropped;
/// records what it received.
struct JunkServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    socket: UdpSocket,
    thread: Option<thread::JoinHandle<()>>,
}

impl JunkServer {
    fn start(script: Box<Script>) -> JunkServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let serving = socket.try_clone().expect("clone");
        let thread = thread::spawn(move || {
            let mut buf = vec![0; upcase_proto::RECV_BUFFER_LEN];
            let mut first = None;
            // Ends when the test sends the empty "stop" datagram.
            while let Ok((len @ 1.., peer)) = serving.recv_from(&mut buf) {
                let first = *first.get_or_insert(peer);
                let n = {
                    let mut log = log.lock().expect("lock");
                    log.push(buf[..len].to_vec());
                    log.len() - 1
                };
                for (to, datagram) in script(n, &buf[..len], peer, first) {
                    // A full or closed port on the client's side is its affair.
                    let _ = serving.send_to(&datagram, to);
                }
            }
        });
        JunkServer {
            addr,
            received,
            socket,
            thread: Some(thread),
        }
    }

    fn received(mut self) -> Vec<Vec<u8>> {
        self.stop();
        self.received.lock().expect("lock").clone()
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.socket.send_to(b"", self.addr);
            let _ = thread.join();
        }
    }
}

impl Drop for JunkServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Datagrams that are no reply to anything: garbage bytes, text, the
/// largest datagram, numbered so that no two are alike.
fn junk(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| match i % 4 {
            0 => format!("JUNK {i}").into_bytes(),
            1 => vec![0xff, 0xfe, (i % 251) as u8],
            2 if i % 64 == 2 => vec![0xaa; upcase_proto::MAX_PAYLOAD_V4],
            _ => format!("LINE {i}").into_bytes(),
        })
        .collect()
}

fn to(peer: SocketAddr, datagrams: Vec<Vec<u8>>) -> impl Iterator<Item = (SocketAddr, Vec<u8>)> {
    datagrams.into_iter().map(move |d| (peer, d))
}

/// Runs the client library against `server`, reading `input`.
fn run_against(
    server: &JunkServer,
    timeout: Duration,
    retries: u32,
    input: &[u8],
) -> (anyhow::Result<()>, Vec<u8>) {
    let config = Config {
        timeout,
        retries,
        ..Config::new(server.addr.ip().to_string(), server.addr.port())
    };
    let resolver = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Ok(vec![]) };
    let mut out = Vec::new();
    let result = run(&config, &resolver, input, false, &mut out);
    (result, out)
}

const LINES: usize = 20;

/// The lines of `out`, each cut to 40 characters so that a junk datagram of
/// 64 KiB printed by mistake does not fill the test's report.
fn printed_lines(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    text.lines().map(|l| l.chars().take(40).collect()).collect()
}

#[test]
fn junk_before_and_after_each_answer_is_never_printed() {
    // After the first answer, 5,000 junk datagrams; then each line gets 64
    // before its answer and 64 after: about 7,500 in all. Each burst fits
    // in a socket's default receive buffer, so the answer is never dropped
    // by the kernel and each line needs one try.
    let server = JunkServer::start(Box::new(|n, request, peer, _| {
        let reply = uppercase(request);
        if n == 0 {
            return std::iter::once((peer, reply))
                .chain(to(peer, junk(5_000)))
                .collect();
        }
        to(peer, junk(64))
            .chain([(peer, reply)])
            .chain(to(peer, junk(64)))
            .collect()
    }));
    let input: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    // Long enough that a busy machine never makes a line try again.
    let (result, out) = run_against(&server, Duration::from_secs(10), 0, input.as_bytes());
    result.expect("every line answered");
    let expected: Vec<String> = (0..LINES).map(|i| format!("LINE {i}")).collect();
    assert_eq!(printed_lines(&out), expected);
    assert_eq!(server.received().len(), LINES, "one try per line");
}

#[test]
fn a_flood_at_an_answered_lines_port_never_answers_the_next() {
    // The server answers the first line only; each datagram after it sets
    // off 2,000 junk datagrams at the port the first line came from, none
    // to the port that asks. A client still listening there would print
    // junk as the second line's answer.
    let server = JunkServer::start(Box::new(|n, request, peer, first| {
        if n == 0 {
            vec![(peer, uppercase(request))]
        } else {
            to(first, junk(2_000)).collect()
        }
    }));
    let (result, out) = run_against(&server, Duration::from_millis(300), 1, b"first\nsecond\n");
    let err = result.expect_err("the second line has no answer");
    assert!(err.downcast_ref::<NoReply>().is_some(), "{err:#}");
    assert_eq!(out, b"FIRST\n");
    assert_eq!(
        server.received(),
        [&b"first"[..], b"second", b"second"],
        "both tries of the second line were made"
    );
}

#[test]
fn the_exact_answer_is_waited_for_and_another_reply_taken_only_without_it() {
    // "two" gets its text in mixed case, as a server with another uppercase
    // might send, and never its exact uppercase: that reply is printed once
    // the timeout has run out, without a second try. "three" gets its text
    // echoed before its exact uppercase: the exact one wins.
    let server = JunkServer::start(Box::new(|_, request, peer, _| {
        let datagrams: &[&[u8]] = match request {
            b"two" => &[b"Two"],
            b"three" => &[b"three", b"THREE"],
            _ => &[b"ONE"],
        };
        datagrams.iter().map(|d| (peer, d.to_vec())).collect()
    }));
    let (result, out) = run_against(&server, Duration::from_millis(300), 2, b"one\ntwo\nthree\n");
    result.expect("every line answered");
    assert_eq!(String::from_utf8_lossy(&out), "ONE\nTwo\nTHREE\n");
    assert_eq!(server.received(), [&b"one"[..], b"two", b"three"]);
}
