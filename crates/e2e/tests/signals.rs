//! The server's signals, against the real binary: a stop signal sent twice
//! (as `timeout(1)` does: to the child, then to its process group) keeps
//! the summary and the exit status 0; a third exits at once with status 1
//! and says so; SIGHUP stops like SIGTERM; SIGUSR1 logs the counters so far
//! and the server goes on serving.
//!
//! A stop is held open, where a test needs it to last, by a TCP connection
//! left open under a long `--stop-grace`; each signal is sent only once the
//! server has said it took the one before, so that no two can be merged
//! into one (the kernel, and signal-hook after it, keep at most one of each
//! signal pending). The runs under `timeout(1)` get their two signals as
//! timeout sends them, which may or may not be merged.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use upcase_e2e::tcp::{connect, read_exactly};
use upcase_e2e::{
    PATIENCE, addresses_in, binary, run_with_input, summary_value, wait_with_deadline,
};

/// `upcase-server` whose stderr is read line by line while it runs.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: Receiver<String>,
    /// Every stderr line read so far.
    stderr: Vec<String>,
}

impl Server {
    /// Serves UDP and TCP on loopback, `extra` added to the command line.
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(binary("upcase-server"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--threads", "2"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn upcase-server");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (ready_tx, ready) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = ready_tx.send(line);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let line = ready.recv_timeout(PATIENCE).unwrap_or_default();
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().expect("addr"),
            lines,
            stderr: Vec::new(),
        };
        let Some(&addr) = addresses_in(&line).first() else {
            server.drain();
            panic!(
                "no ready line ({line:?}); stderr:\n{}",
                server.stderr.join("\n")
            );
        };
        server.addr = addr;
        server
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Reads stderr until a line holds `needle`, and returns that line.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {needle:?} in stderr:\n{}",
                    self.stderr.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = wait_with_deadline(&mut self.child, PATIENCE);
                    panic!(
                        "the server ended ({status:?}) before a line with {needle:?}; stderr:\n{}",
                        self.stderr.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for the exit, then reads the rest of stderr.
    fn exit(&mut self) -> ExitStatus {
        let status =
            wait_with_deadline(&mut self.child, PATIENCE).expect("the server did not exit");
        self.drain();
        status
    }

    fn drain(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.stderr.push(line);
        }
    }

    fn lines_with(&self, needle: &str) -> Vec<&String> {
        self.stderr.iter().filter(|l| l.contains(needle)).collect()
    }

    /// The one summary line; fails unless there is exactly one.
    fn summary(&self) -> &str {
        let summaries = self.lines_with("summary:");
        assert_eq!(summaries.len(), 1, "{}", self.stderr.join("\n"));
        summaries[0]
    }

    /// A TCP connection the server has accepted and answered once, left
    /// open: a stop waits for it, up to `--stop-grace`.
    fn hold_a_connection(&self) -> TcpStream {
        let mut held = connect(self.addr);
        held.write_all(b"held").expect("send");
        assert_eq!(read_exactly(&mut held, 4), b"HELD");
        held
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A UDP client of `server` that gets each reply within [`PATIENCE`].
fn udp_client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("client");
    socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
    socket.connect(server).expect("connect");
    socket
}

fn ask(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    socket.send(request).expect("send");
    let mut buf = vec![0; 65_536];
    let n = socket.recv(&mut buf).expect("reply");
    buf.truncate(n);
    buf
}

/// The keys of a `key=N ...` line, in order.
fn keys(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('=').map(|(key, _)| key))
        .collect()
}

