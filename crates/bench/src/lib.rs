//! `cargo xtask bench`: the comparison table anyone can rerun.
//!
//! Builds our release binaries and the C references, then for each run
//! starts every server in turn (run 1 of all servers, then run 2, so drift
//! hits all alike), drives each of its rows with the C load generator, and
//! writes `report.md`, `report.json` and `report.svg` under `target/bench/`.
//! The transform alone is measured against Python's on the same bytes.
//!
//! A crate of its own, not a module of xtask, because it is a product with
//! its own tests, not a chore: xtask parses the command line and calls
//! [`run`]. Its one public type beside the options is [`ClientRun`], the
//! one reader of `upcase-client bench --json`.

#![forbid(unsafe_code)]

mod build;
mod json;
mod load;
mod measure;
mod procs;
mod report;
mod svg;
mod transform;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use build::Tools;
pub use json::{ClientRateSearch, ClientRun, ClientStep};
use load::{Row, Server};
use measure::{Bench, measure, plan};
use procs::Pinning;
use report::{Report, Settings};

/// The bench's options, for xtask's command line.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// One 1-second run per row and a short transform timing: the bounded
    /// run CI uses.
    #[arg(long)]
    quick: bool,
    /// Runs per server and row [default: 3, or 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: Option<u32>,
    /// Seconds of load per run, e.g. 5 or 2.5s [default: 5, or 1 with --quick].
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<f64>,
    /// Directory for the reports, logs and C binaries [default: the target directory/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these rows, e.g. `tcp-ping,tcp-flood`; the transform timing is
    /// then skipped [default: every row].
    #[arg(long, value_delimiter = ',', value_enum)]
    rows: Vec<load::Row>,
    /// Another upcase-server program, run beside ours on every row ours
    /// runs (e.g. a build of main, to compare before and after in one run).
    #[arg(long, value_name = "PROGRAM")]
    other_server: Option<PathBuf>,
    /// Words added to the other server's command line, e.g. `--io uring`
    /// (with no --other-server, the other server is our own build).
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    other_args: Option<String>,
}

/// Seconds as `5`, `2.5`, `5s` or `500ms`, within what loadgen accepts.
fn parse_seconds(text: &str) -> Result<f64, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?} is not a duration such as 5, 2.5s or 500ms"))?
        * scale;
    if !(0.1..=60.0).contains(&seconds) {
        return Err(format!("{text:?} is outside 0.1 s ..= 60 s"));
    }
    Ok(seconds)
}

/// Runs the bench as `args` say; `command` is how it was asked for
/// (`cargo xtask bench --quick`), for the report.
pub fn run(args: BenchArgs, command: &str) -> anyhow::Result<()> {
    // This crate's manifest is in crates/bench.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .context("crates/bench is not inside a workspace")?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
    let seconds = args.duration.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    let transform_seconds = if args.quick { 0.3 } else { 2.0 };
    let out = match args.out {
        Some(out) => out,
        None => build::target_dir(&cargo, &root)?.join("bench"),
    };
    let logs = out.join("logs");
    let bin = out.join("bin");
    for dir in [&logs, &bin] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut notes = Vec::new();
    let mut errors = Vec::new();

    let mut tools = find_tools(&cargo, &root, &bin, !args.quick, &mut notes)?;
    if args.other_server.is_some() || args.other_args.is_some() {
        let program = args.other_server.unwrap_or_else(|| tools.server.clone());
        let words: Vec<String> = args
            .other_args
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        notes.push(format!(
            "other upcase-server: `{} {} {}`",
            program.display(),
            Server::Other.command_line().replace("OTHER-SERVER ", ""),
            words.join(" ")
        ));
        tools.other = Some(build::OtherServer { program, words });
    }
    let rows: &[Row] = if args.rows.is_empty() {
        &Row::ALL
    } else {
        notes.push(format!(
            "--rows: only {}; no transform timing",
            args.rows
                .iter()
                .map(|r| r.title())
                .collect::<Vec<_>>()
                .join("; ")
        ));
        &args.rows
    };
    let transform = if !args.rows.is_empty() {
        Vec::new()
    } else {
        match transform::run(
            &cargo,
            &root,
            !args.quick,
            &out.join("transform"),
            transform_seconds,
            tools.python.as_deref(),
            &mut notes,
        ) {
            Ok(lines) => lines,
            Err(err) => {
                errors.push(format!("transform benchmark: {err:#}"));
                Vec::new()
            }
        }
    };
    let bench = Bench {
        pinning: Pinning::detect(&mut notes),
        tools,
        logs,
        length: load::Length::new(seconds, args.quick),
    };
    if args.quick {
        notes.push(format!(
            "--quick: the find-rate searches take at most {} steps of {} s, with bounds any \
             machine meets (loss <= 50 %, p99 <= 1 s): they check that the search works",
            bench.length.max_steps, bench.length.step_seconds
        ));
    }
    let mut entries = plan(&bench.tools, rows, &mut notes)?;
    let memory = measure(&bench, runs, &mut entries, &mut errors);

    let lines = report::lines(&entries);
    let memory = report::memory_lines(&memory);
    let mut targets = report::targets(&lines, &memory, &transform);
    if args.quick {
        // Debug builds and 1-second runs: the figures are shown, not judged.
        for target in &mut targets {
            target.met = None;
        }
    }
    let report = Report {
        machine: report::Machine::collect(&root, command.to_string()),
        settings: Settings {
            runs,
            seconds,
            quick: args.quick,
            pinned: bench.pinning.is_pinned(),
        },
        targets,
        lines,
        memory,
        transform,
        notes,
        errors,
    };
    write_reports(report, &out)
}

