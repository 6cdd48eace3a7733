//! The checks: each thing dist made, read by the tool a user would read it
//! with. A man page is rendered by `man -l`, a completion loaded by its
//! shell and asked to complete, the package listed and described by
//! dpkg-deb, its binaries run, and its unit files verified by
//! systemd-analyze as extracted from it. Each check fails with what it saw.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail, ensure};
use clap_complete::Shell;

use crate::docs::{self, Program};
use crate::host;

/// Every path the package promises, with its mode as `dpkg-deb -c` shows it.
pub(crate) const PROMISED: &[(&str, &str)] = &[
    ("./usr/bin/upcase-server", "-rwxr-xr-x"),
    ("./usr/bin/upcase-client", "-rwxr-xr-x"),
    ("./usr/share/man/man1/upcase-server.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/upcase-client.1.gz", "-rw-r--r--"),
    (
        "./usr/share/man/man1/upcase-client-bench.1.gz",
        "-rw-r--r--",
    ),
    (
        "./usr/share/man/man1/upcase-client-health.1.gz",
        "-rw-r--r--",
    ),
    (
        "./usr/share/bash-completion/completions/upcase-server",
        "-rw-r--r--",
    ),
    (
        "./usr/share/bash-completion/completions/upcase-client",
        "-rw-r--r--",
    ),
    (
        "./usr/share/zsh/vendor-completions/_upcase-server",
        "-rw-r--r--",
    ),
    (
        "./usr/share/zsh/vendor-completions/_upcase-client",
        "-rw-r--r--",
    ),
    (
        "./usr/share/fish/vendor_completions.d/upcase-server.fish",
        "-rw-r--r--",
    ),
    (
        "./usr/share/fish/vendor_completions.d/upcase-client.fish",
        "-rw-r--r--",
    ),
    ("./usr/lib/systemd/system/upcase.service", "-rw-r--r--"),
    ("./usr/lib/systemd/system/upcase.socket", "-rw-r--r--"),
    ("./usr/share/doc/upcase/LICENSE-MIT", "-rw-r--r--"),
    ("./usr/share/doc/upcase/LICENSE-APACHE", "-rw-r--r--"),
    ("./usr/share/doc/upcase/copyright", "-rw-r--r--"),
];

/// The worst `systemd-analyze security` exposure upcase.service may have
/// (0 is best, 10 worst; it scores 1.2 with the hardening it has): a
/// hardening line removed or weakened shows here.
const MAX_EXPOSURE: f64 = 2.0;