/// `timeout -s SIGNAL 1 upcase-server ...`, several at once: each must exit
/// 0 with one summary. `--preserve-status` makes timeout exit with the
/// server's status, rather than 124 whatever the server did.
fn under_timeout(signal: &str, runs: usize) {
    let outputs: Vec<_> = thread::scope(|s| {
        let runs: Vec<_> = (0..runs)
            .map(|_| {
                s.spawn(|| {
                    run_with_input(
                        Command::new("timeout")
                            .args(["--preserve-status", "-s", signal, "1"])
                            .arg(binary("upcase-server"))
                            .args(["--bind", "127.0.0.1", "--port", "0"]),
                        b"",
                    )
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("no panic"))
            .collect()
    });
    for out in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.starts_with("The server is ready to receive on "),
            "not ready before the signal? stdout {stdout:?}, stderr:\n{stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", out.status);
        let summaries = stderr.lines().filter(|l| l.contains("summary:")).count();
        assert_eq!(summaries, 1, "{stderr}");
        assert!(stderr.contains(&format!("{signal}: stopping")), "{stderr}");
    }
}

#[test]
fn under_timeout_sigint_always_ends_in_a_summary_and_status_0() {
    under_timeout("SIGINT", 6);
}

#[test]
fn under_timeout_sigterm_always_ends_in_a_summary_and_status_0() {
    under_timeout("SIGTERM", 6);
}

/// Two stop signals, the second while the first's stop is under way.
fn stopped_twice_by(signal: i32, name: &str) {
    let mut server = Server::start(&["--stop-grace", "60s"]);
    let client = udp_client(server.addr);
    assert_eq!(ask(&client, b"before the stop"), b"BEFORE THE STOP");
    let held = server.hold_a_connection();
    server.signal(signal);
    server.wait_for(&format!("{name}: stopping"));
    server.signal(signal);
    let under_way = server.wait_for("the stop is already under way");
    assert!(under_way.contains(name), "{under_way}");
    // The stop ends when the last connection does.
    held.shutdown(Shutdown::Both).expect("close");
    let status = server.exit();
    assert_eq!(status.code(), Some(0), "{}", server.stderr.join("\n"));
    let summary = server.summary();
    assert_eq!(summary_value(summary, "received"), Some(1), "{summary}");
    assert_eq!(summary_value(summary, "replied"), Some(1), "{summary}");
    assert_eq!(summary_value(summary, "tcp_accepted"), Some(1), "{summary}");
    assert_eq!(
        summary_value(summary, "tcp_closed_at_stop"),
        Some(0),
        "{summary}"
    );
    assert!(
        server.lines_with("error:").is_empty(),
        "{}",
        server.stderr.join("\n")
    );
}

#[test]
fn a_second_sigterm_during_the_stop_keeps_the_summary_and_status_0() {
    stopped_twice_by(libc::SIGTERM, "SIGTERM");
}

#[test]
fn a_second_sigint_during_the_stop_keeps_the_summary_and_status_0() {
    stopped_twice_by(libc::SIGINT, "SIGINT");
}

#[test]
fn a_third_stop_signal_exits_at_once_and_says_so() {
    let mut server = Server::start(&["--stop-grace", "60s"]);
    let _held = server.hold_a_connection();
    // Any stop signal counts towards the three.
    server.signal(libc::SIGTERM);
    server.wait_for("SIGTERM: stopping");
    server.signal(libc::SIGINT);
    server.wait_for("the stop is already under way");
    server.signal(libc::SIGHUP);
    let status = server.exit();
    assert_eq!(status.code(), Some(1), "{}", server.stderr.join("\n"));
    let said = server.lines_with("error:");
    assert_eq!(
        said,
        ["error: third stop signal: exiting without waiting"],
        "{}",
        server.stderr.join("\n")
    );
    assert!(
        server.lines_with("summary:").is_empty(),
        "no summary: it did not wait"
    );
}

#[test]
fn sighup_stops_cleanly_like_sigterm() {
    let mut server = Server::start(&[]);
    let client = udp_client(server.addr);
    for request in [&b"hang"[..], b"up", "straße".as_bytes()] {
        assert_eq!(ask(&client, request), upcase_proto::uppercase(request));
    }
    server.signal(libc::SIGHUP);
    let status = server.exit();
    assert_eq!(status.code(), Some(0), "{}", server.stderr.join("\n"));
    assert_eq!(server.lines_with("SIGHUP: stopping").len(), 1);
    let summary = server.summary();
    assert_eq!(summary_value(summary, "received"), Some(3), "{summary}");
    assert_eq!(summary_value(summary, "replied"), Some(3), "{summary}");
}

#[test]
fn sigusr1_logs_the_counters_so_far_and_serving_goes_on() {
    let mut server = Server::start(&[]);
    let client = udp_client(server.addr);
    let requests: [&[u8]; 3] = [b"abc", "straße".as_bytes(), b"\xffz"];
    for request in requests {
        assert_eq!(ask(&client, request), upcase_proto::uppercase(request));
    }
    let mut stream = connect(server.addr);
    assert_eq!(upcase_e2e::tcp::exchange(&mut stream, b"tcp"), b"TCP");
    // A worker publishes its counts once per batch, just after the batch's
    // replies went out, and TCP counts a write once it is done: ask until
    // the line has caught up with what the clients saw answered.
    let deadline = Instant::now() + PATIENCE;
    let so_far = loop {
        server.signal(libc::SIGUSR1);
        let line = server.wait_for("counters so far:");
        let caught_up = summary_value(&line, "replied") == Some(3)
            && summary_value(&line, "tcp_bytes_out") == Some(3);
        if caught_up {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "the counters never caught up: {line}"
        );
    };
    for (key, value) in [
        ("received", 3),
        ("replied", 3),
        ("bytes_in", 3 + 7 + 2),
        ("bytes_out", 3 + 7 + 2),
        ("invalid_utf8", 1),
        ("dropped_too_large", 0),
        ("tcp_accepted", 1),
        ("tcp_bytes_in", 3),
        ("tcp_bytes_out", 3),
    ] {
        assert_eq!(
            summary_value(&so_far, key),
            Some(value),
            "{key} in {so_far}"
        );
    }
    // Still serving, on both transports.
    assert_eq!(ask(&client, b"after the report"), b"AFTER THE REPORT");
    let mut stream = connect(server.addr);
    assert_eq!(upcase_e2e::tcp::exchange(&mut stream, b"again"), b"AGAIN");
    server.signal(libc::SIGTERM);
    let status = server.exit();
    assert_eq!(status.code(), Some(0), "{}", server.stderr.join("\n"));
    let summary = server.summary().to_string();
    assert_eq!(summary_value(&summary, "received"), Some(4), "{summary}");
    assert_eq!(
        summary_value(&summary, "tcp_accepted"),
        Some(2),
        "{summary}"
    );
    assert_eq!(
        keys(&so_far),
        keys(&summary),
        "the report is in the summary's format"
    );
}
