//! `cargo xtask cluster`: issue 14's deployments, printed. Builds the
//! binaries, then runs the kit's cluster checks (`upcase_e2e::cluster`,
//! the same code as `cargo test -p upcase-e2e --test cluster`) in network
//! namespaces: behind nftables and behind nginx, the spread, a rolling
//! restart, a kill and a drain under load; `--rate-limit` through
//! nftables and through nginx's PROXY protocol; what stale conntrack entries do. Needs root; fails with the
//! reason where namespaces cannot be made (the tests skip instead).

use std::fmt::Display;

use anyhow::{Context, bail, ensure};
use upcase_e2e::cluster::{self, Checked, Kind};
use upcase_e2e::netns;
use upcase_e2e::network::Binaries;

use crate::workspace;

pub(crate) fn run() -> anyhow::Result<()> {
    if let Some(why) = netns::unavailable() {
        bail!("{why}");
    }
    println!("==> building the binaries");
    let status = workspace::cargo()
        .args(["build", "-p", "upcase-server", "-p", "upcase-client"])
        .status()
        .context("cannot run cargo")?;
    ensure!(status.success(), "cargo build failed ({status})");
    let bins = Binaries::in_dir(&workspace::target_dir()?.join("debug"));
    let mut failures = Vec::new();
    for kind in [Kind::Nftables, Kind::Nginx] {
        failures.extend(shown(cluster::run(kind, &bins)?));
    }
    for kind in [Kind::Nftables, Kind::Nginx] {
        failures.extend(shown(cluster::rate_limit(kind, &bins)?));
    }
    failures.extend(shown(cluster::stale_conntrack(&bins)?));
    ensure!(
        failures.is_empty(),
        "{} bars missed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// Prints `report` and returns the bars it missed.
fn shown(report: impl Checked + Display) -> Vec<String> {
    println!("{report}");
    report.failures()
}
