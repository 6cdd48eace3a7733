//! `cargo xtask demo`: the whole round trip on this machine. Builds the
//! release binaries, starts the server on an ephemeral loopback port (UDP
//! and TCP on the same port), sends it the same lines with the client over
//! each transport, shows the replies side by side and checks every one
//! against the expected uppercase, and stops the server with SIGINT
//! (Ctrl-Break on Windows, where the kit sends that for SIGINT) to show
//! its summary.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use upcase_e2e::{Process, ReadyLine, Signal, Summary};

use crate::workspace;

/// How the demo stops the server, as this system calls it: the kit sends
/// Ctrl-Break for SIGINT on Windows.
const STOP: &str = if cfg!(windows) {
    "Ctrl-Break"
} else {
    "SIGINT"
};

/// One datagram per line over UDP, one line of the stream over TCP: plain ASCII, a character whose uppercase is
/// longer (ß -> SS), a script without case, an emoji next to a ligature
/// (ﬁ -> FI), bytes that are not UTF-8 (returned unchanged), and nothing.
const LINES: [&[u8]; 6] = [
    b"hello, world",
    "stra\u{df}e".as_bytes(),
    "안녕하세요, 네트워크!".as_bytes(),
    "rust \u{1f980} is \u{fb01}ne".as_bytes(),
    b"caf\xe9 \xff ok",
    b"",
];

/// Sent as MESSAGE arguments, which the client joins into one datagram (or
/// one line over TCP).
const WORDS: [&str; 5] = ["hello", "from", "the", "command", "line"];

/// How long any one step may take before the demo gives up; generous,
/// because a busy two-core machine can be slow to start a process.
const PATIENCE: Duration = Duration::from_secs(15);

pub(crate) fn run() -> anyhow::Result<()> {
    let target = workspace::root().join("target");
    heading("Build: cargo build --release -p upcase-server -p upcase-client");
    build(&target)?;
    let bin = target.join("release");
    // What every process read and wrote, for a look after a failure.
    let logs = target.join("demo");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;

    let server_args = ["--bind", "127.0.0.1", "--port", "0"];
    heading(&format!(
        "Server, UDP and TCP on one port: upcase-server {}",
        server_args.join(" ")
    ));
    let server = Server::start(&bin.join("upcase-server"), &server_args, &logs)?;
    println!("   {}", server.ready.line());

    let port = server.addr.port().to_string();
    let client = bin.join("upcase-client");
    let udp = ["--server", "127.0.0.1", "--port", port.as_str()];
    let tcp = ["--tcp", "--server", "127.0.0.1", "--port", port.as_str()];
    let mut mismatches = 0;

    heading(&format!(
        "Client, each line of stdin: upcase-client {} (one datagram per line) | upcase-client {} (one connection, a stream of lines)",
        udp.join(" "),
        tcp.join(" ")
    ));
    let mut input = Vec::new();
    for line in LINES {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    let over_udp = run_client(&client, &udp, &input, "client-udp-lines", &logs)?;
    let over_tcp = run_client(&client, &tcp, &input, "client-tcp-lines", &logs)?;
    mismatches += show_exchanges(&LINES, &over_udp, &over_tcp);

    heading(&format!(
        "Client, words as arguments: upcase-client [--tcp] {} {}",
        udp.join(" "),
        WORDS.join(" ")
    ));
    let udp_words: Vec<&str> = udp.iter().chain(WORDS.iter()).copied().collect();
    let tcp_words: Vec<&str> = tcp.iter().chain(WORDS.iter()).copied().collect();
    let over_udp = run_client(&client, &udp_words, b"", "client-udp-words", &logs)?;
    let over_tcp = run_client(&client, &tcp_words, b"", "client-tcp-words", &logs)?;
    let message = WORDS.join(" ");
    mismatches += show_exchanges(&[message.as_bytes()], &over_udp, &over_tcp);

    heading(&format!("Stop: {STOP} to the server"));
    let summary = server.interrupt()?;
    println!("   {summary}");

    let sent = 2 * (LINES.len() + 1);
    if mismatches > 0 {
        bail!("{mismatches} of {sent} replies were not the expected uppercase");
    }
    heading(&format!(
        "Demo OK: {sent} replies, half over UDP and half over TCP, each the uppercase of what was sent"
    ));
    Ok(())
}

fn heading(title: &str) {
    println!("== {title}");
}

/// Builds into the workspace's own `target/`, whatever CARGO_TARGET_DIR says,
/// so the binaries are where the demo (and a reader of the README) looks.
fn build(target: &Path) -> anyhow::Result<()> {
    let status = workspace::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "upcase-server",
            "-p",
            "upcase-client",
        ])
        .arg("--target-dir")
        .arg(target)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// Prints each message beside its reply over UDP and over TCP, and counts
