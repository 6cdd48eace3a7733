//! The version string `--version` prints, worked out at build time (by
//! `build.rs`, and by this crate's tests): the package version, and the
//! commit and its date when the crate is built from a git checkout of this
//! repository, as `rustc --version` prints them: `0.1.0 (2a75bd3c1f00
//! 2026-11-02)`. Built from a tarball, or from a copy inside some other
//! repository, it is the package version alone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the build knows about where it came from.
pub(crate) struct Described {
    /// The version string.
    pub(crate) version: String,
    /// Files whose change means another commit is checked out: the build
    /// script is run again when one of them changes.
    pub(crate) watch: Vec<PathBuf>,
}

/// The version of the package `pkg_version` whose manifest is in `dir`.
pub(crate) fn describe(dir: &Path, pkg_version: &str) -> Described {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| text.to_string())
    };
    let plain = || Described {
        version: pkg_version.to_string(),
        watch: Vec::new(),
    };
    // A crate copied into another project's repository is not that
    // project's commit: only a checkout that tracks this manifest counts.
    if git(&["ls-files", "--error-unmatch", "Cargo.toml"]).is_none() {
        return plain();
    }
    let (Some(commit), Some(date)) = (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cs", "HEAD"]),
    ) else {
        return plain();
    };
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
        watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    Described {
        version: format!("{pkg_version} ({commit} {date})"),
        // Only files that exist: cargo runs a build script again on every
        // build while a file it watches is missing.
        watch: watch
            .into_iter()
            .flatten()
            .map(|path| dir.join(path))
            .filter(|path| path.exists())
            .collect(),
    }
}
