//! Child processes that cannot outlive what started them: killed when
//! dropped, and by the kernel when the thread that started them dies (a CI
//! timeout, ^C, a test that panicked) on Linux, or the process on FreeBSD;
//! on macOS and Windows, which have no such call, only the drop kills them.
//! Their stdout and stderr are read by a thread each as they come, so no
//! pipe can fill up and block them, and kept in memory (and in log files
//! when asked) for the caller to read, during the run and after it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::capture::Capture;
use crate::memory::Memory;
use crate::ready::ReadyLine;
use crate::signal::Signal;

/// How long a process asked to stop by [`Process::stop`] may take before
/// it is killed, and how long its output may take to end after its exit.
const STOP_LIMIT: Duration = Duration::from_secs(3);
/// Granularity of the wait for an exit, which std cannot wait on with a
/// timeout.
const POLL: Duration = Duration::from_millis(5);

/// A running child, killed and reaped when dropped unless it already ended.
pub struct Process {
    child: Child,
    label: String,
    stdin: Option<ChildStdin>,
    stdout: Capture,
    stderr: Capture,
}

/// How a [`Process`] is started: stdin from nothing unless told otherwise,
/// stdout and stderr captured.
#[must_use]
pub struct Spawn<'a> {
    command: &'a mut Command,
    label: String,
    stdin: Stdin,
    stdout_closed: bool,
    logs: Option<&'a Path>,
}

enum Stdin {
    Null,
    Bytes(Vec<u8>),
    Pipe,
}

/// A process after its exit.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// Everything it wrote on stderr.
    pub stderr: String,
    /// From the signal to the exit.
    pub elapsed: Duration,
}

