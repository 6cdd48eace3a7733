//! Debian's packaged Rust, for building what rustup cannot here: std for
//! other targets (`-Zbuild-std`, from `rust-web-src`), since no toolchain
//! can be fetched from outside. Installs what is missing with apt-get
//! (when running as root) and starts Debian's cargo so that nothing of
//! rustup's reaches it: `/usr/bin` first on PATH, `RUSTC` and `RUSTDOC`
//! set, rustup's variables removed (rustup's `rustc` proxy would otherwise
//! pick the toolchain file's stable, which has no std source), and a
//! target directory of its own (Debian's compiler must not churn the host
//! build's artifacts).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::workspace;

/// Debian's Rust and its std source; clippy for `--clippy`.
const RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
const CLIPPY_PACKAGE: &str = "rust-web-clippy";

/// Where Debian installs them.
const CARGO: &str = "/usr/bin/cargo";
pub(crate) const RUSTC: &str = "/usr/bin/rustc";
const RUSTDOC: &str = "/usr/bin/rustdoc";
const CARGO_CLIPPY: &str = "/usr/bin/cargo-clippy";
/// The std source, where `-Zbuild-std` looks for it (sysroot `/usr`).
pub(crate) const STD_SOURCE: &str = "/usr/lib/rustlib/src/rust/library";

/// Where the builds with Debian's Rust go: `$CARGO_TARGET_DIR/cross`, or
/// the workspace's `target/cross`.
pub(crate) fn target_base() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace::root().join("target"))
        .join("cross")
}

/// Debian's cargo with Debian's rustc, from the workspace root, building
/// into `target_dir`, nightly features allowed (`-Zbuild-std`).
pub(crate) fn cargo(target_dir: &Path) -> Command {
    let mut path = OsString::from("/usr/bin");
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    let mut command = Command::new(CARGO);
    command
        .current_dir(workspace::root())
        .env("PATH", path)
        .env("RUSTC", RUSTC)
        .env("RUSTDOC", RUSTDOC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir);
    for rustup in [
        "RUSTUP_TOOLCHAIN",
        "RUSTUP_TOOLCHAIN_SOURCE",
        "RUST_RECURSION_COUNT",
        "CARGO",
    ] {
        command.env_remove(rustup);
    }
    command
}

/// Makes sure Debian's Rust (at least the workspace's `rust-version`, with
/// its std source, and clippy when asked) is installed, installing it as
/// root when not; returns `rustc --version`.
pub(crate) fn ensure_rust(clippy: bool) -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(workspace::root().join("Cargo.toml"))
        .context("cannot read the workspace's Cargo.toml")?;
    let needed = manifest_value(&manifest, "rust-version")
        .and_then(|v| parse_version(&v))
        .context("the workspace's Cargo.toml states no rust-version")?;
    let std_lock = format!("{STD_SOURCE}/Cargo.lock");
    let ready = || -> Option<String> {
        let version = rustc_version()?;
        let fits = parse_version(&version).is_some_and(|v| v >= needed);
        let present = [CARGO, std_lock.as_str()]
            .into_iter()
            .chain(clippy.then_some(CARGO_CLIPPY))
            .all(|p| Path::new(p).exists());
        (fits && present).then_some(version)
    };
    if let Some(version) = ready() {
        return Ok(version);
    }
    let mut packages = RUST_PACKAGES.to_vec();
    if clippy {
        packages.push(CLIPPY_PACKAGE);
    }
    let wanted = format!(
        "Debian's Rust {}.{} or newer with its std source",
        needed.0, needed.1
    );
    upcase_e2e::apt::install(&wanted, &packages)?;
    ready().with_context(|| format!("{wanted} is still missing after apt-get install"))
}

/// `rustc 1.96.0 (...)` of Debian's rustc, if it is there.
fn rustc_version() -> Option<String> {
    let output = Command::new(RUSTC).arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The major and minor of `1.88`, `1.96.0` or `rustc 1.96.0 (...)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let number = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The first `key = "value"` line of a manifest.
pub(crate) fn manifest_value(manifest: &str, key: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_manifest_values_are_read() {
        assert_eq!(parse_version("1.88"), Some((1, 88)));
        assert_eq!(parse_version("rustc 1.96.0 (f1 2026-01-01)"), Some((1, 96)));
        assert_eq!(parse_version("rustc"), None);
        let manifest = "[package]\nname = \"x\"\nrust-version = \"1.88\"\n";
        assert_eq!(manifest_value(manifest, "name").as_deref(), Some("x"));
        assert_eq!(
            manifest_value(manifest, "rust-version").as_deref(),
            Some("1.88")
        );
        assert_eq!(manifest_value(manifest, "edition"), None);
        let root = std::fs::read_to_string(workspace::root().join("Cargo.toml")).unwrap();
        assert!(manifest_value(&root, "rust-version").is_some());
    }
}
