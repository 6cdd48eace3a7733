//! The client library against fake servers on loopback, with an in-memory
//! resolver, input and output.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use upcase_client::{Config, EXIT_NO_REPLY, NoReply, PROMPT, exit_code, run};
use upcase_e2e::fake_server::{FakeServer, silent, uppercasing};
use upcase_e2e::free_udp_port;

/// A loopback port with no socket behind it: sending there is refused.
fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_udp_port().expect("free port")))
}

/// A long timeout, so a busy machine never makes a test retry by surprise.
fn config(addr: SocketAddr) -> Config {
    Config {
        timeout: Duration::from_secs(5),
        ..Config::new(addr.ip().to_string(), addr.port())
    }
}

fn resolving_to(addrs: Vec<SocketAddr>) -> impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> {
    move |_, _| Ok(addrs.clone())
}

fn run_lines(config: &Config, input: &[u8], terminal: bool) -> (anyhow::Result<()>, Vec<u8>) {
    let mut out = Vec::new();
    let result = run(config, &resolving_to(vec![]), input, terminal, &mut out);
    (result, out)
}

#[test]
fn lines_come_back_uppercased_in_order() {
    let server = FakeServer::start(uppercasing);
    let (result, out) = run_lines(
        &config(server.addr),
        b"one\r\ntwo\n\nstra\xc3\x9fe\n\xffx",
        false,
    );
    result.expect("success");
    assert_eq!(out, b"ONE\nTWO\n\nSTRASSE\n\xffX\n");
    assert_eq!(
        server.received(),
        [&b"one"[..], b"two", b"", "straße".as_bytes(), b"\xffx"]
    );
}

#[test]
fn a_terminal_gets_the_prompt_before_each_line() {
    let server = FakeServer::start(uppercasing);
    let (result, out) = run_lines(&config(server.addr), b"a\nb\n", true);
    result.expect("success");
    let prompt = String::from_utf8(PROMPT.to_vec()).expect("ascii");
    assert_eq!(prompt, "Input lowercase sentence:");
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        format!("{prompt}A\n{prompt}B\n{prompt}")
    );
}

#[test]
fn a_message_is_sent_instead_of_the_input() {
    let server = FakeServer::start(uppercasing);
    let config = Config {
        message: Some(b"hello world".to_vec()),
        ..config(server.addr)
    };
    let (result, out) = run_lines(&config, b"ignored\n", true);
    result.expect("success");
    assert_eq!(out, b"HELLO WORLD\n");
    assert_eq!(server.received(), [b"hello world"]);
}

#[test]
fn a_failing_resolver_gives_one_clear_error() {
    let failing = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> {
        Err(io::Error::other("Name or service not known"))
    };
    let config = Config::new("server.invalid", 12_000);
    let err = run(&config, &failing, &b"x\n"[..], false, io::sink()).expect_err("fails");
    assert_eq!(
        format!("{err:#}"),
        "cannot resolve server.invalid: Name or service not known"
    );
    assert_eq!(exit_code(&err), 1);
}

#[test]
fn a_refused_address_moves_on_to_the_next_at_once() {
    let server = FakeServer::start(uppercasing);
    let refused = refused_addr();
    let config = Config {
        // Waiting out a timeout on the refused address would take minutes.
        timeout: Duration::from_secs(600),
        ..Config::new("server.test", server.addr.port())
    };
    let mut out = Vec::new();
    run(
        &config,
        &resolving_to(vec![refused, server.addr]),
        &b"x\ny\n"[..],
        false,
        &mut out,
    )
    .expect("the second address answers");
    assert_eq!(out, b"X\nY\n");
}

#[test]
fn a_silent_address_is_left_after_all_its_tries() {
    let silent = FakeServer::start(silent);
    let server = FakeServer::start(uppercasing);
    let config = Config {
        retries: 1,
        timeout: Duration::from_millis(300),
        ..config(server.addr)
    };
    let mut out = Vec::new();
    run(
        &Config {
            server: "server.test".into(),
            ..config
        },
        &resolving_to(vec![silent.addr, server.addr]),
        &b"x\ny\n"[..],
        false,
        &mut out,
    )
    .expect("the second address answers");
    assert_eq!(out, b"X\nY\n");
    assert_eq!(
        silent.received(),
        [b"x", b"x"],
        "two tries on the silent one"
    );
    assert_eq!(
        server.received(),
        [b"x", b"y"],
        "then it stays with the one that answered"
    );
}

