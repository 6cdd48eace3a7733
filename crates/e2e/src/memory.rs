//! A process's memory and threads, from `/proc/PID/status`: Linux's, so
//! elsewhere they are not measured (`None`), which callers report as such
//! (macOS and FreeBSD have no such file; their `ps` would need a parser of
//! its own for figures nothing here checks off Linux).

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory() {
        let memory = Memory::of(std::process::id()).unwrap().unwrap();
        assert!(memory.vm_rss_kib > 0 && memory.vm_hwm_kib >= memory.vm_rss_kib);
        assert!(memory.threads >= 1);
    }
}
