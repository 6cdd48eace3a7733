//! Sockets held outside the server, as systemd holds a socket unit's: a UDP
//! socket and a TCP listener on one port, passed to each `upcase-server`
//! started from them by the `sd_listen_fds` protocol (descriptors 3 and 4,
//! `LISTEN_FDS=2`, `LISTEN_PID` the child's own pid, `LISTEN_FDNAMES`).
//! The sockets outlive every server: what arrives between one server's
//! stop and the next one's start waits in their kernel queues, which is
//! what a restart without loss rests on.
//!
//! `LISTEN_PID` must be the server's pid, known only once it runs: the
//! server is started through `sh -c 'LISTEN_PID=$$ exec ...'`, whose `exec`
//! keeps the pid.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::binary;
use crate::server::ServerProcess;

/// The first descriptor of the protocol.
const FIRST_FD: RawFd = 3;

/// Where the copies are parked in the child before they move to 3 and 4,
/// above any descriptor a child has at that point.
const PARKING: RawFd = 100;

/// A UDP socket and, optionally, a TCP listener, held by the test.
#[derive(Debug)]
pub struct HeldSockets {
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
}

impl HeldSockets {
    /// A UDP socket and a TCP listener on one system-chosen port of `ip`
    /// (`127.0.0.1`, `::1`); panics (for tests) if they cannot be bound.
    pub fn both(ip: &str) -> HeldSockets {
        for _ in 0..8 {
            let udp = UdpSocket::bind((ip, 0)).expect("bind the held UDP socket");
            let addr = udp.local_addr().expect("its address");
            // The same port for TCP, as the server itself binds; another
            // program may hold it: try another.
            if let Ok(tcp) = TcpListener::bind(addr) {
                return HeldSockets::from_sockets(Some(udp), Some(tcp));
            }
        }
        panic!("no port of {ip} was free for both UDP and TCP");
    }

    /// Only a UDP socket on a system-chosen port of `ip`.
    pub fn udp(ip: &str) -> HeldSockets {
        let udp = UdpSocket::bind((ip, 0)).expect("bind the held UDP socket");
        HeldSockets::from_sockets(Some(udp), None)
    }

    /// Sockets made elsewhere (in another network namespace, say).
    pub fn from_sockets(udp: Option<UdpSocket>, tcp: Option<TcpListener>) -> HeldSockets {
        assert!(udp.is_some() || tcp.is_some(), "nothing to hold");
        HeldSockets { udp, tcp }
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp
            .as_ref()
            .map(|s| s.local_addr().expect("UDP address"))
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
            .as_ref()
            .map(|l| l.local_addr().expect("TCP address"))
    }

    /// The descriptors to pass, in order, and their names.
    fn passed(&self) -> (Vec<RawFd>, Vec<&'static str>) {
        let udp = self.udp.as_ref().map(|s| (s.as_raw_fd(), "udp"));
        let tcp = self.tcp.as_ref().map(|l| (l.as_raw_fd(), "tcp"));
        udp.into_iter().chain(tcp).unzip()
    }

    /// `program args...`, to be started with these sockets by the
    /// protocol. Any wrapper that keeps the pid (`exec`) may come before
    /// (`ip netns exec NS` does).
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let (fds, names) = self.passed();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
            .arg(program)
            .args(args)
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID");
        pass_descriptors(&mut command, fds);
        command
    }

    /// Starts `upcase-server args...` on these sockets and waits for its
    /// ready line.
    pub fn start_server(&self, args: &[&str]) -> ServerProcess {
        ServerProcess::start_command(&mut self.command(&binary("upcase-server"), args))
    }
}

/// Has the child find `fds` at 3, 4, ... and without close-on-exec, so its
/// program inherits them there.
#[allow(unsafe_code)] // The kit's second unsafe block: see lib.rs.
fn pass_descriptors(command: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it makes fcntl(2) and
    // dup2(2) system calls on descriptor numbers and allocates nothing
    // (`fds` was allocated before the fork and is only read). The held
    // descriptors are open in the parent, so they are open in the child.
    unsafe {
        command.pre_exec(move || {
            // Parked first (close-on-exec copies high up), so moving one to
            // 3 + i never overwrites another still to be moved.
            let mut parked = [0; 8];
            if fds.len() > parked.len() {
                return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
            }
            for (slot, &fd) in parked.iter_mut().zip(&fds) {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, PARKING);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &from) in parked.iter().take(fds.len()).enumerate() {
                // dup2 leaves close-on-exec off on the new descriptor.
                if libc::dup2(from, FIRST_FD + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
