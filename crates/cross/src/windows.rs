//! Windows programs built here and run under Wine: what an end-to-end test
//! of the Windows binaries needs, without a Windows machine.
//!
//! - [`build`]: `cargo build -Zbuild-std --target x86_64-pc-windows-gnu`
//!   with Debian's Rust and MinGW's linker. Two gaps are filled first:
//!   `-Zbuild-std` does not make the startup objects rustc adds to every
//!   windows-gnu link (`rsbegin.o`, `rsend.o`: one `rustc --emit=obj` of
//!   std's `rtstartup` sources each, found through `-L native=`), and Wine 8
//!   has no `bcryptprimitives.dll`, whose `ProcessPrng` std imports: a
//!   small DLL built from `crates/cross/wine/processprng.c` stands in, placed
//!   beside each program run ([`Wine::command`]).
//! - [`Wine`]: a prefix of our own (created once, reused), a persistent
//!   wineserver (so that each start takes a fraction of a second after the
//!   first) with Wine's services already up, and a command that runs a
//!   `.exe` in it; the wineserver stops on drop. A program's output is best
//!   read from a file, or line by line from a pipe without waiting for its
//!   end: a process Wine starts on the side can hold a pipe open.
//!
//! The tools come from Debian (`gcc-mingw-w64-x86-64`, `wine64`), installed
//! with apt-get when missing. Wine's loader is not on PATH: Debian puts it
//! in `/usr/lib/wine`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::{debian, workspace};

/// The Windows target built here (MSVC's linker and SDK cannot be had).
pub(crate) const TARGET: &str = "x86_64-pc-windows-gnu";
const LINKER: &str = "x86_64-w64-mingw32-gcc";
/// The Wine loader for 64-bit programs.
pub(crate) const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver64";
const TOOL_PACKAGES: &[&str] = &["gcc-mingw-w64-x86-64", "wine64"];
/// The DLL std wants, which Wine 8 lacks, and its source.
const SHIM_DLL: &str = "bcryptprimitives.dll";
const SHIM_SOURCE: &str = "crates/cross/wine/processprng.c";

/// Where the Windows build goes.
fn target_dir() -> PathBuf {
    debian::target_base().join(TARGET)
}

/// Builds `cargo_args` (`-p upcase-server`, `--example x`, ...) for
/// Windows, debug profile; returns the directory the programs are in
/// (examples in its `examples/`, tests in its `deps/`).
pub(crate) fn build(cargo_args: &[&str]) -> anyhow::Result<PathBuf> {
    debian::ensure_rust(false)?;
    ensure_tools()?;
    let target_dir = target_dir();
    let startup = target_dir.join("startup");
    make_startup_objects(&startup)?;
    make_shim(&target_dir)?;
    // Fixed flags: changing them would rebuild std.
    let rustflags = format!("-L native={}", startup.display());
    let status = debian::cargo(&target_dir)
        .args(["build", "-Zbuild-std", "--target", TARGET])
        .args(cargo_args)
        .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER", LINKER)
        .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS", rustflags)
        .status()
        .context("cannot start Debian's cargo")?;
    if !status.success() {
        bail!(
            "building {} for {TARGET} failed ({status})",
            cargo_args.join(" ")
        );
    }
    Ok(target_dir.join(TARGET).join("debug"))
}

/// MinGW and Wine, installed when missing.
fn ensure_tools() -> anyhow::Result<()> {
    let linker_found = Command::new(LINKER).arg("--version").output().is_ok();
    if linker_found && Path::new(WINE).exists() && Path::new(WINESERVER).exists() {
        return Ok(());
    }
    upcase_e2e::apt::install("MinGW and Wine", TOOL_PACKAGES)
}

/// `rsbegin.o` and `rsend.o` for the target, as Rust's own build makes them
/// for its sysroot, from the std source Debian ships.
fn make_startup_objects(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in ["rsbegin", "rsend"] {
        let object = dir.join(format!("{name}.o"));
        if object.exists() {
            continue;
        }
        let source = format!("{}/rtstartup/{name}.rs", debian::STD_SOURCE);
        let status = Command::new(debian::RUSTC)
            .args(["--target", TARGET, "--emit=obj", "-o"])
            .arg(&object)
            .arg(&source)
            .env("RUSTC_BOOTSTRAP", "1")
            .status()
            .context("cannot start Debian's rustc")?;
        if !status.success() {
            bail!("cannot build {name}.o from {source} ({status})");
        }
    }
    Ok(())
}

