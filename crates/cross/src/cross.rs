//! `cargo xtask cross [--target T]... [--package P]... [--libs-only]
//! [--clippy] [--wine]`: type-checks the workspace for the systems this
//! machine cannot run, macOS (x86_64, aarch64), FreeBSD and Windows; with
//! `--wine`, also builds upcase-udp's smoke test of its portable path for
//! Windows (x86_64-pc-windows-gnu, `windows.rs`) and runs it under Wine.
//!
//! Debian's Rust builds std for each target from its source (`debian.rs`
//! installs it when missing); each target gets its own target directory,
//! `$CARGO_TARGET_DIR/cross/<target>` (or `target/cross/<target>`), since
//! each builds its own std.
//!
//! What is checked: the whole workspace, with its tests, for macOS and
//! FreeBSD, and its libraries and binaries (xtask among them) for Windows;
//! `--package` narrows it, `--libs-only` leaves the tests out everywhere.
//! A warning in a workspace crate fails the check, as `-D warnings` does on
//! the host: code gated for one system is often dead on another.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{debian, windows, wine, workspace};

/// The targets checked unless `--target` names some.
pub(crate) const TARGETS: &[&str] = &[
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-unknown-freebsd",
    "x86_64-pc-windows-msvc",
];

#[derive(Debug, clap::Args)]
pub struct CrossArgs {
    /// Check only this target (repeatable) [default: all four]
    #[arg(long = "target", value_name = "TRIPLE",
          value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    /// Check only this package (repeatable) [default: the whole workspace]
    #[arg(long = "package", short = 'p', value_name = "NAME")]
    pub packages: Vec<String>,
    /// Libraries and binaries only, no tests, on every target
    #[arg(long)]
    pub libs_only: bool,
    /// Also run clippy per target, warnings denied (installs rust-web-clippy)
    #[arg(long)]
    pub clippy: bool,
    /// Also run upcase-udp's portable-path smoke test as a Windows program
    /// under Wine (installs MinGW and Wine)
    #[arg(long)]
    pub wine: bool,
}

/// One cargo run for one target, and how it went.
struct Outcome {
    target: String,
    step: &'static str,
    passed: bool,
    warnings: usize,
    seconds: f64,
}

