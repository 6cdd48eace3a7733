//! What `upcase-server` and `upcase-client` share as command-line programs:
//! argument errors in one line, logging to stderr ([`Verbosity`]: `-v`/`-q`,
//! text or JSON, coloured or not), the `error: ...` line and exit status
//! every failure ends in; and the value parsers ([`parse`]) their command
//! lines share.
#![forbid(unsafe_code)]

mod logging;
pub mod parse;

pub use logging::{ColorChoice, LogFormat, Verbosity};

#[cfg(test)]
#[path = "../build_version.rs"]
mod build_version;

use std::process::ExitCode;

use clap::Parser;

/// The version `--version` prints and reports carry: the package version,
/// with the commit and its date when built from a git checkout
/// (`0.1.0 (2a75bd3c1f00 2026-11-02)`), else the package version alone.
/// Each program names it in its command: `#[command(version = upcase_cli::VERSION)]`.
pub const VERSION: &str = env!("UPCASE_VERSION");

/// When `at` was, in RFC 3339 at the second in UTC (`2026-11-02T10:11:12Z`),
/// for reports a script reads.
pub fn timestamp(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Exit status of a command line that could not be parsed.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of any other failure, unless the program says otherwise.
pub const EXIT_FAILURE: u8 = 1;

/// Parses the command line; `--help` and `--version` print and exit 0, and
/// a bad command line exits 2 after one line `error: ...` on stderr.
pub fn parse_args<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => exit_on_clap_error(&err),
    }
}

/// [`parse_args`], also returning clap's matches, so that a program can
/// tell a value given on the command line from one read from the
/// environment (`ArgMatches::value_source`).
pub fn parse_args_and_matches<T: Parser>() -> (T, clap::ArgMatches) {
    let mut command = T::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|matches| {
            T::from_arg_matches(&matches)
                .map(|args| (args, matches))
                .map_err(|err| err.format(&mut T::command()))
        });
    match parsed {
        Ok(parsed) => parsed,
        Err(err) => exit_on_clap_error(&err),
    }
}

fn exit_on_clap_error(err: &clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        std::process::exit(if err.use_stderr() {
            i32::from(EXIT_USAGE)
        } else {
            0
        });
    }
    eprintln!("{}", one_line(&err.render().to_string()));
    std::process::exit(i32::from(EXIT_USAGE));
}

/// clap's message is several lines (the error, a usage line, a tip); the
/// first line is the error, the rest are joined so the whole stays one line.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("error: invalid command line");
    let first = if first.starts_with("error:") {
        first.to_string()
    } else {
        format!("error: {first}")
    };
    let usage = lines.find(|l| l.starts_with("Usage:"));
    match usage {
        Some(usage) => format!("{first} ({}; see --help)", usage.to_lowercase()),
        None => format!("{first} (see --help)"),
    }
}

/// Ends the program: 0 on success; otherwise one line `error: ...` with the
/// whole context chain on stderr and the status `code_of` gives the error.
pub fn finish(result: anyhow::Result<()>, code_of: impl Fn(&anyhow::Error) -> u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line_chain(&err));
            ExitCode::from(code_of(&err))
        }
    }
}

/// `{:#}` of an anyhow error joins its chain with ": "; a cause with a line
/// break (a peer's text in an OS message, say) must not break the line.
fn one_line_chain(err: &anyhow::Error) -> String {
    format!("{err:#}").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: invalid value 'x' for '--port <PORT>': invalid digit found in string\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "error: invalid value 'x' for '--port <PORT>': invalid digit found in string (see --help)"
        );
        let with_usage = "error: unexpected argument '--nope' found\n\nUsage: upcase-server [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(with_usage),
            "error: unexpected argument '--nope' found (usage: upcase-server [options]; see --help)"
        );
    }

    #[test]
    fn error_chains_stay_on_one_line() {
        let err = anyhow::anyhow!("line one\nline two").context("cannot bind 127.0.0.1:1");
        assert_eq!(
            one_line_chain(&err),
            "cannot bind 127.0.0.1:1: line one line two"
        );
    }

    #[test]
    fn the_version_names_the_commit_in_a_checkout_and_only_the_version_elsewhere() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(here)
            .output()
            .expect("git runs");
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert_eq!(head.len(), 12, "this test runs in a git checkout");
        let described = build_version::describe(here, "9.9.9");
        assert!(
            described.version.starts_with(&format!("9.9.9 ({head} ")),
            "{}",
            described.version
        );
        assert!(!described.watch.is_empty(), "HEAD is watched");
        assert!(VERSION.contains(&head[..7]), "built from {head}: {VERSION}");
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");

        // As from a tarball: no repository around the manifest.
        let tarball =
            std::env::temp_dir().join(format!("upcase-cli-version-{}", std::process::id()));
        std::fs::create_dir_all(&tarball).expect("temp dir");
        std::fs::write(tarball.join("Cargo.toml"), "").expect("manifest");
        let described = build_version::describe(&tarball, "9.9.9");
        let _ = std::fs::remove_dir_all(&tarball);
        assert_eq!(described.version, "9.9.9");
        assert!(described.watch.is_empty());
    }

    #[test]
    fn timestamps_are_rfc3339_seconds_in_utc() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_790_000_000_500);
        assert_eq!(timestamp(at), "2026-09-21T14:13:20Z");
    }
}
