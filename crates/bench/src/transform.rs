//! The transform alone: the proto crate's `transform` benchmark (built in
//! release by `cargo bench`, which also writes the inputs) against Python's
//! `decode().upper().encode()` on the same files.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::report::{TransformLine, ratio};

/// One `TRANSFORM input=NAME bytes=N ... gbps=G` line.
#[derive(Debug, PartialEq)]
pub(crate) struct Measured {
    pub(crate) input: String,
    pub(crate) bytes: u64,
    pub(crate) gbps: f64,
}

pub(crate) fn parse_lines(stdout: &str) -> anyhow::Result<Vec<Measured>> {
    let mut measured = Vec::new();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("TRANSFORM ")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("no {key}= in TRANSFORM line {line:?}"))
        };
        measured.push(Measured {
            input: field("input")?.to_string(),
            bytes: field("bytes")?.parse().context("bytes= is not a count")?,
            gbps: field("gbps")?.parse().context("gbps= is not a number")?,
        });
    }
    if measured.is_empty() {
        bail!("no TRANSFORM line in the output");
    }
    Ok(measured)
}

/// Runs both sides for `seconds` per input; `data_dir` receives the inputs.
pub(crate) fn run(
    cargo: &OsStr,
    root: &Path,
    release: bool,
    data_dir: &Path,
    seconds: f64,
    python: Option<&Path>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<TransformLine>> {
    eprintln!("bench: transform micro-benchmark (cargo bench -p upcase-proto --bench transform)");
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["bench", "-p", "upcase-proto", "--bench", "transform"])
        // A smoke run reuses the debug build of the tests instead of building
        // the dev-dependencies again with optimisations.
        .args(if release {
            &[][..]
        } else {
            &["--profile", "dev"][..]
        })
        .arg("--")
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench --bench transform failed ({})", out.status);
    }
    let rust = parse_lines(&String::from_utf8_lossy(&out.stdout))?;
    let python_results = match python {
        Some(python) => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/transform_bench.py");
            let mut command = Command::new(python);
            command
                .arg(&script)
                .arg("--seconds")
                .arg(seconds.to_string());
            for m in &rust {
                command.arg(data_dir.join(format!("{}.txt", m.input)));
            }
            let out = command
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run {}", script.display()))?;
            if !out.status.success() {
                bail!("{} failed ({})", script.display(), out.status);
            }
            parse_lines(&String::from_utf8_lossy(&out.stdout))?
        }
        None => {
            notes.push("no Python: the transform has no Python baseline".into());
            Vec::new()
        }
    };
    Ok(rust
        .into_iter()
        .map(|r| {
            let py = python_results
                .iter()
                .find(|p| p.input == r.input)
                .map(|p| p.gbps);
            TransformLine {
                ratio: ratio(Some(r.gbps), py),
                input: r.input,
                bytes: r.bytes,
                rust_gbps: r.gbps,
                python_gbps: py,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_lines_are_read() {
        let out = "Running\nTRANSFORM input=ascii bytes=65536 iterations=9 seconds=1.000 gbps=18.5\n\
                   TRANSFORM input=mixed bytes=65536 iterations=3 seconds=1.000 gbps=0.1\n";
        let lines = parse_lines(out).unwrap();
        assert_eq!(
            lines[0],
            Measured {
                input: "ascii".into(),
                bytes: 65536,
                gbps: 18.5
            }
        );
        assert_eq!(lines[1].input, "mixed");
        assert!(parse_lines("nothing").is_err());
        assert!(parse_lines("TRANSFORM input=x bytes=1").is_err());
    }
}
