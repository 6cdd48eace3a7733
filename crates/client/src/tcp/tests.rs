//! The TCP client against small servers written here, on loopback.

use upcase_e2e::fake_server::FakeTcpServer;

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
    let server = FakeTcpServer::start(streaming);
    let port = server.port();
    let (result, output) = run_with(&config_for(port, None), "straße\n\nﬁ\nlast".as_bytes());
    result.expect("success");
    assert_eq!(output, "STRASSE\n\nFI\nLAST\n".as_bytes());
    server.finish();
}

#[test]
fn a_message_is_one_line() {
    let server = FakeTcpServer::start(streaming);
    let port = server.port();
    let (result, output) = run_with(&config_for(port, Some(b"hello \xff world")), b"");
    result.expect("success");
    assert_eq!(output, b"HELLO \xff WORLD\n");
    server.finish();
}

#[test]
fn empty_input_sends_nothing_and_prints_nothing() {
    let server = FakeTcpServer::start(streaming);
    let port = server.port();
    let (result, output) = run_with(&config_for(port, None), b"");
    result.expect("success");
    assert_eq!(output, b"");
    server.finish();
}

/// The textbook's TCPServer.py: one read, its uppercase without waiting
/// for the end of the stream, close.
#[test]
fn a_server_that_answers_one_sentence_and_closes_is_fine() {
    let server = FakeTcpServer::start(|mut stream| {
        let mut buf = [0u8; 1024];
        let read = stream.read(&mut buf).expect("read");
        let reply = String::from_utf8_lossy(&buf[..read])
            .trim_end()
            .to_uppercase();
        stream.write_all(reply.as_bytes()).expect("write");
    });
    let port = server.port();
    let (result, output) = run_with(&config_for(port, Some(b"one sentence")), b"");
    result.expect("success");
    assert_eq!(output, b"ONE SENTENCE\n", "a newline ends the output");
    server.finish();
}

