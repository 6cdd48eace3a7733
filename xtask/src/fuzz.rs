//! `cargo xtask fuzz [--seconds N] [--target NAME]`: runs every cargo-fuzz
//! target in `fuzz/` for N seconds each and fails on any crash.
//!
//! The fuzz project is a workspace of its own (libFuzzer needs nightly), so
//! it is run with the rustup proxy's `cargo +nightly`, not the cargo that
//! started xtask. New inputs go to `fuzz/corpus-work/<target>/` (ignored by
//! git); the committed seeds in `fuzz/corpus/<target>/` are only read.
//! Crashing inputs land in `fuzz/artifacts/<target>/`. With
//! `CARGO_TARGET_DIR` set, the fuzz build goes to its `fuzz/` subdirectory,
//! apart from the stable toolchain's artifacts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use std::{env, fs};

use anyhow::{Context, bail};

use crate::workspace;

/// Every target in `fuzz/Cargo.toml`, in the order they run.
pub(crate) const TARGETS: &[&str] = &[
    "transform",
    "reply_len",
    "stream",
    "client_replies",
    "gro_control",
    "raw_addr",
    "proxy_header",
];

/// AddressSanitizer on, for every target: `gro_control` and `raw_addr` run
/// crates/udp's `unsafe` decoders, and the transform's ASCII prefix is an
/// `unsafe` AVX2 call. Debug assertions (overflow checks) stay on.
const BUILD_FLAGS: &[&str] = &["--sanitizer", "address", "--debug-assertions"];

#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// How long each target runs
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    /// Run only this target (repeatable) [default: all]
    #[arg(long = "target", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

/// What one target's run gave.
struct Outcome {
    target: String,
    execs: u64,
    seconds: f64,
    corpus: usize,
}

pub(crate) fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let fuzz_dir = workspace::root().join("fuzz");
    ensure_cargo_fuzz()?;
    println!("==> building the fuzz targets (nightly)");
    let status = nightly(&fuzz_dir)
        .args(["fuzz", "build"])
        .args(build_flags())
        .status()
        .context("cannot run cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(run_target(&fuzz_dir, target, args.seconds)?);
    }
    println!(
        "\n{:<16} {:>8} {:>14} {:>10} {:>8}",
        "target", "seconds", "execs", "execs/s", "corpus"
    );
    for o in &outcomes {
        println!(
            "{:<16} {:>8.0} {:>14} {:>10.0} {:>8}",
            o.target,
            o.seconds,
            o.execs,
            o.execs as f64 / o.seconds.max(1e-9),
            o.corpus
        );
    }
    let total: u64 = outcomes.iter().map(|o| o.execs).sum();
    println!(
        "==> fuzz passed: {} targets, {total} executions, no crash",
        outcomes.len()
    );
    Ok(())
}

/// [`BUILD_FLAGS`], and `--target-dir` under `CARGO_TARGET_DIR` when set:
/// the same for `build` and `run`, so `run` finds what `build` made.
fn build_flags() -> Vec<OsString> {
    let mut flags: Vec<OsString> = BUILD_FLAGS.iter().map(OsString::from).collect();
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        flags.push("--target-dir".into());
        let dir = std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(&dir));
        flags.push(dir.join("fuzz").into());
    }
    flags
}

/// `cargo +nightly` through the rustup proxy on PATH, from `dir`, without
/// the toolchain choice the stable cargo that runs xtask passes down.
fn nightly(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("+nightly")
        .current_dir(dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    command
}

/// Installs cargo-fuzz from crates.io when `cargo +nightly fuzz` is missing.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = nightly(&workspace::root())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("==> cargo-fuzz is missing: cargo install cargo-fuzz --locked");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let work = fuzz_dir.join("corpus-work").join(target);
    let seeds = fuzz_dir.join("corpus").join(target);
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let log_path = fuzz_dir.join("corpus-work").join(format!("{target}.log"));
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    println!(
        "==> fuzzing {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let status = nightly(fuzz_dir)
        .args(["fuzz", "run"])
        .args(build_flags())
        .arg(target)
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // An input that takes this long is a hang, reported as a crash.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run cargo +nightly fuzz run {target}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}); crashing inputs are in {}; the end of its log:\n{}",
            fuzz_dir.join("artifacts").join(target).display(),
            tail(&text, 40)
        );
    }
    let execs = final_stat(&text, "stat::number_of_executed_units")
        .with_context(|| format!("no execution count in {}", log_path.display()))?;
    Ok(Outcome {
        target: target.to_string(),
        execs,
        seconds: elapsed.min(seconds as f64 + 1.0),
        corpus: count_files(&work) + count_files(&seeds),
    })
}

/// `stat::NAME: N` from libFuzzer's final statistics.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn count_files(dir: &PathBuf) -> usize {
    fs::read_dir(dir).map_or(0, |entries| entries.flatten().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_count_is_read_from_the_final_stats() {
        let log = "#2\tINITED\nDone 941478 runs in 11 second(s)\nstat::number_of_executed_units: 941478\nstat::peak_rss_mb: 50\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units"),
            Some(941_478)
        );
        assert_eq!(final_stat(log, "stat::peak_rss_mb"), Some(50));
        assert_eq!(final_stat("crash", "stat::number_of_executed_units"), None);
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        let fuzz_dir = workspace::root().join("fuzz");
        let manifest = fs::read_to_string(fuzz_dir.join("Cargo.toml")).expect("fuzz manifest");
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} not in the manifest"
            );
            assert!(
                fuzz_dir
                    .join("fuzz_targets")
                    .join(format!("{target}.rs"))
                    .exists()
            );
            assert!(
                count_files(&fuzz_dir.join("corpus").join(target)) > 0,
                "{target} has no seeds"
            );
        }
    }
}