#[test]
fn all_addresses_refused_is_an_error() {
    let (a, b) = (refused_addr(), refused_addr());
    let config = Config {
        timeout: Duration::from_secs(600),
        ..Config::new("server.test", 1)
    };
    let err = run(
        &config,
        &resolving_to(vec![a, b]),
        &b"x\n"[..],
        false,
        io::sink(),
    )
    .expect_err("nobody there");
    assert_eq!(
        err.to_string(),
        format!("no server at {a}, {b} (connection refused)")
    );
    assert_eq!(exit_code(&err), 1);
}

#[test]
fn no_reply_after_every_try_is_exit_status_3() {
    let silent = FakeServer::start(silent);
    let config = Config {
        timeout: Duration::from_millis(100),
        ..config(silent.addr)
    };
    let (result, out) = run_lines(&config, b"x\n", false);
    let err = result.expect_err("no reply");
    assert_eq!(
        err.to_string(),
        format!(
            "no reply from {} after 3 tries (timeout 100ms)",
            silent.addr
        )
    );
    assert!(err.downcast_ref::<NoReply>().is_some());
    assert_eq!(exit_code(&err), EXIT_NO_REPLY);
    assert!(out.is_empty());
    assert_eq!(silent.received().len(), 3);
}

/// Input that holds back everything after its first part until told to go
/// on, so a test can change the world between two lines.
struct GatedInput {
    first: io::Cursor<Vec<u8>>,
    gate: Option<mpsc::Receiver<()>>,
    rest: io::Cursor<Vec<u8>>,
}

impl Read for GatedInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.first.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv();
        }
        self.rest.read(buf)
    }
}

#[test]
fn a_server_gone_after_answering_is_not_left_for_another_address() {
    let (answered, first_answer) = mpsc::channel();
    let server = FakeServer::start(move |n, request, peer| {
        let _ = answered.send(n);
        uppercasing(n, request, peer)
    });
    let first = server.addr;
    let other = FakeServer::start(uppercasing);
    let (go, gate) = mpsc::channel();
    let input = io::BufReader::with_capacity(
        1,
        GatedInput {
            first: io::Cursor::new(b"x\n".to_vec()),
            gate: Some(gate),
            rest: io::Cursor::new(b"y\n".to_vec()),
        },
    );
    let config = Config {
        timeout: Duration::from_secs(600),
        ..Config::new("server.test", first.port())
    };
    let stopper = thread::spawn(move || {
        // Once the first line is in, take the server away (dropping it waits
        // for the reply to be sent).
        let _ = first_answer.recv_timeout(Duration::from_secs(20));
        drop(server);
        let _ = go.send(());
    });
    let mut out = Vec::new();
    let result = run(
        &config,
        &resolving_to(vec![first, other.addr]),
        input,
        false,
        &mut out,
    );
    stopper.join().expect("stopper");
    let err = result.expect_err("the server is gone");
    assert_eq!(
        err.to_string(),
        format!("no server at {first} (connection refused)")
    );
    assert_eq!(out, b"X\n");
    assert!(other.received().is_empty(), "never moves on once answered");
}

#[test]
fn an_empty_input_sends_nothing() {
    let server = FakeServer::start(uppercasing);
    let (result, out) = run_lines(&config(server.addr), b"", false);
    result.expect("success");
    assert!(out.is_empty());
    assert!(server.received().is_empty());
}

#[test]
fn lines_that_cannot_be_sent_are_skipped_and_the_others_go() {
    let server = FakeServer::start(uppercasing);
    // Too long to send; then one whose reply would be too long (U+0149
    // becomes two characters, one byte more); then an ordinary one.
    let mut input = vec![b'a'; 100_000];
    input.push(b'\n');
    let mut grows = "\u{149}".as_bytes().to_vec();
    grows.resize(65_507, b'a');
    input.extend_from_slice(&grows);
    input.extend_from_slice(b"\nstill sent\n");
    let addr = server.addr;
    let (result, out) = run_lines(&config(addr), &input, false);
    let (only_long, _) = run_lines(&config(addr), &grows, false);
    assert_eq!(out, b"STILL SENT\n");
    assert_eq!(server.received(), vec![b"still sent".to_vec()]);
    let err = result.expect_err("two lines were skipped");
    assert_eq!(
        err.to_string(),
        "2 lines were not sent; the first, line 1: message is longer than the largest UDP \
         datagram over IPv4 (65507 bytes)"
    );
    let err = only_long.expect_err("one line was skipped").to_string();
    assert!(
        err.starts_with(
            "line 1 was not sent: the reply to this 65507-byte message would be 65508 bytes"
        ),
        "{err}"
    );
}