fn find_tools(
    cargo: &OsString,
    root: &Path,
    bin: &Path,
    release: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Tools> {
    if !release {
        notes.push(
            "--quick: debug binaries and one short run per row check that everything works; \
             the figures say nothing about speed"
                .into(),
        );
    }
    let (server, client) = build::build_bins(cargo, root, release)?;
    let client = if build::client_has_bench(&client) {
        Some(client)
    } else {
        notes.push(
            "upcase-client has no `bench --window ... --json` yet: the client-vs-loadgen row is skipped"
                .into(),
        );
        None
    };
    let anchors = root.parent().map_or_else(
        || root.join("../shared/anchors"),
        |p| p.join("shared/anchors"),
    );
    let c = build::build_c(&anchors, bin, notes);
    let seed_server = Some(anchors.join("seed_udp_server.py")).filter(|p| p.is_file());
    let python = build::find_python(notes);
    if python.is_some() && seed_server.is_none() {
        notes.push("seed_udp_server.py not found: the Python server is skipped".into());
    }
    Ok(Tools {
        server,
        client,
        limit_server: c.limit_server,
        loadgen: c.loadgen,
        tcp_server: c.tcp_server,
        python,
        seed_server,
        other: None,
    })
}

fn write_reports(mut report: Report, out: &Path) -> anyhow::Result<()> {
    let m = &report.machine;
    let subtitle = format!(
        "{}; {} cores, {}; Linux {}; {} run(s) of {} s per row, medians",
        m.date, m.cores, m.cpu, m.kernel, report.settings.runs, report.settings.seconds
    );
    let svg_text = svg::render(&report.lines, &subtitle);
    let svg_path = out.join("report.svg");
    std::fs::write(&svg_path, &svg_text)
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    if let Err(err) = svg::check_well_formed(&svg_text) {
        report
            .errors
            .push(format!("report.svg is not well-formed XML: {err}"));
    }
    match render_png(&svg_path, &out.join("report.png")) {
        Ok(true) => report
            .notes
            .push("report.svg rendered to report.png by rsvg-convert".into()),
        Ok(false) => report.notes.push(
            "rsvg-convert not found: report.svg was only checked to be well-formed XML".into(),
        ),
        Err(err) => report
            .errors
            .push(format!("report.svg does not render: {err:#}")),
    }
    let markdown = report::render_markdown(&report);
    let md_path = out.join("report.md");
    std::fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    let json_path = out.join("report.json");
    let json = serde_json::to_string_pretty(&report).context("cannot serialize the report")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("{markdown}");
    eprintln!(
        "bench: wrote {}, {} and {}",
        md_path.display(),
        json_path.display(),
        svg_path.display()
    );
    if !report.errors.is_empty() {
        bail!(
            "{} part(s) of the benchmark failed (listed in {}); logs in {}",
            report.errors.len(),
            md_path.display(),
            out.join("logs").display()
        );
    }
    Ok(())
}

/// Renders the SVG with rsvg-convert when it is installed: `Ok(false)` if
/// it is not, an error if it refuses the file.
fn render_png(svg: &Path, png: &Path) -> anyhow::Result<bool> {
    let result = Command::new("rsvg-convert")
        .arg("-o")
        .arg(png)
        .arg(svg)
        .stdout(Stdio::null())
        .output();
    match result {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).context("cannot run rsvg-convert"),
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => bail!(
            "rsvg-convert failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_seconds() {
        assert_eq!(parse_seconds("5"), Ok(5.0));
        assert_eq!(parse_seconds("2.5s"), Ok(2.5));
        assert_eq!(parse_seconds("500ms"), Ok(0.5));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("61").is_err());
        assert!(parse_seconds("fast").is_err());
    }
}
