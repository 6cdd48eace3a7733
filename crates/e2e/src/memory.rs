//! A process's memory and threads, from `/proc/PID/status`, and the CPU
//! time its threads have used, from `/proc/PID/task/*/schedstat`: Linux's,
//! so elsewhere they are not measured (`None`), which callers report as
//! such (macOS and FreeBSD have no such files; their `ps` would need a
//! parser of its own for figures nothing here checks off Linux).

use std::time::Duration;

use anyhow::Context;

/// Peak and current resident memory of a process, and its thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// VmHWM: the peak resident set.
    pub vm_hwm_kib: u64,
    /// VmRSS: the resident set now.
    pub vm_rss_kib: u64,
    pub threads: u64,
}

impl Memory {
    /// The memory of process `pid` now; `None` off Linux (not measured).
    pub fn of(pid: u32) -> anyhow::Result<Option<Memory>> {
        if !cfg!(target_os = "linux") {
            return Ok(None);
        }
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        Memory::parse(&status)
            .map(Some)
            .with_context(|| format!("{path} has no VmHWM, VmRSS or Threads"))
    }

    /// Reads the text of a `/proc/PID/status` file.
    pub fn parse(status: &str) -> Option<Memory> {
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
}

/// The CPU time, user and system, that the live threads of process `pid`
/// have used so far; `None` off Linux (not measured).
///
/// Each thread's `schedstat` starts with its time on a CPU in nanoseconds
/// (`/proc/PID/stat` counts whole clock ticks, 10 ms, too coarse for a
/// cost per reply). A thread that has ended no longer counts: callers
/// compare two readings of a server whose threads live as long as it does.
pub fn cpu_time(pid: u32) -> anyhow::Result<Option<Duration>> {
    if !cfg!(target_os = "linux") {
        return Ok(None);
    }
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
        let path = task
            .with_context(|| format!("cannot list {tasks}"))?
            .path()
            .join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += parse_schedstat(&text)
            .with_context(|| format!("{} does not start with a count", path.display()))?;
    }
    Ok(Some(Duration::from_nanos(total)))
}

/// The first field of a `schedstat` file: nanoseconds on a CPU.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_starts_with_the_time_on_a_cpu() {
        assert_eq!(
            parse_schedstat("137418652 28539835 795\n"),
            Some(137_418_652)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_uses_cpu_time_as_it_works() {
        let before = cpu_time(std::process::id()).unwrap().unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time(std::process::id()).unwrap().unwrap();
        assert!(
            after >= before + Duration::from_millis(20),
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn proc_status_is_read() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    3000 kB\n\
                      Threads:\t2\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                vm_hwm_kib: 4096,
                vm_rss_kib: 3000,
                threads: 2
            })
        );
        assert_eq!(Memory::parse("VmHWM: 1 kB\n"), None);
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn memory_is_not_measured_off_linux() {
        assert_eq!(Memory::of(std::process::id()).unwrap(), None);
        assert_eq!(cpu_time(std::process::id()).unwrap(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory() {
        let memory = Memory::of(std::process::id()).unwrap().unwrap();
        assert!(memory.vm_rss_kib > 0 && memory.vm_hwm_kib >= memory.vm_rss_kib);
        assert!(memory.threads >= 1);
    }
}
