//! The benchmark's side of its child processes (the test kit's `Process`
//! starts and guards them): each side pinned to a core.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a server may take to answer its first datagram (Python starts
/// slowly on a busy machine).
pub(crate) const STARTUP_LIMIT: Duration = Duration::from_secs(15);

/// Which core each side runs on, when `taskset` can pin them.
#[derive(Clone, Debug)]
pub(crate) struct Pinning {
    taskset: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    Server,
    Load,
}

impl Pinning {
    /// Pins the server to core 0 and the load to core 1 if both cores can be
    /// used; otherwise runs unpinned and says why in `notes`.
    pub(crate) fn detect(notes: &mut Vec<String>) -> Pinning {
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

    pub(crate) fn is_pinned(&self) -> bool {
        self.taskset.is_some()
    }

    pub(crate) fn command(&self, role: Role, program: &Path) -> Command {
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
