//! The TCP client against small servers written here, on loopback.

use std::net::{Ipv4Addr, TcpListener};

use upcase_proto::StreamUppercaser;

use super::*;

const PATIENCE: Duration = Duration::from_secs(20);

fn config_for(port: u16, message: Option<&[u8]>) -> Config {
    Config {
        timeout: Duration::from_millis(500),
        message: message.map(<[u8]>::to_vec),
        ..Config::new("127.0.0.1", port)
    }
}

/// A server that handles one connection with `serve`, on a thread.
fn one_connection(serve: impl FnOnce(TcpStream) + Send + 'static) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        serve(stream);
    });
    (port, handle)
}

/// Our server's behaviour in miniature: the stream uppercased as it comes.
fn streaming(mut stream: TcpStream) {
    let mut uppercaser = StreamUppercaser::new();
    let mut buf = [0u8; 7];
    let mut out = Vec::new();
    loop {
        let read = stream.read(&mut buf).expect("read");
        out.clear();
        if read == 0 {
            uppercaser.finish(&mut out);
            stream.write_all(&out).expect("write");
            return;
        }
        uppercaser.feed(&buf[..read], &mut out);
        stream.write_all(&out).expect("write");
    }
}

fn run_with(config: &Config, input: &[u8]) -> (anyhow::Result<()>, Vec<u8>) {
    let mut output = Vec::new();
    let input = match &config.message {
        Some(message) => [message.as_slice(), b"\n"].concat(),
        None => input.to_vec(),
    };
    let result = run(config, &SystemResolver, io::Cursor::new(input), &mut output);
    (result, output)
}

#[test]
fn lines_come_back_uppercased_and_an_unfinished_last_line_is_finished() {
    let (port, server) = one_connection(streaming);
    let (result, output) = run_with(&config_for(port, None), "straße\n\nﬁ\nlast".as_bytes());
    result.expect("success");
    assert_eq!(output, "STRASSE\n\nFI\nLAST\n".as_bytes());
    server.join().expect("server");
}

#[test]
fn a_message_is_one_line() {
    let (port, server) = one_connection(streaming);
    let (result, output) = run_with(&config_for(port, Some(b"hello \xff world")), b"");
    result.expect("success");
    assert_eq!(output, b"HELLO \xff WORLD\n");
    server.join().expect("server");
}

#[test]
fn empty_input_sends_nothing_and_prints_nothing() {
    let (port, server) = one_connection(streaming);
    let (result, output) = run_with(&config_for(port, None), b"");
    result.expect("success");
    assert_eq!(output, b"");
    server.join().expect("server");
}

/// The textbook's TCPServer.py: one read, its uppercase without waiting
/// for the end of the stream, close.
#[test]
fn a_server_that_answers_one_sentence_and_closes_is_fine() {
    let (port, server) = one_connection(|mut stream| {
        let mut buf = [0u8; 1024];
        let read = stream.read(&mut buf).expect("read");
        let reply = String::from_utf8_lossy(&buf[..read])
            .trim_end()
            .to_uppercase();
        stream.write_all(reply.as_bytes()).expect("write");
    });
    let (result, output) = run_with(&config_for(port, Some(b"one sentence")), b"");
    result.expect("success");
    assert_eq!(output, b"ONE SENTENCE\n", "a newline ends the output");
    server.join().expect("server");
}

#[test]
fn a_silent_server_is_an_error_after_the_timeout() {
    let (release, released) = mpsc::channel::<()>();
    let (port, server) = one_connection(move |_stream| {
        let _ = released.recv_timeout(PATIENCE);
    });
    let started = Instant::now();
    let (result, _) = run_with(&config_for(port, None), b"anyone there?\n");
    let err = result.expect_err("no reply");
    assert_eq!(
        err.to_string(),
        format!("no reply from 127.0.0.1:{port} within 500ms (TCP)")
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    drop(release);
    server.join().expect("server");
}

#[test]
fn a_reset_is_an_error() {
    let (port, server) = one_connection(|stream| {
        // Linger 0: closing sends a reset instead of an end of stream.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    });
    let (result, _) = run_with(&config_for(port, None), b"x\n");
    server.join().expect("server");
    let err = result.expect_err("reset");
    let message = format!("{err:#}");
    assert!(
        message.contains("reset") || message.contains("closed the connection"),
        "{message}"
    );
}

#[test]
fn a_closed_port_is_refused() {
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let (result, output) = run_with(&config_for(port, Some(b"x")), b"");
    let err = result.expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("cannot connect over TCP to 127.0.0.1:{port} (connection refused)")
    );
    assert!(output.is_empty());
}

#[test]
fn newlines_are_counted() {
    assert_eq!(newlines(b""), 0);
    assert_eq!(newlines(b"a\nb\n\n"), 3);
}