fn run(command: &mut Command) -> anyhow::Result<Output> {
    command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `man -l` renders `page` at 80 columns without a warning, with the NAME
/// and SYNOPSIS sections and every one of `options`.
pub(crate) fn man_page(page: &Path, options: &[String]) -> anyhow::Result<()> {
    let out = run(Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8"))?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {} failed ({}): {stderr}",
        page.display(),
        out.status
    );
    page_problems(&text(&out.stdout), options).map_or(Ok(()), |problem| {
        bail!("man -l {}: {problem}", page.display())
    })
}

/// What is wrong with a rendered page, if anything.
fn page_problems(rendered: &str, options: &[String]) -> Option<String> {
    for heading in ["NAME", "SYNOPSIS", "OPTIONS"] {
        if !rendered.lines().any(|line| line == heading) {
            return Some(format!("no {heading} section in:\n{rendered}"));
        }
    }
    let missing: Vec<&str> = options
        .iter()
        .map(String::as_str)
        .filter(|option| !rendered.contains(option))
        .collect();
    (!missing.is_empty()).then(|| format!("options missing: {}", missing.join(" ")))
}

/// What happened to one completion script.
pub(crate) enum Completion {
    /// The shell loaded it and completed the probe option from its prefix.
    Completed(String),
    /// Not checked, and why.
    Unchecked(String),
}

/// Loads `path` in `shell` and asks it to complete the first letters of one
/// of `program`'s options; the completions must include the option.
pub(crate) fn completion(
    program: Program,
    shell: Shell,
    path: &Path,
) -> anyhow::Result<Completion> {
    let name = program.name;
    let option = docs::probe_option(program).context("no option to complete")?;
    let prefix = &option[..5];
    let file = path.display();
    let (binary, script) = match shell {
        Shell::Bash => (
            "bash",
            format!(
                "source {file} && spec=$(complete -p {name}) && [[ $spec =~ -F\\ ([^ ]+) ]] && \
                 COMP_WORDS=({name} {prefix}) && COMP_CWORD=1 && \
                 \"${{BASH_REMATCH[1]}}\" {name} {prefix} {name} && printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ),
        ),
        Shell::Zsh => (
            "zsh",
            format!(
                "autoload -Uz compinit && compinit -u -D && source {file} && \
                 print -r -- ${{_comps[{name}]}}"
            ),
        ),
        Shell::Fish => (
            "fish",
            format!("source {file}; and complete -C '{name} {prefix}'"),
        ),
        _ => {
            // No PowerShell in Debian: read what can be read without it.
            let body = fs::read_to_string(path).with_context(|| format!("cannot read {file}"))?;
            ensure!(
                body.contains("Register-ArgumentCompleter") && body.contains(&option),
                "{file} is no PowerShell completion of {name}"
            );
            return Ok(Completion::Unchecked(
                "no PowerShell here: read, not run".into(),
            ));
        }
    };
    if host::find(binary).is_none() {
        return Ok(Completion::Unchecked(format!("{binary} is not installed")));
    }
    let mut command = Command::new(binary);
    if shell == Shell::Zsh {
        command.arg("-f");
    }
    if shell == Shell::Fish {
        command.arg("--no-config");
    }
    let out = run(command.arg("-c").arg(&script))?;
    let stdout = text(&out.stdout);
    let expected = if shell == Shell::Zsh {
        format!("_{name}")
    } else {
        option.clone()
    };
    ensure!(
        out.status.success()
            && stdout
                .lines()
                .any(|l| l.split('\t').next() == Some(&expected)),
        "{binary} with {file} ({}) did not give {expected}:\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    let shown = if shell == Shell::Zsh {
        format!("compinit registers {expected}")
    } else {
        format!("{prefix} -> {expected}")
    };
    Ok(Completion::Completed(shown))
}

/// Checks the package at `deb`, unpacking it under `work`; returns lines
/// for the summary.
pub(crate) fn package(deb: &Path, work: &Path, version: &str) -> anyhow::Result<Vec<String>> {
    let listing = dpkg_deb("-c", deb)?;
    if let Some(problem) = listing_problems(&listing) {
        bail!("dpkg-deb -c {}: {problem}", deb.display());
    }
    let arch = text(&run(Command::new("dpkg").arg("--print-architecture"))?.stdout);
    let info = dpkg_deb("-I", deb)?;
    if let Some(problem) = info_problems(&info, &format!("{version}-1"), arch.trim()) {
        bail!("dpkg-deb -I {}: {problem}", deb.display());
    }
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let root = work.join("root");
    let control = work.join("control");
    for (option, dir) in [("-x", &root), ("-e", &control)] {
        let out = run(Command::new("dpkg-deb").arg(option).arg(deb).arg(dir))?;
        ensure!(
            out.status.success(),
            "dpkg-deb {option} failed: {}",
            text(&out.stderr)
        );
    }
    maintainer_scripts(&control)?;
    let mut lines = Vec::new();
    for program in docs::PROGRAMS {
        let binary = root.join("usr/bin").join(program.name);
        let out = run(Command::new(&binary).arg("--version"))?;
        let said = text(&out.stdout);
        ensure!(
            out.status.success() && said.starts_with(&format!("{} {version}", program.name)),
            "{} --version said {said:?}",
            binary.display()
        );
        lines.push(format!("packaged {}", said.trim()));
    }
    let units = work.join("units");
    let exposure = verify_units(
        &root.join("usr/lib/systemd/system"),
        &root,
        &root.join("usr/share/man"),
        &units,
    )?;
    lines.push(format!(
        "systemd-analyze verify: upcase.service and upcase.socket pass; security exposure {exposure} (at most {MAX_EXPOSURE})"
    ));
    Ok(lines)
}

fn dpkg_deb(option: &str, deb: &Path) -> anyhow::Result<String> {
    let out = run(Command::new("dpkg-deb").arg(option).arg(deb))?;
    ensure!(
        out.status.success(),
        "dpkg-deb {option} failed: {}",
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// The promised paths missing from a `dpkg-deb -c` listing, or with
/// another mode.
fn listing_problems(listing: &str) -> Option<String> {
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((*fields.first()?, *fields.get(5)?))
        })
        .collect();
    let problems: Vec<String> = PROMISED
        .iter()
        .filter_map(
            |(path, mode)| match entries.iter().find(|(_, p)| p == path) {
                None => Some(format!("{path} missing")),
                Some((m, _)) if m != mode => Some(format!("{path} is {m}, not {mode}")),
                Some(_) => None,
            },
        )
        .collect();
    (!problems.is_empty()).then(|| format!("{} in:\n{listing}", problems.join("; ")))
}

/// What is wrong with the control fields `dpkg-deb -I` shows, if anything.
fn info_problems(info: &str, version: &str, arch: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim_start().strip_prefix(&format!("{name}: ")))
            .map(str::trim)
    };
    let expected = [
        ("Package", Some("upcase")),
        ("Version", Some(version)),
        ("Architecture", Some(arch)),
        ("Section", Some("net")),
        ("Priority", Some("optional")),
    ];
    let mut problems: Vec<String> = expected
        .iter()
        .filter(|(name, value)| field(name) != *value)
        .map(|(name, value)| format!("{name} is {:?}, not {value:?}", field(name)))
        .collect();
    let [depends, maintainer, description] =
        ["Depends", "Maintainer", "Description"].map(|name| field(name).unwrap_or_default());
    if !depends.contains("libc6") {
        problems.push("Depends does not name libc6".into());
    }
    if !(maintainer.contains('<') && maintainer.ends_with('>')) {
        problems.push("Maintainer is not `Name <address>`".into());
    }
    if description.len() <= 10 {
        problems.push("Description is missing or too short".into());
    }
    (!problems.is_empty()).then(|| format!("{} in:\n{info}", problems.join("; ")))
}

