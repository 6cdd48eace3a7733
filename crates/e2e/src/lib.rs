//! Support for end-to-end tests: start the real binaries on loopback with
//! ephemeral ports, wait for their readiness line (never a sleep), stop them
//! with a signal and read what they logged.
//!
//! The binaries are found next to the test executable (`target/<profile>/`),
//! where `cargo test --workspace` builds every binary of the workspace before
//! any test runs.

pub mod fake_server;
pub mod tcp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a process to become ready or to exit before it
/// fails; generous, because CI machines are small and busy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Path of a workspace binary (`upcase-server`, `upcase-client`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (or `cargo xtask ci`)",
        path.display()
    );
    path
}

/// Path of a file in this crate (the Python peers live in `python/`).
pub fn crate_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A running `upcase-server`, stopped (SIGKILL) when dropped if the test did
/// not stop it, so no test leaves a process behind.
pub struct ServerProcess {
    child: Child,
    /// The addresses from the ready line: every `ADDR` it names, in order.
    pub addrs: Vec<SocketAddr>,
    /// The whole ready line, as printed.
    pub ready_line: String,
    stderr: Option<thread::JoinHandle<String>>,
}

impl ServerProcess {
    /// Starts `upcase-server` with `args` and waits for its ready line.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_command(Command::new(binary("upcase-server")).args(args))
    }

    /// Starts any server command whose stdout's first line is the ready line.
    pub fn start_command(command: &mut Command) -> ServerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().map(drain_in_background);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = lines.read_line(&mut first);
            let _ = tx.send(first);
            // Keep reading so the server never blocks on a full stdout pipe.
            let _ = std::io::copy(&mut lines, &mut std::io::sink());
        });
        let mut server = ServerProcess {
            child,
            addrs: Vec::new(),
            ready_line: String::new(),
            stderr,
        };
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(line) if !line.is_empty() => line,
            _ => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                let stderr = server
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!("server printed no ready line; stderr:\n{stderr}");
            }
        };
        server.ready_line = line.trim_end().to_string();
        server.addrs = addresses_in(&server.ready_line);
        assert!(
            !server.addrs.is_empty(),
            "no address in ready line {:?}",
            server.ready_line
        );
        server
    }

    /// The first address of the ready line.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The server's address as a client on this machine reaches it: an
    /// unspecified bind address (`[::]`, `0.0.0.0`) becomes loopback.
    pub fn loopback_addr(&self) -> SocketAddr {
        let mut addr = self.addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) and waits for the exit; returns
    /// the status, everything the server wrote to stderr, and how long it took.
    pub fn stop_with(mut self, signal: i32) -> Stopped {
        let start = Instant::now();
        // SAFETY: kill(2) with the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill failed");
        let status = wait_with_deadline(&mut self.child, PATIENCE)
            .expect("server did not exit after the signal");
        let elapsed = start.elapsed();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Stopped {
            status,
            stderr,
            elapsed,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server after its exit.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Stopped {
    /// The value of `key=N` in the server's `summary:` log line.
    pub fn counter(&self, key: &str) -> u64 {
        let line = self
            .stderr
            .lines()
            .find(|l| l.contains("summary:"))
            .unwrap_or_else(|| panic!("no summary line in stderr:\n{}", self.stderr));
        summary_value(line, key).unwrap_or_else(|| panic!("no {key}= in summary line {line:?}"))
    }
}

/// `key=N` from a `summary:` line.
pub fn summary_value(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim_end_matches(',').parse().ok())
}

/// Every socket address in a line, in order (`127.0.0.1:5`, `[::1]:5`).
pub fn addresses_in(line: &str) -> Vec<SocketAddr> {
    line.split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|word| word.parse().ok())
        .collect()
}

fn drain_in_background(mut stderr: ChildStderr) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for a child to exit, polling, for at most `limit`.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command to completion with `stdin` as its input, killing it if it
/// has not finished within [`PATIENCE`].
pub fn run_with_input(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.stdout.take().map(|mut s| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let err = child.stderr.take().map(|mut s| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let status = wait_with_deadline(&mut child, PATIENCE).expect("command did not finish in time");
    let _ = writer.join();
    let stdout = out
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = err
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Fails the test, with `who`'s stderr, unless the run succeeded.
pub fn assert_success(out: &Output, who: &str) {
    assert!(
        out.status.success(),
        "{who} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `upcase-client` with `args`, run to completion with `stdin`.
pub fn client(args: &[&str], stdin: &[u8]) -> Output {
    run_with_input(Command::new(binary("upcase-client")).args(args), stdin)
}

/// The resident memory (VmRSS) of process `pid`, in KiB.
pub fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Whether `python3` can be run; tests that need it fail with this message
/// rather than skip, because CI has it.
pub fn python3() -> Command {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "python3 is needed for the interoperation tests");
    Command::new("python3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_yield_their_addresses() {
        assert_eq!(
            addresses_in("The server is ready to receive on [::]:12000"),
            vec!["[::]:12000".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            addresses_in(
                "The server is ready to receive on udp 127.0.0.1:4000, tcp 127.0.0.1:4000"
            ),
            vec!["127.0.0.1:4000".parse::<SocketAddr>().expect("addr"); 2]
        );
    }

    #[test]
    fn summary_values_are_read_by_key() {
        let line = "INFO summary: received=10 replied=9 bytes_in=100 dropped_too_large=1";
        assert_eq!(summary_value(line, "received"), Some(10));
        assert_eq!(summary_value(line, "dropped_too_large"), Some(1));
        assert_eq!(summary_value(line, "missing"), None);
    }
}
