//! Child processes that cannot outlive the task that started them (demo,
//! soak, bench): their stdin, stdout and stderr are files in a logs
//! directory, so no pipe can fill up and block them and what they said is
//! still there after a failure; they are killed when dropped, and when
//! xtask itself dies.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a stopped process may take to exit before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(3);
/// Granularity of every bounded wait here.
const POLL: Duration = Duration::from_millis(10);

/// A running child; killed and reaped when dropped unless it already ended.
pub struct Guard {
    child: Child,
    label: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Guard {
    /// Starts `command` with no input and stdout and stderr in
    /// `<logs>/<label>.out|.err`.
    pub fn spawn(command: Command, label: &str, logs: &Path) -> anyhow::Result<Guard> {
        Self::spawn_reading(command, label, logs, Stdio::null())
    }

    /// Like [`Guard::spawn`], with `input` on stdin (kept as
    /// `<logs>/<label>.in`): a file, so a child that stops reading cannot
    /// block the task.
    pub fn spawn_with_input(
        command: Command,
        label: &str,
        logs: &Path,
        input: &[u8],
    ) -> anyhow::Result<Guard> {
        let stdin_path = logs.join(format!("{label}.in"));
        std::fs::write(&stdin_path, input)
            .with_context(|| format!("cannot write {}", stdin_path.display()))?;
        let stdin = File::open(&stdin_path)
            .with_context(|| format!("cannot open {}", stdin_path.display()))?;
        Self::spawn_reading(command, label, logs, stdin.into())
    }

    fn spawn_reading(
        mut command: Command,
        label: &str,
        logs: &Path,
        stdin: Stdio,
    ) -> anyhow::Result<Guard> {
        let stdout_path = logs.join(format!("{label}.out"));
        let stderr_path = logs.join(format!("{label}.err"));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("cannot create {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes one async-signal-safe system call.
        unsafe {
            command.pre_exec(|| {
                // If xtask is killed (a CI timeout, ^C), its children die too.
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

    /// Everything on stdout so far, as it was written.
    pub fn stdout_bytes(&self) -> anyhow::Result<Vec<u8>> {
        std::fs::read(&self.stdout_path)
            .with_context(|| format!("cannot read {}", self.stdout_path.display()))
    }

    /// Everything on stdout so far, as text (empty if it cannot be read).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout_bytes().unwrap_or_default()).into_owned()
    }

    /// Everything on stderr so far, as text (empty if it cannot be read).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// The last lines of stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let text = self.stderr();
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

    /// Sends `signal` (e.g. `libc::SIGINT`) to the child.
    pub fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill() has no memory effects; the pid is our own child,
        // not reaped yet (only `exited`, `wait_within` or the drop reap it,
        // and a reaped child is not signalled), so it cannot have been
        // reused.
        if self.exited().is_none() && unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot signal {}", self.label));
        }
        Ok(())
    }

    /// Asks the child to stop (SIGTERM), then kills it if it lingers.
    pub fn stop(mut self) {
        if self.signal(libc::SIGTERM).is_err() {
            return;
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

/// Waits for the first line of the child's stdout that `parse` accepts (a
/// server's ready line) and returns what it made of it.
pub fn wait_ready_line<T>(
    server: &mut Guard,
    limit: Duration,
    parse: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = server.stdout().lines().find_map(&parse) {
            return Ok(found);
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
                "{} printed no ready line within {limit:?} (stdout: {:?}); stderr: {}",
                server.label(),
                server.stdout().trim_end(),
                server.stderr_tail()
            );
        }
        thread::sleep(POLL);
    }
}

/// The first address in `The server is ready to receive on ADDR...`, where
/// a client on this machine reaches it (an unspecified address becomes
/// loopback).
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

    /// A fresh logs directory for one test.
    fn logs(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

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
        assert_eq!(
            ready_line_address("The server is ready to receive on udp 127.0.0.1:7"),
            Some("127.0.0.1:7".parse().unwrap())
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
    fn input_output_and_ready_line_go_through_files() {
        let dir = logs("process-io");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo 'The server is ready to receive on 127.0.0.1:9'; tr a-z A-Z; echo oops >&2",
        ]);
        let mut child = Guard::spawn_with_input(command, "sh", &dir, b"caf\xe9 x\n").unwrap();
        let addr = wait_ready_line(&mut child, Duration::from_secs(20), ready_line_address);
        assert_eq!(addr.unwrap(), "127.0.0.1:9".parse().unwrap());
        assert!(
            child
                .wait_within(Duration::from_secs(20))
                .unwrap()
                .success()
        );
        assert!(child.stdout_bytes().unwrap().ends_with(b"\nCAF\xe9 X\n"));
        assert_eq!(child.stderr(), "oops\n");
        assert_eq!(child.stderr_tail(), "oops");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_ready_line_fails_with_the_stderr() {
        let dir = logs("process-ready");
        let mut command = Command::new("sh");
        command.args(["-c", "echo not ready; echo broken >&2; exit 3"]);
        let mut child = Guard::spawn(command, "quitter", &dir).unwrap();
        let err = wait_ready_line(&mut child, Duration::from_secs(20), ready_line_address)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("quitter exited"), "{err}");
        assert!(err.ends_with("stderr: broken"), "{err}");

        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let mut child = Guard::spawn(sleeper, "sleeper", &dir).unwrap();
        let err = wait_ready_line(&mut child, Duration::from_millis(50), ready_line_address)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sleeper printed no ready line"), "{err}");
        child.signal(libc::SIGTERM).unwrap();
        let status = child.wait_within(Duration::from_secs(20)).unwrap();
        assert!(!status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
