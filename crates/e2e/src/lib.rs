//! The test kit: what every end-to-end test and every xtask task uses to run
//! upcase on loopback, written once.
//!
//! - [`Process`]: a child that cannot outlive what started it, its output
//!   read as it comes, stopped with a signal, killed on drop;
//!   [`ServerProcess`] is `upcase-server` (or a Python peer) started for a
//!   test and ready.
//! - [`ReadyLine`] and [`Summary`]: the server's ready line and its
//!   `summary:` line, read into types.
//! - [`Memory`]: VmRSS and VmHWM from `/proc/PID/status`, and
//!   [`cpu_time`], a process's CPU time (Linux; not measured elsewhere);
//!   [`Signal`]: what a test sends a child.
//! - [`fake_server`]: UDP and TCP servers in a thread that answer as a test
//!   says; [`tcp`] and [`udp`]: bounded blocking clients.
//! - [`HeldSockets`]: sockets held outside the server and passed to each
//!   one started from them (socket activation), for restarts that lose
//!   nothing (Unix); [`RetryingLoad`]: a paced load of retrying clients to
//!   show it.
//! - [`Scrape`]: the metrics endpoint read as Prometheus does;
//!   [`NotifySocket`]: systemd's side of `sd_notify` (Unix).
//!
//! Functions that return `anyhow::Result` are for xtask, where a failure is
//! an error to report; those that panic are for tests, where a panic is the
//! failure, and say so. Binaries are found next to the test executable
//! (`target/<profile>/`), where `cargo build --workspace --bins` puts them.
//!
//! `unsafe` here is two `pre_exec` closures: one (in `process.rs`) ties
//! each child's life to its parent's, one (in `held.rs`) puts the held
//! sockets at descriptors 3 and 4 of a child; signals go through `nix`'s
//! safe `kill`, and on Windows a stop is one `GenerateConsoleCtrlEvent`
//! (Ctrl-Break, in `process.rs`).
//!
//! The kit compiles for every system upcase is checked for (`cargo xtask
//! cross`), so that the tests type-check there too; what is Unix's (held
//! sockets, the notify socket) exists on Unix only.

#![deny(unsafe_code)]

pub mod apt;
mod capture;
#[cfg(target_os = "linux")]
pub mod cluster;
#[cfg(target_os = "linux")]
mod cluster_report;
pub mod fake_server;
#[cfg(unix)]
mod held;
mod memory;
// Network namespaces, nftables and nginx: Linux's (issue 14's cluster).
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod network;
#[cfg(target_os = "linux")]
pub mod nft;
#[cfg(target_os = "linux")]
pub mod nginx;
#[cfg(unix)]
mod notify;
mod probe;
mod process;
mod ready;
mod retrying;
mod scrape;
mod server;
mod signal;
mod summary;
pub mod tcp;
pub mod udp;
pub mod workspace;

use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(unix)]
pub use held::HeldSockets;
pub use memory::{Memory, cpu_time};
#[cfg(unix)]
pub use notify::NotifySocket;
pub use process::{Process, Spawn, Stopped};
pub use ready::{ReadyLine, Transport, reachable};
pub use retrying::{LoadOutcome, RetryingLoad, RunningLoad};
pub use scrape::{HttpResponse, Scrape, http_get, http_request};
pub use server::ServerProcess;
pub use signal::Signal;
pub use summary::{ProxyCounts, Summary, TcpCounts, UdpCounts};

/// How long a test waits for a process to become ready or to exit before it
/// fails; generous, because CI machines are small and busy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Path of a workspace binary (`upcase-server`, `upcase-client`). Panics
/// (for tests) if it is not built.
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
        "{} is not built: run `cargo build --workspace --bins` before the tests (`cargo xtask ci` does)",
        path.display()
    );
    path
}

/// Path of a file in this crate (the Python peers live in `python/`).
pub fn crate_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `python3`, asserted to run: tests that need it fail with this message
/// rather than skip, because CI has it.
pub fn python3() -> Command {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "python3 is needed for the interoperation tests");
    Command::new("python3")
}

/// `program`, asserted to be installed: a test that needs a system tool
/// fails with the Debian package to install rather than skip, because CI
/// installs it.
pub fn tool(program: &str, package: &str) -> Command {
    find_tool(program, package).unwrap_or_else(|err| panic!("{err}"))
}

/// [`tool`] for xtask: the error names the Debian package to install.
pub fn find_tool(program: &str, package: &str) -> anyhow::Result<Command> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        anyhow::bail!(
            "{program} is needed for this test: install the Debian package {package} (apt-get install {package})"
        );
    }
    Ok(Command::new(program))
}

/// Runs `command` to completion with `stdin` as its input and returns what
/// it did; panics (for tests) if it cannot start or has not finished within
/// [`PATIENCE`] (it is killed then).
pub fn run_with_input(command: &mut Command, stdin: &[u8]) -> Output {
    Process::spawn(command)
        .input(stdin)
        .start()
        .and_then(|process| process.finish(PATIENCE))
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// `upcase-client` with `args`, run to completion with `stdin`.
pub fn client(args: &[&str], stdin: &[u8]) -> Output {
    run_with_input(Command::new(binary("upcase-client")).args(args), stdin)
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

/// Polls `condition` until it holds; panics (for tests) naming `what` after
/// [`PATIENCE`]. For state no line or socket announces, such as a counter
/// read from another thread.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    try_wait_until(what, condition).unwrap_or_else(|err| panic!("{err}"));
}

/// [`wait_until`] for xtask: an error rather than a panic.
pub fn try_wait_until(what: &str, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        if Instant::now() >= deadline {
            anyhow::bail!("timed out waiting until {what}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A UDP port on loopback that nothing is bound to just now: where a
/// sender is refused, or where to start a server that cannot pick its own.
/// Another process could take it in between.
pub fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A TCP port on loopback that nothing listens on just now.
pub fn free_tcp_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// `len` bytes of lowercase ASCII, different for each `tag`: a request
/// whose reply is easy to check and tells which request it answers.
pub fn lowercase_text(tag: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + ((i + tag) % 26) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_text_differs_by_tag() {
        assert_eq!(lowercase_text(0, 3), b"abc");
        assert_eq!(lowercase_text(25, 3), b"zab");
        assert!(lowercase_text(7, 0).is_empty());
    }
}
