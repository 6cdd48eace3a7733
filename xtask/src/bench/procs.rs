//! The benchmark's side of its child processes ([`crate::process`] starts
//! and guards them): each side pinned to a core, and servers probed until
//! they answer.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::Guard;

/// How long a server may take to answer its first datagram (Python starts
/// slowly on a busy machine).
pub const STARTUP_LIMIT: Duration = Duration::from_secs(15);

/// Which core each side runs on, when `taskset` can pin them.
#[derive(Clone, Debug)]
pub struct Pinning {
    taskset: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug)]
pub enum Role {
    Server,
    Load,
}

impl Pinning {
    /// Pins the server to core 0 and the load to core 1 if both cores can be
    /// used; otherwise runs unpinned and says why in `notes`.
    pub fn detect(notes: &mut Vec<String>) -> Pinning {
        let works = Command::new("taskset")
            .args(["-c", "1", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success());
        match works {
            Ok(true) => Pinning {
                taskset: Some(PathBuf::from("taskset")),
            },
            Ok(false) => {
                notes
                    .push("taskset cannot pin to core 1 here: server and load run unpinned".into());
                Pinning { taskset: None }
            }
            Err(_) => {
                notes.push("taskset (util-linux) not found: server and load run unpinned".into());
                Pinning { taskset: None }
            }
        }
    }

    pub fn is_pinned(&self) -> bool {
        self.taskset.is_some()
    }

    pub fn command(&self, role: Role, program: &Path) -> Command {
        match &self.taskset {
            Some(taskset) => {
                let mut command = Command::new(taskset);
                let core = match role {
                    Role::Server => "0",
                    Role::Load => "1",
                };
                // taskset execs the program, so the pid stays the program's.
                command.args(["-c", core]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

/// A free UDP port on loopback. Another process could take it before the
/// server binds it; the readiness probe then fails with a clear message.
pub fn free_port() -> anyhow::Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP socket on loopback")?;
    Ok(socket.local_addr()?.port())
}

/// Sends a probe datagram until the server answers it with its uppercase:
/// a printed line says a process started, only an answer says it serves.
pub fn wait_answering(server: &mut Guard, addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    const PROBE: &[u8] = b"upcase bench probe";
    let local = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).context("cannot bind the probe socket")?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64];
    loop {
        if let Some(status) = server.exited() {
            bail!(
                "{} exited ({status}) before answering on {addr}; stderr: {}",
                server.label(),
                server.stderr_tail()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer a probe datagram on {addr} within {limit:?}; stderr: {}",
                server.label(),
                server.stderr_tail()
            );
        }
        // Errors (e.g. a refused port before the bind) just mean: not yet.
        let _ = socket.send_to(PROBE, addr);
        let answer_by = Instant::now() + Duration::from_millis(100);
        while Instant::now() < answer_by {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == addr && buf[..n] == PROBE.to_ascii_uppercase() => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_fails_clearly_when_the_server_is_gone() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut guard = Guard::spawn(Command::new("true"), "gone", &dir).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let err = wait_answering(&mut guard, addr, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("gone exited"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
