//! A server started for a test: `upcase-server` (or a Python peer that
//! prints the same ready line), ready before the test goes on, killed if
//! the test ends without stopping it. Everything here panics on failure,
//! which fails the test.

use std::net::SocketAddr;
use std::process::Command;

use crate::memory::Memory;
use crate::process::{Process, Stopped};
use crate::ready::{ReadyLine, reachable};
use crate::signal::Signal;
use crate::summary::{Summary, TcpCounts, UdpCounts};
use crate::{PATIENCE, binary};

/// A running server and what its ready line said.
pub struct ServerProcess {
    process: Process,
    pub ready: ReadyLine,
}

impl ServerProcess {
    /// Starts `upcase-server` with `args` and waits for its ready line.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_command(Command::new(binary("upcase-server")).args(args))
    }

    /// Starts any server that prints a ready line on stdout.
    pub fn start_command(command: &mut Command) -> ServerProcess {
        let started = Process::spawn(command).start().and_then(|mut process| {
            let ready = process.wait_ready(PATIENCE)?;
            Ok(ServerProcess { process, ready })
        });
        started.unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// The first address of the ready line.
    pub fn addr(&self) -> SocketAddr {
        self.ready.first()
    }

    /// The first address as a client on this machine reaches it.
    pub fn loopback_addr(&self) -> SocketAddr {
        reachable(self.addr())
    }

    /// The TCP address of the ready line.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.ready
            .tcp()
            .unwrap_or_else(|| panic!("no TCP address in {:?}", self.ready.line()))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its memory now; panics off Linux, where it is not measured (the
    /// tests that read it are Linux's).
    pub fn memory(&self) -> Memory {
        match self.process.memory() {
            Ok(Some(memory)) => memory,
            Ok(None) => panic!("memory is measured on Linux only (from /proc)"),
            Err(err) => panic!("{err:#}"),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Sends `signal` and goes on: the server may stop, or report.
    pub fn signal(&mut self, signal: Signal) {
        self.process
            .signal(signal)
            .unwrap_or_else(|err| panic!("{err:#}"));
    }

    /// Waits until the server has logged `nth` (from 1) lines that contain
    /// `needle`, and returns the last of them.
    pub fn wait_for_log(&mut self, needle: &str, nth: usize) -> String {
        self.process
            .wait_for_stderr_line(PATIENCE, needle, nth)
            .unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// Everything the server has logged so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Waits for an exit already asked for (by a signal sent before).
    pub fn exit(mut self) -> Stopped {
        let started = std::time::Instant::now();
        let status = self
            .process
            .wait_within(PATIENCE)
            .unwrap_or_else(|err| panic!("{err:#}"));
        Stopped {
            status,
            stderr: self.process.stderr(),
            elapsed: started.elapsed(),
        }
    }

    /// Sends `signal` and waits for the exit.
    pub fn stop_with(self, signal: Signal) -> Stopped {
        self.process
            .stop_with(signal, PATIENCE)
            .unwrap_or_else(|err| panic!("{err:#}"))
    }
}

impl Stopped {
    /// The server's summary line; panics, with the stderr, if it has none.
    pub fn summary(&self) -> Summary {
        Summary::from_log(&self.stderr).unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// The datagram counters of the summary.
    pub fn udp(&self) -> UdpCounts {
        self.summary().udp
    }

    /// The connection counters of the summary; panics if it has none.
    pub fn tcp(&self) -> TcpCounts {
        self.summary()
            .tcp
            .unwrap_or_else(|| panic!("no TCP counters in the summary:\n{}", self.stderr))
    }
}
