//! Everything the benchmark runs, built or found: our release binaries, the
//! C references compiled from `../shared/anchors`, and Python. What is
//! missing outside the workspace is skipped with a note, not an error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;

pub(crate) struct Tools {
    pub(crate) server: PathBuf,
    /// `upcase-client`, when it has the `bench` subcommand.
    pub(crate) client: Option<PathBuf>,
    pub(crate) limit_server: Option<PathBuf>,
    pub(crate) loadgen: Option<PathBuf>,
    /// The C epoll reference for the TCP rows.
    pub(crate) tcp_server: Option<PathBuf>,
    pub(crate) python: Option<PathBuf>,
    /// The textbook server, `seed_udp_server.py`.
    pub(crate) seed_server: Option<PathBuf>,
    /// `--other-server` / `--other-args`.
    pub(crate) other: Option<OtherServer>,
}

/// Another upcase-server to run beside ours: its program, and the words
/// added after our server's usual ones.
pub(crate) struct OtherServer {
    pub(crate) program: PathBuf,
    pub(crate) words: Vec<String>,
}

/// Cargo's target directory for this workspace (honours CARGO_TARGET_DIR).
pub(crate) fn target_dir(cargo: &OsStr, root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    /// The one field of `cargo metadata` read here.
    #[derive(Deserialize)]
    struct Metadata {
        target_directory: PathBuf,
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout)
        .context("cargo metadata printed no JSON with a target_directory")?;
    Ok(meta.target_directory)
}

/// `cargo build [--release] -p upcase-server -p upcase-client`; returns the
/// paths cargo reports for the two executables. Without `release` it reuses
/// the debug build CI has already made: a smoke run checks that everything
/// works, not how fast.
pub(crate) fn build_bins(
    cargo: &OsStr,
    root: &Path,
    release: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let profile = if release { "release" } else { "dev" };
    eprintln!("bench: building upcase-server and upcase-client ({profile} profile)");
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "upcase-server",
            "-p",
            "upcase-client",
        ])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !out.status.success() {
        bail!("cargo build --profile {profile} failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let server = executable_named(&stdout, "upcase-server")?;
    let client = executable_named(&stdout, "upcase-client")?;
    Ok((server, client))
}

/// The executable of target `name` among cargo's JSON messages.
pub(crate) fn executable_named(messages: &str, name: &str) -> anyhow::Result<PathBuf> {
    /// The fields of one cargo message read here (`--message-format=json`).
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        target: Option<Target>,
        executable: Option<PathBuf>,
    }
    #[derive(Deserialize)]
    struct Target {
        name: String,
    }
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|msg| {
            msg.reason == "compiler-artifact" && msg.target.as_ref().is_some_and(|t| t.name == name)
        })
        .find_map(|msg| msg.executable)
        .with_context(|| format!("cargo reported no executable for {name}"))
}

/// The C programs of `../shared/anchors`, each `None` when it cannot be
/// built here.
pub(crate) struct CBuilds {
    pub(crate) limit_server: Option<PathBuf>,
    pub(crate) loadgen: Option<PathBuf>,
    pub(crate) tcp_server: Option<PathBuf>,
}

/// Compiles `limit_server`, `loadgen` and `tcp_server` into `bin`; `None`
/// (with a note) for each that cannot be built here.
pub(crate) fn build_c(anchors: &Path, bin: &Path, notes: &mut Vec<String>) -> CBuilds {
    if !anchors.is_dir() {
        notes.push(format!(
            "{} not found: the C references and the C load generator are skipped",
            anchors.display()
        ));
        return CBuilds {
            limit_server: None,
            loadgen: None,
            tcp_server: None,
        };
    }
    let compiler = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let mut build = |name: &str| -> Option<PathBuf> {
        let source = anchors.join(format!("{name}.c"));
        let exe = bin.join(name);
        let result = Command::new(&compiler)
            .args(["-O2", "-pthread", "-o"])
            .arg(&exe)
            .arg(&source)
            .stdout(Stdio::null())
            .output();
        match result {
            Ok(out) if out.status.success() => Some(exe),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                let first = why.lines().next().unwrap_or("no message");
                notes.push(format!(
                    "could not compile {} ({}): {first}; skipped",
                    source.display(),
                    out.status
                ));
                None
            }
            Err(err) => {
                notes.push(format!(
                    "no C compiler ({}: {err}): {name} skipped",
                    compiler.to_string_lossy()
                ));
                None
            }
        }
    };
    CBuilds {
        limit_server: build("limit_server"),
        loadgen: build("loadgen"),
        tcp_server: build("tcp_server"),
    }
}

/// The real Python 3 executable (not a shim script, so that the pid we
/// watch is Python's own and no wrapper costs start-up time).
pub(crate) fn find_python(notes: &mut Vec<String>) -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Some(PathBuf::from(if path.is_empty() {
                "python3".into()
            } else {
                path
            }))
        }
        _ => {
            notes.push(
                "python3 not found: the Python server and transform baseline are skipped".into(),
            );
            None
        }
    }
}

/// Whether `upcase-client bench --help` describes the load options we use.
pub(crate) fn client_has_bench(client: &Path) -> bool {
    Command::new(client)
        .args(["bench", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            let help = String::from_utf8_lossy(&out.stdout);
            out.status.success() && help.contains("--window") && help.contains("--json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_found_in_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"upcase-proto"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"upcase-server"},"executable":"/t/release/upcase-server"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        assert_eq!(
            executable_named(messages, "upcase-server").unwrap(),
            PathBuf::from("/t/release/upcase-server")
        );
        assert!(executable_named(messages, "upcase-proto").is_err());
        assert!(executable_named(messages, "upcase-client").is_err());
    }
}