/// the replies that are not the message's uppercase (a missing or extra
/// reply counts too).
fn show_exchanges(sent: &[&[u8]], over_udp: &[Vec<u8>], over_tcp: &[Vec<u8>]) -> usize {
    let mut mismatches = 0;
    let mut rows = Vec::with_capacity(sent.len());
    for (i, message) in sent.iter().enumerate() {
        let expected = upcase_proto::uppercase(message);
        let mut row = vec![shown(message)];
        let mut wrong = false;
        for (transport, replies) in [("udp", over_udp), ("tcp", over_tcp)] {
            row.push(match replies.get(i) {
                Some(reply) if *reply == expected => format!("{transport} {}", shown(reply)),
                Some(reply) => {
                    wrong = true;
                    format!("{transport} {} MISMATCH", shown(reply))
                }
                None => {
                    wrong = true;
                    format!("{transport} (no reply) MISMATCH")
                }
            });
        }
        mismatches += row.iter().filter(|c| c.ends_with("MISMATCH")).count();
        if wrong {
            row.push(format!("expected {}", shown(&expected)));
        }
        rows.push(row);
    }
    let width = |column: usize| {
        rows.iter()
            .filter_map(|row| row.get(column))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1)];
    for row in &rows {
        let mut line = String::from("  ");
        for (column, cell) in row.iter().enumerate() {
            let pad = widths
                .get(column)
                .map_or(0, |w| w.saturating_sub(cell.chars().count()));
            let separator = match column {
                0 => " ",
                1 => " -> ",
                _ => "   ",
            };
            let _ = write!(line, "{separator}{cell}{:pad$}", "");
        }
        println!("{}", line.trim_end());
    }
    for (transport, replies) in [("udp", over_udp), ("tcp", over_tcp)] {
        for extra in replies.iter().skip(sent.len()) {
            mismatches += 1;
            println!(
                "   (nothing sent) -> {transport} {}   MISMATCH",
                shown(extra)
            );
        }
    }
    mismatches
}

/// Bytes for a terminal: quoted, UTF-8 as text with control characters
/// escaped, and every byte that is not UTF-8 as `\xNN`.
fn shown(bytes: &[u8]) -> String {
    let mut text = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        text.extend(chunk.valid().escape_debug());
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text.push('"');
    text
}

/// The client's output, one reply per line (each reply ends in `\n`; a last
/// one without it is still a reply).
fn reply_lines(stdout: &[u8]) -> Vec<Vec<u8>> {
    if stdout.is_empty() {
        return Vec::new();
    }
    let body = stdout.strip_suffix(b"\n").unwrap_or(stdout);
    body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Runs the client to completion with `input` on its stdin and returns its
/// replies; any failure of the client fails the demo, with its stderr.
fn run_client(
    program: &Path,
    args: &[&str],
    input: &[u8],
    label: &str,
    logs: &Path,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let out = Process::spawn(Command::new(program).args(args))
        .label(label)
        .logs_in(logs)
        .input(input)
        .start()?
        .finish(PATIENCE)
        .context("the client")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("the client failed ({}): {}", out.status, stderr.trim_end());
    }
    for line in stderr.lines() {
        println!("   client: {line}");
    }
    Ok(reply_lines(&out.stdout))
}

