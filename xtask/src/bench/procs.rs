//! Child processes that cannot outlive the benchmark: started with their
//! output in log files, pinned to a core, killed when dropped (and when
//! xtask itself dies), and servers probed until they answer.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a server may take to answer its first datagram (Python starts
/// slowly on a busy machine).
pub const STARTUP_LIMIT: Duration = Duration::from_secs(15);
/// How long a stopped process may take to exit before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(3);
/// Granularity of every bounded wait here.
const POLL: Duration = Duration::from_millis(10);

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

/// A running child; killed and reaped when dropped unless it already ended.
pub struct Guard {
    child: Child,
    label: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Guard {
    /// Starts `command` with stdout and stderr in `<logs>/<label>.out|.err`.
    pub fn spawn(mut command: Command, label: &str, logs: &Path) -> anyhow::Result<Guard> {
        let stdout_path = logs.join(format!("{label}.out"));
        let stderr_path = logs.join(format!("{label}.err"));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("cannot create {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes one async-signal-safe system call.
        unsafe {
            command.pre_exec(|| {
                // If xtask is killed (a CI timeout, ^C), its servers die too.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {label} ({command:?})"))?;
        Ok(Guard {
            child,
            label: label.to_string(),
            stdout_path,
            stderr_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The last lines of stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() {
            "(nothing on stderr)".into()
        } else {
            tail
        }
    }

    /// The exit status if the child has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the child to end by itself within `limit`, else kills it
    /// and fails.
    pub fn wait_within(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} did not finish within {limit:?}: killed", self.label);
            }
            thread::sleep(POLL);
        }
    }

    /// Asks the child to stop (SIGTERM), then kills it if it lingers.
    pub fn stop(mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill() has no memory effects; the pid is our own
            // unreaped child, so it cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_LIMIT;
        while self.exited().is_none() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        // Drop kills it if SIGTERM was not enough.
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

/// A free UDP port on loopback. Another process could take it before the
/// server binds it; the readiness probe then fails with a clear message.
pub fn free_port() -> anyhow::Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP socket on loopback")?;
    Ok(socket.local_addr()?.port())
}

/// Waits for `upcase-server`'s ready line and returns the address it names
/// (an unspecified address becomes loopback).
pub fn wait_ready_line(server: &mut Guard, limit: Duration) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(addr) = server.stdout().lines().find_map(ready_line_address) {
            return Ok(addr);
        }
        if let Some(status) = server.exited() {
            bail!(
                "{} exited ({status}) before printing its ready line; stderr: {}",
                server.label(),
                server.stderr_tail()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} printed no ready line within {limit:?}; stderr: {}",
                server.label(),
                server.stderr_tail()
            );
        }
        thread::sleep(POLL);
    }
}

/// The first address in `The server is ready to receive on ADDR...`.
pub fn ready_line_address(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("The server is ready to receive on ")?;
    let mut addr = rest
        .split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|word| word.parse::<SocketAddr>().ok())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(addr)
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

/// Peak and current resident memory of a process, from /proc/PID/status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
    pub threads: u64,
}

pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status(&status).with_context(|| format!("{path} has no VmHWM/VmRSS/Threads"))
}

pub fn parse_status(status: &str) -> Option<Memory> {
    let field = |key: &str| -> Option<u64> {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?;
            value.split_whitespace().next()?.parse().ok()
        })
    };
    Some(Memory {
        vm_hwm_kib: field("VmHWM")?,
        vm_rss_kib: field("VmRSS")?,
        threads: field("Threads")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_the_first_address() {
        assert_eq!(
            ready_line_address("The server is ready to receive on 127.0.0.1:4242"),
            Some("127.0.0.1:4242".parse().unwrap())
        );
        assert_eq!(
            ready_line_address("The server is ready to receive on 0.0.0.0:5, [::]:5"),
            Some("127.0.0.1:5".parse().unwrap())
        );
        assert_eq!(ready_line_address("The server is ready to receive"), None);
    }

    #[test]
    fn proc_status_is_read() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    3000 kB\n\
                      Threads:\t2\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                vm_hwm_kib: 4096,
                vm_rss_kib: 3000,
                threads: 2
            })
        );
        assert_eq!(parse_status("VmHWM: 1 kB\n"), None);
    }

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
