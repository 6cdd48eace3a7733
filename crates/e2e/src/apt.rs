//! Debian packages a chore finds missing (dist's tools, the cross
//! toolchains, Wine), installed with apt-get: as root only, as CI runs it;
//! otherwise an error that names the command to run.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Installs `packages` (described as `what` in the messages) with apt-get,
/// without their recommendations.
pub fn install(what: &str, packages: &[&str]) -> anyhow::Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!(
            "{what} is needed ({list}): run this as root, or \
             `apt-get install --no-install-recommends {list}`"
        );
    }
    println!("==> installing {what} with apt-get: {list}");
    let started = Instant::now();
    apt_get(&["update", "-q"])?;
    let mut install = vec!["install", "-q", "-y", "--no-install-recommends"];
    install.extend(packages);
    apt_get(&install)?;
    println!("==> installed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(unix)]
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// No apt-get off Unix.
#[cfg(not(unix))]
fn is_root() -> bool {
    false
}