/// Each maintainer script parses, and none starts a unit: the package must
/// install in a container, and an operator enables the socket when ready.
fn maintainer_scripts(control: &Path) -> anyhow::Result<()> {
    for name in ["preinst", "postinst", "prerm", "postrm"] {
        let script = control.join(name);
        let Ok(body) = fs::read_to_string(&script) else {
            continue;
        };
        let out = run(Command::new("sh").arg("-n").arg(&script))?;
        ensure!(
            out.status.success(),
            "{name} does not parse: {}",
            text(&out.stderr)
        );
        ensure!(
            !body.contains("deb-systemd-invoke start"),
            "{name} starts a unit on install:\n{body}"
        );
    }
    Ok(())
}

/// `systemd-analyze verify` on the unit files in `units`, copied into
/// `work` with ExecStart pointing into `root` (verify wants the program to
/// exist, and `--root` would want a whole system), the Documentation=
/// pages looked up in `manpath`. systemd-analyze exits 0 on an unknown key
/// or a bad value, so anything it prints fails too. Returns the exposure
/// score of `systemd-analyze security`.
pub(crate) fn verify_units(
    units: &Path,
    root: &Path,
    manpath: &Path,
    work: &Path,
) -> anyhow::Result<f64> {
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut copies: Vec<PathBuf> = Vec::new();
    for name in ["upcase.service", "upcase.socket"] {
        let from = units.join(name);
        let body =
            fs::read_to_string(&from).with_context(|| format!("cannot read {}", from.display()))?;
        let rooted = format!("ExecStart={}/usr/bin/", root.display());
        let copy = work.join(name);
        fs::write(&copy, body.replace("ExecStart=/usr/bin/", &rooted))
            .with_context(|| format!("cannot write {}", copy.display()))?;
        copies.push(copy);
    }
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .env("MANPATH", manpath))?;
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    ensure!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{said}",
        units.display(),
        out.status
    );
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copies[0]))?;
    let said = text(&out.stdout);
    let exposure = said
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for upcase.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse::<f64>().ok())
        .with_context(|| format!("no exposure score from systemd-analyze security:\n{said}"))?;
    ensure!(
        exposure <= MAX_EXPOSURE,
        "upcase.service's exposure is {exposure}, over {MAX_EXPOSURE}:\n{said}"
    );
    Ok(exposure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir;

    /// A page as `man -l` renders it, with the sections asked for.
    fn rendered(sections: &[&str]) -> String {
        sections
            .iter()
            .map(|s| format!("{s}\n       --port <PORT>\n\n"))
            .collect()
    }

    #[test]
    fn a_page_without_a_section_or_an_option_fails() {
        let options = ["--port".to_string()];
        assert_eq!(
            page_problems(&rendered(&["NAME", "SYNOPSIS", "OPTIONS"]), &options),
            None
        );
        assert!(page_problems(&rendered(&["NAME", "OPTIONS"]), &options).is_some());
        let more = ["--port".to_string(), "--threads".to_string()];
        let problem = page_problems(&rendered(&["NAME", "SYNOPSIS", "OPTIONS"]), &more);
        assert!(problem.is_some_and(|p| p.contains("--threads")));
    }

    #[test]
    fn man_fails_on_a_page_that_is_not_one() {
        let dir = test_dir("bad-page");
        let page = dir.join("broken.1");
        fs::write(&page, "garbage \\fB no title, no sections\n").expect("page");
        let err = man_page(&page, &[]).expect_err("a broken page passed");
        assert!(format!("{err:#}").contains("no NAME section"), "{err:#}");
        assert!(man_page(&dir.join("absent.1"), &[]).is_err());
    }

    #[test]
    fn bash_fails_on_a_broken_or_useless_completion() {
        let dir = test_dir("bad-bash");
        let server = docs::PROGRAMS[0];
        let broken = dir.join("syntax.bash");
        fs::write(&broken, "_f() { if then; }\ncomplete -F _f upcase-server\n").expect("file");
        assert!(completion(server, Shell::Bash, &broken).is_err());
        let useless = dir.join("useless.bash");
        fs::write(
            &useless,
            "_f() { COMPREPLY=(); }\ncomplete -F _f upcase-server\n",
        )
        .expect("file");
        assert!(completion(server, Shell::Bash, &useless).is_err());
        let unregistered = dir.join("unregistered.bash");
        fs::write(&unregistered, "_f() { COMPREPLY=(--bind); }\n").expect("file");
        assert!(completion(server, Shell::Bash, &unregistered).is_err());
    }

    #[test]
    fn the_generated_completions_complete_in_every_shell_installed() {
        let dir = test_dir("completions-check");
        for (program, shell, path) in docs::write_completions(&dir).expect("completions") {
            match completion(program, shell, &path) {
                Ok(Completion::Completed(_)) => {}
                Ok(Completion::Unchecked(why)) => {
                    // Only shells this machine lacks go unchecked; bash is always here.
                    assert_ne!(shell, Shell::Bash, "{why}");
                }
                Err(err) => panic!("{}: {err:#}", path.display()),
            }
        }
    }

    fn listing(skip: Option<&str>, mode_of: Option<(&str, &str)>) -> String {
        PROMISED
            .iter()
            .filter(|(path, _)| Some(*path) != skip)
            .map(|(path, mode)| {
                let mode = mode_of.filter(|(p, _)| p == path).map_or(*mode, |(_, m)| m);
                format!("{mode} 0/0  1234 2026-01-01 00:00 {path}\n")
            })
            .collect()
    }

    #[test]
    fn a_listing_missing_a_promised_path_or_mode_fails() {
        assert_eq!(listing_problems(&listing(None, None)), None);
        let service = "./usr/lib/systemd/system/upcase.service";
        assert!(
            listing_problems(&listing(Some(service), None)).is_some_and(|p| p.contains(service))
        );
        let client = "./usr/bin/upcase-client";
        let not_executable = listing(None, Some((client, "-rw-r--r--")));
        assert!(listing_problems(&not_executable).is_some_and(|p| p.contains("not -rwxr-xr-x")));
    }

    const INFO: &str = " new Debian package, version 2.0.
 Package: upcase
 Version: 0.1.0-1
 Architecture: amd64
 Section: net
 Priority: optional
 Maintainer: the upcase developers <upcase@invalid>
 Depends: libc6 (>= 2.34)
 Description: The upcase UDP server: answers each datagram with its uppercase.
";

    #[test]
    fn metadata_with_a_wrong_field_fails() {
        assert_eq!(info_problems(INFO, "0.1.0-1", "amd64"), None);
        assert!(info_problems(INFO, "0.2.0-1", "amd64").is_some_and(|p| p.contains("Version")));
        assert!(info_problems(INFO, "0.1.0-1", "arm64").is_some());
        let no_depends = INFO.replace(" Depends: libc6 (>= 2.34)\n", "");
        assert!(
            info_problems(&no_depends, "0.1.0-1", "amd64").is_some_and(|p| p.contains("libc6"))
        );
        let no_address = INFO.replace(" <upcase@invalid>", "");
        assert!(info_problems(&no_address, "0.1.0-1", "amd64").is_some());
    }

    #[test]
    fn a_script_that_starts_a_unit_or_does_not_parse_fails() {
        let dir = test_dir("scripts");
        fs::write(dir.join("postinst"), "#!/bin/sh\nset -e\n").expect("postinst");
        maintainer_scripts(&dir).expect("a harmless script");
        fs::write(
            dir.join("postinst"),
            "#!/bin/sh\ndeb-systemd-invoke start upcase.socket\n",
        )
        .expect("postinst");
        assert!(maintainer_scripts(&dir).is_err());
        fs::write(dir.join("postinst"), "#!/bin/sh\nif then fi\n").expect("postinst");
        assert!(maintainer_scripts(&dir).is_err());
    }

    /// The committed unit files, a stand-in server and the real man page, as
    /// an extracted package would have them.
    fn unit_fixture(name: &str) -> (crate::TestDir, PathBuf, PathBuf) {
        let dir = test_dir(name);
        let units = dir.join("units");
        fs::create_dir_all(&units).expect("units");
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd");
        for unit in ["upcase.service", "upcase.socket"] {
            fs::copy(committed.join(unit), units.join(unit)).expect("unit file");
        }
        let bin = dir.join("root/usr/bin");
        fs::create_dir_all(&bin).expect("bin");
        fs::copy("/bin/true", bin.join("upcase-server")).expect("stand-in server");
        let manpath = dir.join("man");
        docs::write_man_pages(&manpath.join("man1")).expect("pages");
        (dir, units, manpath)
    }

    #[test]
    fn the_committed_units_pass_and_score_well() {
        let (dir, units, manpath) = unit_fixture("units-pass");
        let exposure = verify_units(&units, &dir.join("root"), &manpath, &dir.join("work"))
            .expect("the committed units");
        assert!(exposure <= MAX_EXPOSURE, "{exposure}");
    }

    /// Replaces `from` by `to` in the fixture's upcase.service and verifies.
    fn verify_edited(name: &str, from: &str, to: &str) -> anyhow::Result<f64> {
        let (dir, units, manpath) = unit_fixture(name);
        let service = units.join("upcase.service");
        let body = fs::read_to_string(&service).expect("service");
        assert!(body.contains(from), "{from} is not in upcase.service");
        fs::write(&service, body.replace(from, to)).expect("service");
        verify_units(&units, &dir.join("root"), &manpath, &dir.join("work"))
    }

    #[test]
    fn a_misspelt_key_fails_though_systemd_analyze_exits_0() {
        let err = verify_edited("units-typo", "Type=notify", "Tpye=notify").expect_err("passed");
        assert!(format!("{err:#}").contains("Tpye"), "{err:#}");
    }

    #[test]
    fn a_missing_program_fails() {
        let err = verify_edited(
            "units-exec",
            "/usr/bin/upcase-server",
            "/usr/bin/upcase-nothing",
        )
        .expect_err("passed");
        assert!(format!("{err:#}").contains("upcase-nothing"), "{err:#}");
    }

    #[test]
    fn a_page_that_is_not_there_fails() {
        let err = verify_edited("units-doc", "man:upcase-server(1)", "man:upcase-nothing(1)")
            .expect_err("passed");
        assert!(format!("{err:#}").contains("upcase-nothing"), "{err:#}");
    }

    #[test]
    fn removing_the_hardening_fails_on_the_exposure_score() {
        let (dir, units, manpath) = unit_fixture("units-soft");
        let service = units.join("upcase.service");
        let body = fs::read_to_string(&service).expect("service");
        let soft: String = body
            .lines()
            .filter(|line| {
                ![
                    "DynamicUser",
                    "CapabilityBoundingSet",
                    "SystemCallFilter",
                    "PrivateUsers",
                ]
                .iter()
                .any(|key| line.starts_with(key))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        fs::write(&service, soft).expect("service");
        let err = verify_units(&units, &dir.join("root"), &manpath, &dir.join("work"))
            .expect_err("a soft service passed");
        assert!(format!("{err:#}").contains("exposure"), "{err:#}");
    }
}
