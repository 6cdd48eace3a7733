//! The tools dist runs that are not cargo's: found on PATH, or installed
//! with apt-get when dist runs as root (as CI does), else named with the
//! Debian packages that have them.

use std::env;
use std::path::PathBuf;

use anyhow::bail;

/// Each command the build and the checks need, and its Debian package.
const REQUIRED: &[(&str, &str)] = &[
    ("man", "man-db"),
    ("dpkg-deb", "dpkg"),
    // cargo-deb's `depends = "$auto"` asks it which libraries the binaries need.
    ("dpkg-shlibdeps", "dpkg-dev"),
    ("systemd-analyze", "systemd"),
    ("gzip", "gzip"),
    ("bash", "bash"),
];

/// The full path of `command` on PATH, if it is there and executable.
pub(crate) fn find(command: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| candidate.metadata().is_ok_and(|m| is_executable(&m)))
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
}

/// Elsewhere (dist is Debian's, but xtask, which calls it, builds
/// everywhere) a file is as executable as its name says.
#[cfg(not(unix))]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    metadata.is_file()
}

/// The Debian packages whose commands are missing, each once.
fn missing_packages(find: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut packages: Vec<&str> = REQUIRED
        .iter()
        .filter(|(command, _)| !find(command))
        .map(|(_, package)| *package)
        .collect();
    packages.dedup();
    packages
}

/// Makes sure every [`REQUIRED`] command is there, installing the missing
/// ones' packages with apt-get as root.
pub(crate) fn ensure_tools() -> anyhow::Result<()> {
    let missing = missing_packages(|c| find(c).is_some());
    if missing.is_empty() {
        return Ok(());
    }
    if find("apt-get").is_none() {
        bail!(
            "dist needs these Debian packages: apt-get install {}",
            missing.join(" ")
        );
    }
    upcase_e2e::apt::install("what dist needs", &missing)?;
    let still = missing_packages(|c| find(c).is_some());
    if !still.is_empty() {
        bail!(
            "apt-get installed {}, yet these are still missing: {}",
            missing.join(" "),
            still.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_command_names_its_package_once() {
        assert_eq!(missing_packages(|_| true), Vec::<&str>::new());
        assert_eq!(
            missing_packages(|c| c != "man" && c != "systemd-analyze"),
            ["man-db", "systemd"]
        );
    }

    #[test]
    fn commands_are_found_on_path_and_others_are_not() {
        assert!(find("sh").is_some());
        assert!(find("no-such-command-upcase").is_none());
    }
}
