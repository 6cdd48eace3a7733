//! `cargo xtask ci`: the checks a change must pass, run in order with their
//! output passed through, stopping at the first that fails.

use std::time::Instant;

use anyhow::{Context, bail};

use crate::workspace;

/// One check: a cargo command run from the workspace root.
struct Step {
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

impl Step {
    const fn cargo(args: &'static [&'static str]) -> Step {
        Step { args, env: &[] }
    }

    fn display(&self) -> String {
        let env = self.env.iter().map(|(k, v)| format!("{k}={v:?} "));
        format!("{}cargo {}", env.collect::<String>(), self.args.join(" "))
    }
}

/// The checks, cheapest first so a formatting slip fails in seconds. A new
/// check is one more line; `xtask` steps work because steps run from the root,
/// where the alias is defined.
const STEPS: &[Step] = &[
    Step::cargo(&["fmt", "--all", "--", "--check"]),
    // With the Wine test's feature, whose file nothing else builds here
    // (`cargo xtask wine` runs it, without clippy).
    Step::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        "upcase-e2e/wine",
        "--",
        "-D",
        "warnings",
    ]),
    // The e2e tests start the real binaries, which `cargo test` builds only
    // for a package's own tests: build them all first.
    Step::cargo(&["build", "--workspace", "--bins"]),
    Step::cargo(&["test", "--workspace"]),
    // The end-to-end suite again, every server on the portable UDP path
    // (the one other systems take), so both paths pass the same tests; the
    // one test whose answer differs (GRO, which the portable path never
    // turns on) reads the variable too.
    Step {
        args: &["test", "-p", "upcase-e2e"],
        env: &[("UPCASE_IO", "portable")],
    },
    Step::cargo(&["xtask", "fuzz", "--seconds", "20"]),
    Step::cargo(&["xtask", "soak", "--seconds", "10"]),
    // After soak, whose release server it packages as built; the client is
    // the only release build it adds.
    Step::cargo(&["xtask", "dist"]),
    Step::cargo(&["xtask", "bench", "--quick"]),
    Step {
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
    },
    // The other systems, last: the slowest on a fresh machine (Debian's
    // Rust, MinGW and Wine installed with apt-get, std built per target),
    // seconds once their target directories are warm.
    Step::cargo(&["xtask", "cross"]),
    Step::cargo(&["xtask", "wine"]),
];

pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let total = STEPS.len();
    let mut times = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        let shown = step.display();
        println!("==> ci step {}/{total}: {shown}", i + 1);
        let step_started = Instant::now();
        let status = workspace::cargo()
            .args(step.args)
            .envs(step.env.iter().copied())
            .status()
            .with_context(|| format!("cannot start step {shown:?}"))?;
        let seconds = step_started.elapsed().as_secs();
        println!("==> ci step {}/{total} took {seconds}s", i + 1);
        times.push((shown, seconds));
        if !status.success() {
            print_times(&times);
            bail!("step {:?} failed ({status})", times[i].0);
        }
    }
    print_times(&times);
    println!(
        "==> ci passed: {total} steps in {}s",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// The steps run and how long each took, at the end, passed or failed: the
/// time budget (90 minutes in CI) is read off this table.
fn print_times(times: &[(String, u64)]) {
    println!("==> ci times:");
    for (shown, seconds) in times {
        println!("{seconds:>6}s  {shown}");
    }
    let sum: u64 = times.iter().map(|(_, s)| s).sum();
    println!("{sum:>6}s  in all");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_shown_as_typed() {
        let shown: Vec<String> = STEPS.iter().map(Step::display).collect();
        assert_eq!(shown[0], "cargo fmt --all -- --check");
        assert!(
            shown.contains(&"RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps".into())
        );
        // The other systems' checks come last, the slowest on a fresh machine.
        assert_eq!(
            shown[shown.len() - 2..],
            ["cargo xtask cross", "cargo xtask wine"]
        );
    }
}