#[test]
fn a_silent_server_is_an_error_after_the_timeout() {
    let (release, released) = mpsc::channel::<()>();
    let server = FakeTcpServer::start(move |_stream| {
        let _ = released.recv_timeout(PATIENCE);
    });
    let port = server.port();
    let started = Instant::now();
    let (result, _) = run_with(&config_for(port, None), b"anyone there?\n");
    let err = result.expect_err("no reply");
    assert_eq!(
        err.to_string(),
        format!("no reply from 127.0.0.1:{port} within 500ms (TCP)")
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    drop(release);
    server.finish();
}

#[test]
fn a_reset_is_an_error() {
    let server = FakeTcpServer::start(|stream| {
        // Linger 0: closing sends a reset instead of an end of stream.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    });
    let port = server.port();
    let (result, _) = run_with(&config_for(port, None), b"x\n");
    server.finish();
    let err = result.expect_err("reset");
    let message = format!("{err:#}");
    assert!(
        message.contains("reset") || message.contains("closed the connection"),
        "{message}"
    );
}

#[test]
fn a_closed_port_is_refused() {
    let port = upcase_e2e::free_tcp_port().expect("a free port");
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

/// What the client printed so far, shared with the test.
#[derive(Clone, Default)]
struct Printed(Arc<std::sync::Mutex<Vec<u8>>>);

impl Printed {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Printed {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A person typing `lines`, then Ctrl-D, or waiting (at most [`PATIENCE`])
/// when `wait_after` is set. Records what was printed at each prompt.
struct Typist {
    lines: std::collections::VecDeque<&'static str>,
    printed: Printed,
    at_prompts: Arc<std::sync::Mutex<Vec<String>>>,
    wait_after: Option<mpsc::Receiver<()>>,
}

impl crate::input::Lines for Typist {
    fn next_line(&mut self, line: &mut Vec<u8>, _: usize) -> anyhow::Result<crate::input::Line> {
        self.at_prompts
            .lock()
            .expect("lock")
            .push(self.printed.text());
        line.clear();
        match self.lines.pop_front() {
            Some(typed) => {
                line.extend_from_slice(typed.as_bytes());
                Ok(crate::input::Line::Read)
            }
            None => {
                if let Some(wait) = &self.wait_after {
                    let _ = wait.recv_timeout(PATIENCE);
                }
                Ok(crate::input::Line::End)
            }
        }
    }
}

fn typist(
    lines: &[&'static str],
    wait_after: Option<mpsc::Receiver<()>>,
) -> (Typist, Printed, Arc<std::sync::Mutex<Vec<String>>>) {
    let printed = Printed::default();
    let at_prompts = Arc::default();
    let typist = Typist {
        lines: lines.iter().copied().collect(),
        printed: printed.clone(),
        at_prompts: Arc::clone(&at_prompts),
        wait_after,
    };
    (typist, printed, at_prompts)
}

#[test]
fn at_a_terminal_each_prompt_waits_for_the_reply_to_the_line_before() {
    let server = FakeTcpServer::start(streaming);
    let port = server.port();
    let (typist, printed, at_prompts) = typist(&["one", "two"], None);
    let config = config_for(port, None);
    crate::tcp_terminal::run(&config, &SystemResolver, typist, printed.clone()).expect("success");
    assert_eq!(printed.text(), "ONE\nTWO\n");
    assert_eq!(
        *at_prompts.lock().expect("lock"),
        ["", "ONE\n", "ONE\nTWO\n"],
        "a prompt before each line, and before Ctrl-D, each after the last reply"
    );
    server.finish();
}

#[test]
fn at_a_terminal_the_servers_idle_timeout_is_said_plainly() {
    // Answers a line, then closes the connection after 300 ms without one,
    // as the server's --idle-timeout does.
    let server = FakeTcpServer::start(|mut stream| {
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf).expect("read");
        stream
            .write_all(&upcase_proto::uppercase(&buf[..read]))
            .expect("write");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let idle = stream.read(&mut buf);
        assert!(idle.is_err(), "the client sent {idle:?} while idle");
        stream.shutdown(Shutdown::Both).expect("close");
    });
    let port = server.port();
    let (still_there, waiting) = mpsc::channel::<()>();
    let (typist, printed, _) = typist(&["hi"], Some(waiting));
    let config = Config {
        timeout: Duration::from_secs(10),
        ..config_for(port, None)
    };
    let err = crate::tcp_terminal::run(&config, &SystemResolver, typist, printed.clone())
        .expect_err("closed by the server");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("127.0.0.1:{port} closed the connection after ")),
        "{message}"
    );
    assert!(message.contains("(the server's idle timeout)"), "{message}");
    assert_eq!(printed.text(), "HI\n");
    drop(still_there);
    server.finish();
}

#[test]
fn at_a_terminal_a_silent_server_is_an_error_after_the_timeout() {
    let (release, released) = mpsc::channel::<()>();
    let server = FakeTcpServer::start(move |_stream| {
        let _ = released.recv_timeout(PATIENCE);
    });
    let port = server.port();
    let (typist, printed, _) = typist(&["anyone?"], None);
    let err = crate::tcp_terminal::run(&config_for(port, None), &SystemResolver, typist, printed)
        .expect_err("no reply");
    assert_eq!(
        err.to_string(),
        format!("no reply from 127.0.0.1:{port} within 500ms (TCP)")
    );
    drop(release);
    server.finish();
}

/// nginx's stream module without `proxy_half_close on` closes the whole
/// connection when the client ends its sending side, before any reply.
#[test]
fn a_server_that_closes_without_a_byte_of_reply_is_an_error() {
    let server = FakeTcpServer::start(|mut stream| {
        let mut buf = [0u8; 1024];
        while stream.read(&mut buf).is_ok_and(|read| read > 0) {}
    });
    let port = server.port();
    let (result, output) = run_with(&config_for(port, Some(b"anyone?")), b"");
    let err = result.expect_err("no reply");
    assert_eq!(
        err.to_string(),
        format!("127.0.0.1:{port} ended the connection without a reply")
    );
    assert!(output.is_empty());
    server.finish();
    // Empty input owes nothing: still fine.
    let server = FakeTcpServer::start(|_| {});
    let (result, _) = run_with(&config_for(server.port(), None), b"");
    result.expect("nothing sent, nothing owed");
    server.finish();
}