impl<'a> Spawn<'a> {
    /// The name in error messages and log files [default: the program's
    /// file name].
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }

    /// Gives the child `input` on stdin, then end of file. A thread writes
    /// it, so a child that stops reading blocks nobody.
    pub fn input(mut self, input: &[u8]) -> Self {
        self.stdin = Stdin::Bytes(input.to_vec());
        self
    }

    /// Gives the child a pipe on stdin for the caller to write, from
    /// [`Process::take_stdin`].
    pub fn piped_stdin(mut self) -> Self {
        self.stdin = Stdin::Pipe;
        self
    }

    /// Closes the reading end of the child's stdout at once, as a reader
    /// that went away (`| head -0`) does.
    pub fn closed_stdout(mut self) -> Self {
        self.stdout_closed = true;
        self
    }

    /// Also writes stdin, stdout and stderr to `<dir>/<label>.in|.out|.err`,
    /// for a look after the run.
    pub fn logs_in(mut self, dir: &'a Path) -> Self {
        self.logs = Some(dir);
        self
    }

    pub fn start(self) -> anyhow::Result<Process> {
        let Spawn {
            command,
            label,
            stdin,
            stdout_closed,
            logs,
        } = self;
        let log = |suffix: &str| -> anyhow::Result<Option<File>> {
            let Some(dir) = logs else { return Ok(None) };
            let path = dir.join(format!("{label}.{suffix}"));
            File::create(&path)
                .map(Some)
                .with_context(|| format!("cannot create {}", path.display()))
        };
        if let (Stdin::Bytes(input), Some(mut file)) = (&stdin, log("in")?) {
            file.write_all(input).context("cannot log the input")?;
        }
        let (stdout_log, stderr_log) = (log("out")?, log("err")?);
        command
            .stdin(match stdin {
                Stdin::Null => Stdio::null(),
                Stdin::Bytes(_) | Stdin::Pipe => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(command);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {label} ({command:?})"))?;
        // Dropping the pipe when asked to is what closes it.
        let stdout = child.stdout.take().filter(|_| !stdout_closed);
        let stdout = stdout.map_or_else(Capture::ended, |out| Capture::start(out, stdout_log));
        let stderr = child
            .stderr
            .take()
            .map_or_else(Capture::ended, |err| Capture::start(err, stderr_log));
        let mut pipe = child.stdin.take();
        if let Stdin::Bytes(input) = stdin
            && let Some(mut writer) = pipe.take()
        {
            // Ends with an error (EPIPE) if the child exits without reading.
            thread::spawn(move || writer.write_all(&input));
        }
        Ok(Process {
            child,
            label,
            stdin: pipe,
            stdout,
            stderr,
        })
    }
}

/// Has the kernel kill the child when its parent dies. The parent is the
/// thread that spawns it on Linux (spawn from a thread that outlives the
/// child: a test's own thread, xtask's main thread), the process on FreeBSD.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
#[allow(unsafe_code)] // The kit's one unsafe block: see lib.rs.
fn die_with_parent(command: &mut Command) {
    use nix::unistd::{getpid, getppid};
    use std::os::unix::process::CommandExt;

    let parent = getpid();
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it makes two system calls
    // (prctl or procctl, getppid) and allocates nothing (an `Errno` becomes
    // an `io::Error` without allocating).
    unsafe {
        command.pre_exec(move || {
            #[cfg(target_os = "linux")]
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            #[cfg(target_os = "freebsd")]
            {
                let mut signal = libc::SIGKILL;
                // P_PID with id 0: this process. The pointer is to a live
                // local for the duration of the call.
                let data = (&raw mut signal).cast();
                if libc::procctl(libc::P_PID, 0, libc::PROC_PDEATHSIG_CTL, data) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // A parent that died before the call above never sends it.
            if getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

/// macOS has no call that ties a child's life to its parent's: the child
/// is killed when its [`Process`] is dropped, not when the parent dies
/// without dropping it.
#[cfg(not(any(target_os = "linux", target_os = "freebsd", windows)))]
fn die_with_parent(_command: &mut Command) {}

/// Windows: no tie to the parent either (a Job object would be one), but
/// the child starts a console process group of its own, sharing this
/// console, so that [`send_signal`] can send it Ctrl-Break, the one console
/// event a program can aim at one group.
#[cfg(windows)]
fn die_with_parent(command: &mut Command) {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

    command.creation_flags(CREATE_NEW_PROCESS_GROUP);
}

/// Sends `signal` to a child not reaped yet.
#[cfg(unix)]
fn send_signal(child: &mut Child, signal: Signal) -> anyhow::Result<()> {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;

    let pid = i32::try_from(child.id()).context("pid out of range")?;
    kill(Pid::from_raw(pid), nix::sys::signal::Signal::from(signal)).map_err(anyhow::Error::from)
}

/// Windows has no signals. SIGKILL is `TerminateProcess` (what
/// `Child::kill` does); a stop (SIGINT, SIGTERM, SIGHUP) is Ctrl-Break to
/// the child's own process group (see [`die_with_parent`]), which
/// upcase-server takes as the same clean stop. (Ctrl-C cannot be aimed at
/// one group: Windows delivers it to the whole console.) The rest fail, and
/// say so. Written for a real Windows console: Wine cannot deliver console
/// events, so nothing here runs it.
#[cfg(windows)]
#[allow(unsafe_code)] // GenerateConsoleCtrlEvent: see ARCHITECTURE.md.
fn send_signal(child: &mut Child, signal: Signal) -> anyhow::Result<()> {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};

    match signal {
        Signal::SIGKILL => child.kill().map_err(anyhow::Error::from),
        Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP => {
            // SAFETY: two integers by value, no pointers: any values are
            // sound (a group that does not exist is an error return).
            let sent = unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.id()) };
            if sent == 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot send Ctrl-Break to the child's process group");
            }
            Ok(())
        }
        other => bail!("Windows has no {other}: only a stop (Ctrl-Break) or SIGKILL can be sent"),
    }
}

impl Process {
    /// Starts `command` as configured by the [`Spawn`] this returns.
    pub fn spawn(command: &mut Command) -> Spawn<'_> {
        let program = Path::new(command.get_program());
        let label = program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy()
            .into_owned();
        Spawn {
            command,
            label,
            stdin: Stdin::Null,
            stdout_closed: false,
            logs: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The stdin pipe of a child started with [`Spawn::piped_stdin`], once.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Everything on stdout so far, as it was written.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        self.stdout.bytes()
    }

    /// Everything on stdout so far, as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.bytes()).into_owned()
    }

    /// Everything on stderr so far, as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.bytes()).into_owned()
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

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Waits for the child to end by itself within `limit`, else kills it
    /// and fails. Once it has ended, its output is complete.
    pub fn wait_within(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        match self.ended_within(limit) {
            Some(status) => Ok(status),
            None => {
                self.kill();
                bail!("{} did not finish within {limit:?}: killed", self.label);
            }
        }
    }

    /// The exit status if the child ends within `limit`, once its output is
    /// complete too.
    fn ended_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        };
        // A child of the child may still hold the pipes: wait, but bounded.
        let deadline = Instant::now() + STOP_LIMIT;
        self.stdout.wait_ended(deadline);
        self.stderr.wait_ended(deadline);
        Some(status)
    }

    /// Waits for the exit within `limit` and returns everything the child
    /// did, as `Command::output` does.
    pub fn finish(mut self, limit: Duration) -> anyhow::Result<Output> {
        let status = self.wait_within(limit)?;
        Ok(Output {
            status,
            stdout: self.stdout.bytes(),
            stderr: self.stderr.bytes(),
        })
    }

    /// Sends `signal` to the child, unless it has already ended.
    pub fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        // Not reaped yet (only `exited`, `wait_within` and the drop reap it,
        // and it was running just now), so the pid is still our child's.
        send_signal(&mut self.child, signal)
            .with_context(|| format!("cannot send {signal} to {}", self.label))
    }

    /// Sends `signal` and waits within `limit` for the exit.
    pub fn stop_with(mut self, signal: Signal, limit: Duration) -> anyhow::Result<Stopped> {
        let started = Instant::now();
        self.signal(signal)?;
        let status = self
            .wait_within(limit)
            .with_context(|| format!("after {signal}"))?;
        Ok(Stopped {
            status,
            stderr: self.stderr(),
            elapsed: started.elapsed(),
        })
    }

    /// Asks the child to stop (SIGTERM), and kills it if it lingers.
    pub fn stop(mut self) {
        if self.signal(Signal::SIGTERM).is_ok() {
            let _ = self.wait_within(STOP_LIMIT);
        }
        // Drop kills it if SIGTERM was not enough.
    }

    /// Waits until `check` finds what it looks for in the child's stdout so
    /// far; fails if the child ends first or `limit` passes.
    pub fn wait_for_stdout<T>(
        &mut self,
        limit: Duration,
        check: impl FnMut(&[u8]) -> Option<T>,
    ) -> anyhow::Result<T> {
        if let Some(found) = self.stdout.wait_for(Instant::now() + limit, check) {
            return Ok(found);
        }
        // A closed stdout means an exit under way: give it time to finish.
        let grace = if self.stdout.is_ended() {
            STOP_LIMIT
        } else {
            Duration::ZERO
        };
        let status = self.ended_within(grace);
        let stdout = self.stdout();
        match status {
            Some(status) => bail!(
                "{} exited ({status}) before printing what was awaited (stdout: {:?}); stderr: {}",
                self.label,
                stdout.trim_end(),
                self.stderr_tail()
            ),
            None => bail!(
                "{} did not print what was awaited within {limit:?} (stdout: {:?}); stderr: {}",
                self.label,
                stdout.trim_end(),
                self.stderr_tail()
            ),
        }
    }

    /// Waits until stderr holds `nth` (counting from 1) whole lines that
    /// contain `needle`, and returns the last of them; fails if the child
    /// ends first or `limit` passes.
    pub fn wait_for_stderr_line(
        &mut self,
        limit: Duration,
        needle: &str,
        nth: usize,
    ) -> anyhow::Result<String> {
        let found = self.stderr.wait_for(Instant::now() + limit, |stderr| {
            whole_lines(stderr)
                .filter(|line| line.contains(needle))
                .nth(nth.saturating_sub(1))
        });
        match found {
            Some(line) => Ok(line),
            None => {
                let running = self.is_running();
                bail!(
                    "{} wrote no line {nth} with {needle:?} within {limit:?} (running: {running}); stderr:\n{}",
                    self.label,
                    self.stderr()
                )
            }
        }
    }

    /// Waits for the server's ready line on stdout.
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<ReadyLine> {
        self.wait_for_stdout(limit, |stdout| {
            whole_lines(stdout).find_map(|line| ReadyLine::parse(&line))
        })
        .context("waiting for the ready line")
    }

    /// The child's memory now; `None` off Linux (not measured).
    pub fn memory(&self) -> anyhow::Result<Option<Memory>> {
        Memory::of(self.pid())
    }

    /// The CPU time the child's threads have used so far; `None` off Linux
    /// (not measured).
    pub fn cpu_time(&self) -> anyhow::Result<Option<Duration>> {
        crate::memory::cpu_time(self.pid())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole lines of captured output, as text: a line still being written
/// is not there yet.
fn whole_lines(bytes: &[u8]) -> impl Iterator<Item = String> {
    let whole = &bytes[..bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1)];
    String::from_utf8_lossy(whole)
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

// The children are Unix tools (sh, sleep, cat, yes).
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn input_output_and_ready_line_are_captured() {
        let dir = std::env::temp_dir().join(format!("upcase-kit-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command =
            sh("echo 'The server is ready to receive on 127.0.0.1:9'; tr a-z A-Z; echo oops >&2");
        let mut child = Process::spawn(&mut command)
            .label("upper")
            .input(b"caf\xe9 x\n")
            .logs_in(&dir)
            .start()
            .unwrap();
        let ready = child.wait_ready(Duration::from_secs(20)).unwrap();
        assert_eq!(ready.first(), "127.0.0.1:9".parse().unwrap());
        let out = child.finish(Duration::from_secs(20)).unwrap();
        assert!(out.status.success());
        assert!(out.stdout.ends_with(b"\nCAF\xe9 X\n"));
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(std::fs::read(dir.join("upper.in")).unwrap(), b"caf\xe9 x\n");
        assert_eq!(std::fs::read(dir.join("upper.err")).unwrap(), b"oops\n");
        assert_eq!(std::fs::read(dir.join("upper.out")).unwrap(), out.stdout);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_ready_line_fails_with_the_stderr() {
        let mut command = sh("echo not ready; echo broken >&2; exit 3");
        let mut child = Process::spawn(&mut command)
            .label("quitter")
            .start()
            .unwrap();
        let err = child.wait_ready(Duration::from_secs(20)).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("quitter exited"), "{err}");
        assert!(err.contains("stderr: broken"), "{err}");
        assert_eq!(child.stderr_tail(), "broken");

        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let mut child = Process::spawn(&mut sleeper).start().unwrap();
        let err = child.wait_ready(Duration::from_millis(50)).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("sleep did not print"), "{err}");
        assert_eq!(child.stderr_tail(), "(nothing on stderr)");
        let stopped = child
            .stop_with(Signal::SIGTERM, Duration::from_secs(20))
            .unwrap();
        assert!(!stopped.status.success());
    }

    #[test]
    fn a_child_that_overstays_is_killed() {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let mut child = Process::spawn(&mut sleeper).start().unwrap();
        let err = child.wait_within(Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(!child.is_running());
    }

    #[test]
    fn stdin_can_be_typed_and_stdout_closed() {
        let mut command = Command::new("cat");
        let mut child = Process::spawn(&mut command).piped_stdin().start().unwrap();
        let mut stdin = child.take_stdin().unwrap();
        stdin.write_all(b"one\n").unwrap();
        let line = child
            .wait_for_stdout(Duration::from_secs(20), |out| {
                out.ends_with(b"\n").then(|| out.to_vec())
            })
            .unwrap();
        assert_eq!(line, b"one\n");
        drop(stdin);
        assert!(
            child
                .wait_within(Duration::from_secs(20))
                .unwrap()
                .success()
        );

        // `yes` dies of the closed pipe (SIGPIPE) at its first write.
        let mut command = Command::new("yes");
        let mut child = Process::spawn(&mut command)
            .closed_stdout()
            .start()
            .unwrap();
        let status = child.wait_within(Duration::from_secs(20)).unwrap();
        assert!(!status.success());
        assert!(child.stdout_bytes().is_empty());
    }
}
