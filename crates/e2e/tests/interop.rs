//! Interoperation with the textbook's Python programs, both ways: our client
//! against a Python server of UDPServer.py's shape, and a Python client of
//! UDPClient.py's shape against our server. The wire format is just the bytes,
//! so any difference in what comes back is a bug on one side.

use std::process::Command;

use upcase_e2e::{
    ServerProcess, Signal, assert_success, client, crate_file, python3, run_with_input,
};
use upcase_proto::uppercase;

/// Lines that exercise every path: ASCII, a longer uppercase, a caseless
/// script, an emoji beside a ligature, bytes that are not UTF-8, nothing.
const LINES: [&[u8]; 6] = [
    b"hello, world",
    "stra\u{df}e".as_bytes(),
    "\u{c548}\u{b155}\u{d558}\u{c138}\u{c694} 12000".as_bytes(),
    "rust \u{1f980} is \u{fb01}ne".as_bytes(),
    b"caf\xe9 \xff ok",
    b"",
];

fn input() -> Vec<u8> {
    LINES
        .iter()
        .flat_map(|line| [*line, b"\n"].concat())
        .collect()
}

/// What a correct peer prints: each line's uppercase on its own line.
fn expected_output() -> Vec<u8> {
    LINES
        .iter()
        .flat_map(|line| [uppercase(line), b"\n".to_vec()].concat())
        .collect()
}

fn python_server(bind: &str) -> ServerProcess {
    ServerProcess::start_command(
        python3()
            .arg(crate_file("python/udp_server.py"))
            .args(["--bind", bind, "0"]),
    )
}

fn python_client(server: &ServerProcess) -> Command {
    let addr = server.loopback_addr();
    let mut command = python3();
    command
        .arg(crate_file("python/udp_client.py"))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    command
}

#[test]
fn our_client_talks_to_the_python_server() {
    for bind in ["127.0.0.1", "::1"] {
        let server = python_server(bind);
        let addr = server.loopback_addr();
        let port = addr.port().to_string();
        let host = addr.ip().to_string();
        let out = client(&["--server", &host, "--port", &port], &input());
        assert_success(&out, "upcase-client");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&expected_output()),
            "over {bind}"
        );
        assert_eq!(out.stdout, expected_output(), "over {bind}, byte for byte");
    }
}

#[test]
fn the_python_client_talks_to_our_server() {
    for bind in ["127.0.0.1", "::1"] {
        let server = ServerProcess::start(&["--bind", bind, "--port", "0"]);
        let out = run_with_input(&mut python_client(&server), &input());
        assert_success(&out, "udp_client.py");
        assert_eq!(out.stdout, expected_output(), "over {bind}");
        let stopped = server.stop_with(Signal::SIGTERM);
        assert!(stopped.status.success(), "server: {}", stopped.stderr);
        assert_eq!(stopped.udp().received, LINES.len() as u64);
        assert_eq!(stopped.udp().replied, LINES.len() as u64);
        assert_eq!(stopped.udp().invalid_utf8, 1);
    }
}

/// The reference for the transform is Python's own `str.upper()`: the same
/// lines through the Python pair give the same bytes as through ours.
#[test]
fn both_pairs_give_the_same_bytes() {
    let python = python_server("127.0.0.1");
    let through_python = run_with_input(&mut python_client(&python), &input());
    assert_success(&through_python, "udp_client.py against udp_server.py");

    let ours = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let port = ours.addr().port().to_string();
    let through_ours = client(&["--server", "127.0.0.1", "--port", &port], &input());
    assert_success(&through_ours, "upcase-client against upcase-server");

    assert_eq!(through_ours.stdout, through_python.stdout);
}