/// The shim DLL, built once into the target directory.
fn make_shim(target_dir: &Path) -> anyhow::Result<PathBuf> {
    let dll = target_dir.join("wine-shim").join(SHIM_DLL);
    let source = workspace::root().join(SHIM_SOURCE);
    let fresh = |dll: &Path| -> Option<bool> {
        let built = dll.metadata().ok()?.modified().ok()?;
        Some(built >= source.metadata().ok()?.modified().ok()?)
    };
    if fresh(&dll) == Some(true) {
        return Ok(dll);
    }
    if let Some(dir) = dll.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let status = Command::new(LINKER)
        .args(["-shared", "-O2", "-o"])
        .arg(&dll)
        .arg(&source)
        .arg("-ladvapi32")
        .status()
        .with_context(|| format!("cannot start {LINKER}"))?;
    if !status.success() {
        bail!("cannot build {SHIM_DLL} from {SHIM_SOURCE} ({status})");
    }
    Ok(dll)
}

/// A Wine prefix with a running wineserver, for running Windows programs
/// built by [`build`]; the wineserver stops on drop.
pub(crate) struct Wine {
    prefix: PathBuf,
    shim: PathBuf,
}

impl Wine {
    /// Makes the prefix (once: about 700 MB, a few seconds) and starts a
    /// persistent wineserver in it.
    pub(crate) fn start() -> anyhow::Result<Wine> {
        ensure_tools()?;
        let target_dir = target_dir();
        let shim = make_shim(&target_dir)?;
        let prefix = target_dir.join("wine-prefix");
        let wine = Wine { prefix, shim };
        std::fs::create_dir_all(&wine.prefix)
            .with_context(|| format!("cannot create {}", wine.prefix.display()))?;
        // First, so that wineboot uses it too. It says 2 when a wineserver
        // already runs in this prefix (one started before): that one serves.
        let status = wine
            .env(Command::new(WINESERVER))
            .arg("-p")
            .status()
            .context("cannot start wineserver64")?;
        if !matches!(status.code(), Some(0 | 2)) {
            bail!("wineserver -p failed ({status})");
        }
        // wineboot also starts Wine's services, which live as long as the
        // wineserver: started by a test's program instead, they would
        // inherit its stdout and stderr and hold those pipes open after it
        // exits (a reader waiting for their end would wait for ever).
        let init = !wine.prefix.join("system.reg").exists();
        if init {
            println!("==> creating the Wine prefix {}", wine.prefix.display());
        }
        let status = wine
            .wine()
            .arg("wineboot")
            .args(init.then_some("--init"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot start wine64")?;
        if !status.success() {
            bail!("wineboot failed ({status})");
        }
        Ok(wine)
    }

    /// A command running `exe` under Wine, with the shim DLL beside it.
    pub(crate) fn command(&self, exe: &Path) -> anyhow::Result<Command> {
        self.place_shim(exe)?;
        let mut command = self.wine();
        command.arg(exe);
        Ok(command)
    }

    /// Puts the shim DLL beside `exe`, where Windows looks for DLLs first,
    /// so that `exe` can be run by [`WINE`] with [`Wine::env`]'s variables.
    pub(crate) fn place_shim(&self, exe: &Path) -> anyhow::Result<()> {
        let dir = exe
            .parent()
            .with_context(|| format!("{} is in no directory", exe.display()))?;
        let beside = dir.join(SHIM_DLL);
        std::fs::copy(&self.shim, &beside)
            .with_context(|| format!("cannot copy {SHIM_DLL} to {}", dir.display()))?;
        Ok(())
    }

    fn wine(&self) -> Command {
        self.env(Command::new(WINE))
    }

    /// Our prefix, no debug chatter, no Mono or Gecko to offer: what every
    /// process that starts [`WINE`] needs, or passes on to one that does.
    pub(crate) fn env(&self, mut command: Command) -> Command {
        command
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        command
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        // Stops the wineserver started in this prefix, and any program left.
        let _ = self.env(Command::new(WINESERVER)).arg("-k").status();
    }
}
