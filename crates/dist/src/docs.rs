//! The man pages and shell completions, generated from the programs' own
//! clap definitions (`upcase_server::Args`, `upcase_client::Args`): what
//! `--help` says, they say, so they never drift from it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

/// The shells completions are written for.
pub(crate) const SHELLS: [Shell; 4] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell];

/// One program of the package: its name and its command line.
#[derive(Clone, Copy)]
pub(crate) struct Program {
    pub(crate) name: &'static str,
    pub(crate) command: fn() -> Command,
}

pub(crate) const PROGRAMS: [Program; 2] = [
    Program {
        name: "upcase-server",
        command: upcase_server::Args::command,
    },
    Program {
        name: "upcase-client",
        command: upcase_client::Args::command,
    },
];

/// What each page says beyond the options: where the rest is.
fn see_also(program: &str) -> Vec<(&'static str, &'static str)> {
    let mut lines = match program {
        "upcase-server" => vec![
            ("upcase-client(1)", "the client, and its bench subcommand"),
            (
                "/usr/lib/systemd/system/upcase.socket, upcase.service",
                "the server as a socket-activated system service: systemctl enable --now upcase.socket",
            ),
            ("systemd.socket(5), systemd.exec(5)", "what those units say"),
        ],
        _ => vec![("upcase-server(1)", "the server")],
    };
    lines.push(("/usr/share/doc/upcase/", "the licences (MIT OR Apache-2.0)"));
    lines
}

/// A man page written, and the long options it must show.
pub(crate) struct Page {
    pub(crate) path: PathBuf,
    pub(crate) options: Vec<String>,
}

/// Writes `NAME.1` for each program and `NAME-SUB.1` for each of its
/// subcommands (`upcase-client-bench.1`) into `dir`.
pub(crate) fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<Page>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = Vec::new();
    for program in PROGRAMS {
        // Built, so that subcommands know their full names (upcase-client-bench).
        let mut command = (program.command)();
        command.build();
        let extra = see_also(program.name);
        // The program's version: a subcommand has none of its own.
        let date = commit_date(command.get_version().unwrap_or_default());
        for cmd in std::iter::once(&command).chain(command.get_subcommands()) {
            let man = Man::new(cmd.clone())
                .source(format!("upcase {}", env!("CARGO_PKG_VERSION")))
                .date(&date);
            let path = dir.join(man.get_filename());
            let mut text = Vec::new();
            man.render(&mut text)
                .and_then(|()| see_also_section(&extra).to_writer(&mut text))
                .with_context(|| format!("cannot render {}", path.display()))?;
            fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            pages.push(Page {
                path,
                options: long_options(cmd),
            });
        }
    }
    Ok(pages)
}

/// The commit's date in a version such as `0.1.0 (2a75bd3c1f00 2026-11-02)`
/// (built from git), else nothing.
fn commit_date(version: &str) -> String {
    version
        .strip_suffix(')')
        .and_then(|v| v.rsplit(' ').next())
        .filter(|date| date.len() == 10 && date.as_bytes()[4] == b'-')
        .unwrap_or_default()
        .to_string()
}

fn see_also_section(lines: &[(&str, &str)]) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    for (what, why) in lines {
        roff.control("TP", [] as [&str; 0]);
        roff.text([roman(*what)]);
        roff.text([roman(*why)]);
    }
    roff
}

/// Writes each program's completion script for each of [`SHELLS`] into
/// `dir` (`upcase-client.bash`, `_upcase-client`, `upcase-client.fish`,
/// `_upcase-client.ps1`); returns them as (program, shell, path).
pub(crate) fn write_completions(dir: &Path) -> anyhow::Result<Vec<(Program, Shell, PathBuf)>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for program in PROGRAMS {
        for shell in SHELLS {
            let mut command = (program.command)();
            let path = clap_complete::generate_to(shell, &mut command, program.name, dir)
                .with_context(|| {
                    format!("cannot write the {shell} completion of {}", program.name)
                })?;
            written.push((program, shell, path));
        }
    }
    Ok(written)
}

/// A long option of `program` (not --help or --version), to ask a shell
/// to complete from its first letters.
pub(crate) fn probe_option(program: Program) -> Option<String> {
    let command = (program.command)();
    command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .find(|long| !matches!(*long, "help" | "version") && long.len() >= 4)
        .map(|long| format!("--{long}"))
}

/// Every long option of `command` (its subcommands have their own pages).
fn long_options(command: &Command) -> Vec<String> {
    command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .map(|long| format!("--{long}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_and_subcommand_gets_a_page_naming_its_options() {
        let dir = crate::test_dir("man");
        let pages = write_man_pages(&dir).expect("pages");
        let names: Vec<_> = pages
            .iter()
            .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "upcase-server.1",
                "upcase-client.1",
                "upcase-client-bench.1",
                "upcase-client-health.1"
            ]
        );
        let server = fs::read_to_string(&pages[0].path).expect("server page");
        assert!(server.contains(".TH upcase-server 1"));
        assert!(pages[0].options.contains(&"--port".to_string()));
        for option in &pages[0].options {
            // roff writes a hyphen in an option as \-.
            let roffed = option.replace('-', "\\-");
            assert!(server.contains(&roffed), "{option} missing from the page");
        }
        assert!(server.contains(".SH \"SEE ALSO\"") || server.contains(".SH SEE ALSO"));
    }

    #[test]
    fn four_shells_times_two_programs_get_a_completion() {
        let dir = crate::test_dir("completions");
        let written = write_completions(&dir).expect("completions");
        let mut names: Vec<_> = written
            .iter()
            .map(|(_, _, p)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "_upcase-client",
                "_upcase-client.ps1",
                "_upcase-server",
                "_upcase-server.ps1",
                "upcase-client.bash",
                "upcase-client.fish",
                "upcase-server.bash",
                "upcase-server.fish",
            ]
        );
    }

    #[test]
    fn the_date_of_a_page_is_its_commit_date() {
        assert_eq!(commit_date("0.1.0 (2a75bd3c1f00 2026-11-02)"), "2026-11-02");
        assert_eq!(commit_date("0.1.0"), "");
    }

    #[test]
    fn each_program_has_an_option_to_complete() {
        for program in PROGRAMS {
            let probe = probe_option(program).expect("a long option");
            assert!(probe.starts_with("--") && probe.len() >= 6, "{probe}");
        }
    }
}