pub fn run(args: &CrossArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let version = debian::ensure_rust(args.clippy)?;
    println!("==> Debian's {version}");
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let members = workspace_packages()?;
    let mut outcomes = Vec::new();
    for target in targets {
        let steps: &[&'static str] = if args.clippy {
            &["check", "clippy"]
        } else {
            &["check"]
        };
        for &step in steps {
            outcomes.push(run_step(step, target, args, &members)?);
        }
    }
    if args.wine {
        outcomes.push(wine_smoke()?);
    }
    println!(
        "\n{:<24} {:<7} {:<7} {:>8} {:>9}",
        "target", "step", "result", "warnings", "seconds"
    );
    for o in &outcomes {
        let result = if o.passed { "ok" } else { "FAILED" };
        println!(
            "{:<24} {:<7} {:<7} {:>8} {:>9.1}",
            o.target, o.step, result, o.warnings, o.seconds
        );
    }
    println!("==> cross: {:.0}s in all", started.elapsed().as_secs_f64());
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("{} {}", o.step, o.target))
        .collect();
    if !failed.is_empty() {
        bail!("cross checks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// What cargo is asked to check for `target`.
fn selection(target: &str, args: &CrossArgs) -> Vec<String> {
    let mut selection: Vec<String> = if args.packages.is_empty() {
        vec!["--workspace".into()]
    } else {
        args.packages
            .iter()
            .flat_map(|p| ["--package".to_string(), p.clone()])
            .collect()
    };
    // Windows: the libraries and binaries, as issue 12 asks at least.
    if args.libs_only || target.contains("windows") {
        selection.extend(["--lib".into(), "--bins".into()]);
    } else {
        selection.push("--all-targets".into());
    }
    selection
}

fn run_step(
    step: &'static str,
    target: &str,
    args: &CrossArgs,
    members: &[String],
) -> anyhow::Result<Outcome> {
    let target_dir = debian::target_base().join(target);
    let mut command = debian::cargo(&target_dir);
    command
        // Every crate that can be checked is, so that one run lists every
        // error on the target, not only the first crate's.
        .args([step, "-Zbuild-std", "--keep-going", "--target", target])
        .args(selection(target, args));
    if step == "clippy" {
        command.args(["--", "-D", "warnings"]);
    }
    println!(
        "==> {step} {target} (in {}): cargo {}",
        target_dir.display(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let started = Instant::now();
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start Debian's cargo")?;
    // Passed through as it comes, and read for the warnings of our crates.
    let mut warnings = 0;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("cannot read cargo's output")?;
            eprintln!("{line}");
            warnings += workspace_warnings(&line, members);
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    Ok(Outcome {
        target: target.to_string(),
        step,
        passed: status.success() && warnings == 0,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Builds the portable path's smoke test for Windows and runs it under
/// Wine (`cargo xtask wine` runs it too, with the end-to-end test).
fn wine_smoke() -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // The programs too, as `cargo xtask wine` builds them: one build for both.
    let dir = windows::build(&wine::windows_build())?;
    let passed = wine::smoke(&windows::Wine::start()?, &dir)?;
    Ok(Outcome {
        target: windows::TARGET.to_string(),
        step: "wine",
        passed,
        warnings: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The count in cargo's "warning: `crate` (lib) generated N warnings" when
/// `crate` is one of the workspace's.
fn workspace_warnings(line: &str, members: &[String]) -> usize {
    let Some(rest) = line.strip_prefix("warning: `") else {
        return 0;
    };
    let Some((name, rest)) = rest.split_once('`') else {
        return 0;
    };
    if !members.iter().any(|m| m == name) {
        return 0;
    }
    let Some((_, count)) = rest.split_once(" generated ") else {
        return 0;
    };
    count
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The workspace's package names, from its members' manifests.
fn workspace_packages() -> anyhow::Result<Vec<String>> {
    let root = workspace::root();
    let mut dirs = vec![root.join("xtask")];
    for entry in std::fs::read_dir(root.join("crates")).context("cannot list crates/")? {
        dirs.push(entry.context("cannot list crates/")?.path());
    }
    let mut names = Vec::new();
    for dir in dirs {
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        if let Some(name) = debian::manifest_value(&manifest, "name") {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_counts_are_read_for_workspace_crates_only() {
        let members = vec!["upcase-udp".to_string()];
        let line = "warning: `upcase-udp` (lib) generated 3 warnings";
        assert_eq!(workspace_warnings(line, &members), 3);
        let std_line = "warning: `core` (lib) generated 1 warning";
        assert_eq!(workspace_warnings(std_line, &members), 0);
        assert_eq!(workspace_warnings("warning: unused import", &members), 0);
    }

    #[test]
    fn windows_gets_libraries_and_binaries_and_others_everything() {
        let args = CrossArgs {
            targets: vec![],
            packages: vec!["upcase-udp".into()],
            libs_only: false,
            clippy: false,
            wine: false,
        };
        assert_eq!(
            selection("x86_64-apple-darwin", &args),
            ["--package", "upcase-udp", "--all-targets"]
        );
        assert_eq!(
            selection("x86_64-pc-windows-msvc", &args),
            ["--package", "upcase-udp", "--lib", "--bins"]
        );
        let all = CrossArgs {
            packages: vec![],
            libs_only: true,
            ..args
        };
        assert_eq!(
            selection("x86_64-unknown-freebsd", &all),
            ["--workspace", "--lib", "--bins"]
        );
        assert!(
            workspace_packages()
                .unwrap()
                .contains(&"upcase-udp".to_string())
        );
    }
}
