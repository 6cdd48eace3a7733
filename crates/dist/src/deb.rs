//! The Debian package: the release binaries, built the way the rest of CI
//! builds them, and `cargo deb --no-build` over them with what
//! `[package.metadata.deb]` in crates/server/Cargo.toml lists.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

/// The cargo-deb `cargo xtask dist` installs when there is none: pinned,
/// so every machine packages alike, and one whose rust-version (1.85) is
/// the workspace's.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Installs cargo-deb from crates.io when `cargo deb` is missing, and says
/// which one packages.
pub(crate) fn ensure_cargo_deb(cargo: &OsStr) -> anyhow::Result<()> {
    let version = || {
        Command::new(cargo)
            .args(["deb", "--version"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if let Some(found) = version() {
        println!("==> packaging with {found}");
        return Ok(());
    }
    println!(
        "==> cargo-deb is missing: cargo install cargo-deb --version {CARGO_DEB_VERSION} --locked"
    );
    let status = Command::new(cargo)
        .args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ])
        // A build directory of its own, not the workspace's.
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("cannot run cargo install")?;
    ensure!(
        status.success(),
        "cargo install cargo-deb failed ({status})"
    );
    let installed = version().context("cargo deb is still missing after cargo install")?;
    println!("==> packaging with {installed}");
    Ok(())
}

/// `cargo build --release -p P` for each program, one package at a time
/// as `cargo xtask soak` builds the server: built together, cargo would
/// unify the two's dependency features and build the server again.
pub(crate) fn build_release(cargo: &OsStr, root: &Path) -> anyhow::Result<()> {
    for package in ["upcase-server", "upcase-client"] {
        println!("==> cargo build --release -p {package}");
        let status = Command::new(cargo)
            .current_dir(root)
            .args(["build", "--release", "-p", package])
            .status()
            .context("cannot run cargo build")?;
        ensure!(
            status.success(),
            "cargo build --release -p {package} failed ({status})"
        );
    }
    Ok(())
}

/// `PAGE.gz` beside each page, as Debian ships man pages (cargo-deb only
/// compresses pages from outside the target directory); `-n` keeps the
/// name and time out, so the same page gives the same bytes.
pub(crate) fn gzip_pages(pages: &[PathBuf]) -> anyhow::Result<()> {
    for page in pages {
        let gz = page.with_extension("1.gz");
        let out =
            fs::File::create(&gz).with_context(|| format!("cannot create {}", gz.display()))?;
        let status = Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(page)
            .stdout(out)
            .status()
            .context("cannot run gzip")?;
        ensure!(
            status.success(),
            "gzip {} failed ({status})",
            page.display()
        );
    }
    Ok(())
}

/// Makes the package into `out` and returns its path.
pub(crate) fn package(cargo: &OsStr, root: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    println!("==> cargo deb -p upcase-server --no-build --strip");
    // Stripped, as Debian ships binaries: the release profile's line tables
    // would make the package four times larger and slower to compress.
    // A panic's message still names its file and line.
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "deb",
            "-p",
            "upcase-server",
            "--no-build",
            "--strip",
            "--output",
        ])
        .arg(out)
        .status()
        .context("cannot run cargo deb")?;
    ensure!(status.success(), "cargo deb failed ({status})");
    let mut debs: Vec<PathBuf> = fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension() == Some(OsStr::new("deb")))
        .collect();
    match debs.len() {
        1 => Ok(debs.remove(0)),
        n => bail!(
            "cargo deb left {n} .deb files in {}, not one",
            out.display()
        ),
    }
}