/// The address of a ready line of the form `... on udp A, tcp A`: both
/// transports on the same address and port, or `None`.
fn shared_port(ready: &ReadyLine) -> Option<SocketAddr> {
    ready.udp().filter(|udp| ready.tcp() == Some(*udp))
}

/// The running server and its ready line.
struct Server {
    process: Process,
    ready: ReadyLine,
    addr: SocketAddr,
}

impl Server {
    fn start(program: &Path, args: &[&str], logs: &Path) -> anyhow::Result<Server> {
        let mut process = Process::spawn(Command::new(program).args(args))
            .label("server")
            .logs_in(logs)
            .start()?;
        let ready = process.wait_ready(PATIENCE)?;
        let addr = shared_port(&ready).with_context(|| {
            format!(
                "the server serves UDP and TCP on different ports: {:?}",
                ready.line()
            )
        })?;
        Ok(Server {
            process,
            ready,
            addr,
        })
    }

    /// Sends SIGINT, waits for a clean exit and returns the summary line
    /// the server logged, from `summary:` on.
    fn interrupt(self) -> anyhow::Result<String> {
        let stopped = self
            .process
            .stop_with(Signal::SIGINT, PATIENCE)
            .context("the server")?;
        let log = stopped.stderr.trim_end();
        if !stopped.status.success() {
            bail!(
                "the server exited with {} after {STOP}; its stderr:\n{log}",
                stopped.status
            );
        }
        let line = Summary::line_in(log)
            .with_context(|| format!("the server logged no summary line; its stderr:\n{log}"))?;
        // Shown as logged, once it is known to read as a summary.
        Summary::parse(line)?;
        Ok(line.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_readably() {
        assert_eq!(shown(b"caf\xe9 \xff ok"), r#""caf\xe9 \xff ok""#);
        assert_eq!(shown("안녕 🦀".as_bytes()), "\"안녕 🦀\"");
        assert_eq!(shown(b""), "\"\"");
        assert_eq!(shown(b"a\tb\"c"), r#""a\tb\"c""#);
    }

    #[test]
    fn replies_are_split_into_lines() {
        assert_eq!(reply_lines(b""), Vec::<Vec<u8>>::new());
        assert_eq!(reply_lines(b"A\n\n"), vec![b"A".to_vec(), Vec::new()]);
        assert_eq!(reply_lines(b"A\nB"), vec![b"A".to_vec(), b"B".to_vec()]);
    }

    #[test]
    fn a_mismatch_is_counted_on_either_side() {
        let right = vec![b"HELLO".to_vec(), b"WORLD".to_vec()];
        let wrong = vec![b"HELLO".to_vec(), b"world".to_vec()];
        let sent: [&[u8]; 2] = [b"hello", b"world"];
        assert_eq!(show_exchanges(&sent, &right, &right), 0);
        assert_eq!(show_exchanges(&sent, &wrong, &right), 1);
        assert_eq!(show_exchanges(&sent, &right, &wrong), 1);
        assert_eq!(show_exchanges(&sent, &right[..1], &right), 1, "missing");
        assert_eq!(show_exchanges(&sent[..1], &right, &right), 2, "extra");
    }

    #[test]
    fn the_ready_line_gives_one_port_for_both_transports() {
        let port = |line: &str| shared_port(&ReadyLine::parse(line)?).map(|a| a.port());
        assert_eq!(
            port("The server is ready to receive on udp 127.0.0.1:5, tcp 127.0.0.1:5"),
            Some(5)
        );
        assert_eq!(
            port("The server is ready to receive on udp 127.0.0.1:5, tcp 127.0.0.1:6"),
            None
        );
        assert_eq!(port("The server is ready to receive on 127.0.0.1:5"), None);
    }
}
