//! `cargo xtask dist`: what an operator installs, made and checked.
//!
//! Writes into `<target dir>/dist/`: `man/` with the man pages (and their
//! `.gz`), `completions/` with the bash, zsh, fish and PowerShell
//! completions, all generated from the programs' clap definitions so they
//! never drift from `--help` (`docs`); and `upcase_<version>-1_<arch>.deb`,
//! made by cargo-deb from the release binaries, with both programs, the
//! pages, the completions, the systemd units of `packaging/systemd/` and
//! the licences (`deb`). Then reads each as its user's tool would and
//! fails on the first that does not work (`check`).
//!
//! A crate of its own, not a module of xtask: the pages and completions
//! are part of the product, made from the programs' own `Args`, so this
//! crate depends on the server's and the client's libraries, which xtask
//! has no other reason to; and the checks have tests of their own.

#![forbid(unsafe_code)]

mod check;
mod deb;
mod docs;
mod host;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// The version the programs and the package carry: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Makes and checks everything in `target_dir/dist`, for the workspace at
/// `root`.
pub fn run(root: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let out = target_dir.join("dist");
    host::ensure_tools()?;
    deb::ensure_cargo_deb(&cargo)?;
    // What a run leaves is exactly what it made.
    match fs::remove_dir_all(&out) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot empty {}", out.display()));
        }
        _ => {}
    }
    let mut report = Vec::new();

    println!("==> man pages and completions from the clap definitions");
    let pages = docs::write_man_pages(&out.join("man"))?;
    for page in &pages {
        check::man_page(&page.path, &page.options)?;
        report.push(format!("man -l {}: renders", page.path.display()));
    }
    for (program, shell, path) in docs::write_completions(&out.join("completions"))? {
        let outcome = match check::completion(program, shell, &path)? {
            check::Completion::Completed(how) => how,
            check::Completion::Unchecked(why) => format!("unchecked: {why}"),
        };
        report.push(format!("{shell} {}: {outcome}", path.display()));
    }

    deb::build_release(&cargo, root)?;
    let paths: Vec<_> = pages.into_iter().map(|page| page.path).collect();
    deb::gzip_pages(&paths)?;
    let deb = deb::package(&cargo, root, &out)?;
    println!("==> checking {}", deb.display());
    report.extend(check::package(&deb, &out.join("check"), VERSION)?);
    report.push("dpkg-deb -c and -I: every promised path, sane metadata".into());

    for line in &report {
        println!("    {line}");
    }
    println!(
        "==> dist passed in {}s: {}",
        started.elapsed().as_secs(),
        deb.display()
    );
    Ok(())
}

/// A new, empty directory for one test, removed when the test is done.
#[cfg(test)]
struct TestDir(std::path::PathBuf);

#[cfg(test)]
fn test_dir(name: &str) -> TestDir {
    let dir = std::env::temp_dir().join(format!("upcase-dist-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test directory");
    TestDir(dir)
}

#[cfg(test)]
impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
