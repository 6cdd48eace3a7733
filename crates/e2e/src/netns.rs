//! Network namespaces as hosts: each [`Netns`] is a machine of its own,
//! with its own interfaces, addresses, routes, firewall and conntrack
//! table, made with `ip netns add` and deleted when dropped (a test that
//! panics unwinds through the drop too).
//!
//! Names are `upcase-cl-PID-N-ROLE`, unique per process and per network, so
//! parallel tests and runs never share one; namespaces a killed run left
//! behind (its PID no longer running) are deleted by [`sweep_stale`] before
//! a new network is built.
//!
//! Programs run inside through `ip netns exec NAME PROGRAM`, which keeps
//! the pid (it `exec`s), so [`Process`] signals and kills the program
//! itself, and its parent-death signal still ties it to the spawning
//! thread. Sockets are made inside with [`Netns::within`]: a thread of this
//! process enters the namespace (`setns`, which nix wraps safely) and a
//! socket belongs for ever to the namespace it was created in, whichever
//! thread uses it later.

use std::ffi::OsStr;
use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::process::Process;
use crate::{PATIENCE, find_tool};

/// Every namespace of this kit starts so, and only those are swept.
const PREFIX: &str = "upcase-cl-";
/// Where `ip netns add` mounts them.
const NETNS_DIR: &str = "/run/netns";

/// Networks built by this process so far: the N of the names.
static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// A network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// The number of the next network of this process: namespaces with one
/// number belong together.
pub(crate) fn next_network() -> usize {
    NETWORKS.fetch_add(1, Ordering::Relaxed)
}

impl Netns {
    /// A new, empty namespace (its loopback up) for host `role` of network
    /// `network`.
    pub(crate) fn create(network: usize, role: &str) -> anyhow::Result<Netns> {
        let name = format!("{PREFIX}{}-{network}-{role}", std::process::id());
        run(find_tool("ip", "iproute2")?.args(["netns", "add", &name]))
            .with_context(|| format!("cannot create the network namespace {name}"))?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("ip").args(["-n", &self.name]).args(args)).map(drop)
    }

    /// `program` to be run inside: `ip netns exec NAME program`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `f` on a thread inside the namespace and returns what it
    /// returned: sockets made there belong to this namespace.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("{NETNS_DIR}/{}", self.name);
        let namespace = File::open(&path).with_context(|| format!("cannot open {path}"))?;
        thread::scope(|scope| {
            let entered = scope.spawn(move || {
                // Only this thread moves; it ends with `f`.
                setns(&namespace, CloneFlags::CLONE_NEWNET).map(|()| f())
            });
            match entered.join() {
                Ok(result) => result.with_context(|| format!("cannot enter {}", self.name)),
                Err(_) => bail!("a thread inside {} panicked", self.name),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Interfaces inside go with it; processes inside were stopped first.
        if let Err(err) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: {err:#}");
        }
    }
}

/// Why this process cannot build networks of namespaces, if it cannot
/// (not root: no CAP_SYS_ADMIN and CAP_NET_ADMIN): the one reason a test
/// of them may skip, as issue 14 allows.
pub fn unavailable() -> Option<String> {
    // A thread of its own tries, and ends in the new namespace.
    let tried = thread::spawn(|| unshare(CloneFlags::CLONE_NEWNET)).join();
    match tried {
        Ok(Ok(())) => None,
        Ok(Err(errno)) => Some(format!(
            "cannot create network namespaces here ({errno}): run as root, as CI does"
        )),
        Err(_) => Some("the namespace check panicked".to_string()),
    }
}

/// Deletes the namespaces of this kit whose process no longer runs (a run
/// killed before its drops); those of running processes are theirs.
pub fn sweep_stale() -> anyhow::Result<usize> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Ok(0);
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // What the dead run started there and outlived it (nginx's
        // workers: only their master had the parent-death signal).
        let pids = run(Command::new("ip").args(["netns", "pids", &name]))?;
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        run(Command::new("ip").args(["netns", "del", &name]))?;
        swept += 1;
    }
    Ok(swept)
}

/// Runs `command` to completion (bounded by [`PATIENCE`]); its output if it
/// succeeded, else an error with its stderr.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<Output> {
    let shown = format!("{command:?}");
    let out = Process::spawn(command)
        .start()
        .and_then(|process| process.finish(PATIENCE))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(out)
}
