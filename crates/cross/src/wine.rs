//! `cargo xtask wine`: the Windows programs run under Wine on loopback,
//! against Linux-native peers. Builds `upcase-server.exe`,
//! `upcase-client.exe` and upcase-udp's smoke program for
//! x86_64-pc-windows-gnu (`windows.rs`), runs the smoke program (the
//! portable UDP path's checks), then the end-to-end test
//! `crates/e2e/tests/wine.rs` (feature `wine`) with the Windows programs'
//! paths and Wine's variables in its environment, beside the Linux
//! programs of `cargo build --workspace --bins`. Prints how long each part
//! took.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::windows::{self, Wine};
use crate::workspace;

/// The program upcase-udp's feature `smoke` adds.
const SMOKE: &str = "upcase-udp-smoke";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut times = Vec::new();
    let mut timed = |what: &'static str, since: Instant| {
        let seconds = since.elapsed().as_secs_f64();
        println!("==> wine: {what} took {seconds:.1}s");
        times.push((what, seconds));
    };

    let part = Instant::now();
    // The Linux peers, as CI's build step makes them (same features, so
    // nothing is built twice).
    let status = workspace::cargo()
        .args(["build", "--workspace", "--bins"])
        .status()
        .context("cannot start cargo")?;
    if !status.success() {
        bail!("building the Linux programs failed ({status})");
    }
    timed("Linux build", part);

    let part = Instant::now();
    let dir = windows::build(&windows_build())?;
    timed("Windows build", part);

    let part = Instant::now();
    let wine = Wine::start()?;
    timed("Wine start", part);

    let part = Instant::now();
    let smoke_passed = smoke(&wine, &dir)?;
    timed("smoke test", part);

    let part = Instant::now();
    let e2e_passed = end_to_end(&wine, &dir)?;
    timed("end-to-end test", part);
    drop(wine);

    println!("\n{:<26} {:>9}", "wine", "seconds");
    for (what, seconds) in &times {
        println!("{what:<26} {seconds:>9.1}");
    }
    println!("==> wine: {:.0}s in all", started.elapsed().as_secs_f64());
    match (smoke_passed, e2e_passed) {
        (true, true) => Ok(()),
        (false, true) => bail!("the portable path's smoke test failed under Wine"),
        (true, false) => bail!("the end-to-end test of the Windows programs failed under Wine"),
        (false, false) => bail!("the smoke test and the end-to-end test failed under Wine"),
    }
}

/// The cargo arguments that build the Windows programs: the server, the
/// client and the smoke program, in one run. One feature set for
/// upcase-udp (`smoke` only adds the program), so that building one after
/// the other does not rebuild upcase-udp and all that depends on it.
pub(crate) fn windows_build() -> [&'static str; 9] {
    [
        "--package",
        "upcase-server",
        "--package",
        "upcase-client",
        "--package",
        "upcase-udp",
        "--features",
        "upcase-udp/smoke",
        "--bins",
    ]
}

/// Runs the portable path's smoke program, built in `dir`, under `wine`:
/// it passes when it says all its checks passed.
pub(crate) fn smoke(wine: &Wine, dir: &Path) -> anyhow::Result<bool> {
    let exe = dir.join(format!("{SMOKE}.exe"));
    println!("==> wine {}", exe.display());
    // Into a file, not a pipe: a process Wine starts on the side could
    // hold a pipe open after the program exits.
    let log = dir.join(format!("{SMOKE}.log"));
    let file = std::fs::File::create(&log).context("cannot create the smoke test's log")?;
    let status = wine
        .command(&exe)?
        .stdin(Stdio::null())
        .stdout(file.try_clone().context("cannot share the log")?)
        .stderr(file)
        .status()
        .context("cannot run wine64")?;
    let output = std::fs::read_to_string(&log).context("cannot read the smoke test's log")?;
    print!("{output}");
    Ok(status.success()
        && output
            .lines()
            .any(|l| l.starts_with("portable path: all ") && l.ends_with(" checks passed")))
}

/// `cargo test -p upcase-e2e --features wine --test wine`, told where the
/// Windows programs built in `dir` are and how to run them.
fn end_to_end(wine: &Wine, dir: &Path) -> anyhow::Result<bool> {
    let server = dir.join("upcase-server.exe");
    let client = dir.join("upcase-client.exe");
    wine.place_shim(&server)?;
    let mut command = wine.env(workspace::cargo());
    command
        .args([
            "test",
            "--package",
            "upcase-e2e",
            "--features",
            "wine",
            "--test",
            "wine",
        ])
        .env("UPCASE_WINE", windows::WINE)
        .env("UPCASE_WINDOWS_SERVER", &server)
        .env("UPCASE_WINDOWS_CLIENT", &client);
    println!(
        "==> UPCASE_WINDOWS_SERVER={} UPCASE_WINDOWS_CLIENT={} cargo test -p upcase-e2e --features wine --test wine",
        server.display(),
        client.display()
    );
    let status = command.status().context("cannot start cargo test")?;
    Ok(status.success())
}
