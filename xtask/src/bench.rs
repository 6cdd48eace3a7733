//! `cargo xtask bench`: the comparison table anyone can rerun.
//!
//! Builds our release binaries and the C references, then for each run
//! starts every server in turn (run 1 of all servers, then run 2, so drift
//! hits all alike), drives each of its rows with the C load generator, and
//! writes `report.md`, `report.json` and `report.svg` under `target/bench/`.
//! The transform alone is measured against Python's on the same bytes.

mod build;
mod load;
mod procs;
mod report;
mod svg;
mod transform;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use upcase_e2e::{Memory, Process, reachable};

use build::Tools;
use load::{Load, Row, Sample, Server};
use procs::{Pinning, Role};
use report::{Entry, Report, Settings, fmt_count, fmt_us};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// One 1-second run per row and a short transform timing: the bounded
    /// run CI uses.
    #[arg(long)]
    pub quick: bool,
    /// Runs per server and row [default: 3, or 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: Option<u32>,
    /// Seconds of load per run, e.g. 5 or 2.5s [default: 5, or 1 with --quick].
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Directory for the reports, logs and C binaries [default: the target directory/bench].
    #[arg(long)]
    pub out: Option<PathBuf>,
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

/// What one invocation measures and where it keeps things.
struct Bench {
    tools: Tools,
    pinning: Pinning,
    logs: PathBuf,
    seconds: f64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
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

    let tools = find_tools(&cargo, &root, &bin, !args.quick, &mut notes)?;
    let transform = match transform::run(
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
    };
    let bench = Bench {
        pinning: Pinning::detect(&mut notes),
        tools,
        logs,
        seconds,
    };
    let mut entries = plan(&bench.tools, &mut notes)?;
    let memory = measure(&bench, runs, &mut entries, &mut errors);

    let command = std::iter::once("cargo xtask".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
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
        machine: report::Machine::collect(&root, command),
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
    let (limit_server, loadgen) = build::build_c(&anchors, bin, notes);
    let seed_server = Some(anchors.join("seed_udp_server.py")).filter(|p| p.is_file());
    let python = build::find_python(notes);
    if python.is_some() && seed_server.is_none() {
        notes.push("seed_udp_server.py not found: the Python server is skipped".into());
    }
    Ok(Tools {
        server,
        client,
        limit_server,
        loadgen,
        python,
        seed_server,
    })
}

fn available(tools: &Tools, server: Server) -> bool {
    match server {
        Server::Upcase | Server::UpcaseBusyPoll | Server::UpcaseGro => true,
        Server::CRecvmmsg | Server::CPlain | Server::CGro => tools.limit_server.is_some(),
        Server::Python => tools.python.is_some() && tools.seed_server.is_some(),
    }
}

/// The entries to fill, in display order.
fn plan(tools: &Tools, notes: &mut Vec<String>) -> anyhow::Result<Vec<Entry>> {
    let primary = if tools.loadgen.is_some() {
        Load::Loadgen
    } else if tools.client.is_some() {
        notes.push("no C loadgen: upcase-client generates the load of every row".into());
        Load::Client
    } else {
        bail!(
            "no load generator: loadgen needs ../shared/anchors and a C compiler, and \
             upcase-client has no `bench` subcommand"
        );
    };
    let mut entries = Vec::new();
    for row in Row::ALL {
        for &server in row.servers() {
            if !available(tools, server) {
                continue;
            }
            let both = primary == Load::Loadgen && tools.client.is_some();
            let loads: &[Load] = match row {
                Row::ClientVsLoadgen if both => &[Load::Client],
                Row::ClientVsLoadgen => continue,
                // loadgen speaks UDP only.
                Row::TcpPing | Row::TcpFlood if tools.client.is_some() => &[Load::Client],
                Row::TcpPing | Row::TcpFlood => continue,
                // GSO + GRO is where a sender's own cost shows most: both
                // senders are measured against every server of the row.
                Row::Gso if both => &[Load::Loadgen, Load::Client],
                _ => std::slice::from_ref(&primary),
            };
            for &load in loads {
                entries.push(Entry {
                    row,
                    server,
                    load,
                    samples: Vec::new(),
                    errors: Vec::new(),
                });
            }
        }
    }
    Ok(entries)
}

/// Runs everything; returns each server session's memory at its end.
fn measure(
    bench: &Bench,
    runs: u32,
    entries: &mut [Entry],
    errors: &mut Vec<String>,
) -> Vec<(Server, Memory)> {
    let loads = entries.len() as f64 * f64::from(runs);
    eprintln!(
        "bench: {} load runs of {} s, about {:.0} s",
        loads,
        bench.seconds,
        loads * (bench.seconds + 0.5)
    );
    let mut memory = Vec::new();
    for run in 1..=runs {
        for server in Server::ALL {
            let jobs: Vec<usize> = Row::RUN_ORDER
                .iter()
                .flat_map(|row| {
                    let entries = &*entries;
                    (0..entries.len())
                        .filter(move |&i| entries[i].row == *row && entries[i].server == server)
                })
                .collect();
            if jobs.is_empty() {
                continue;
            }
            let label = format!("run{run}-{server:?}").to_lowercase();
            let (mut guard, addr) = match start_server(bench, server, &label) {
                Ok(started) => started,
                Err(err) => {
                    let message = format!("run {run}, {}: {err:#}", server.name());
                    eprintln!("bench: error: {message}");
                    for &job in &jobs {
                        entries[job].errors.push(message.clone());
                    }
                    errors.push(message);
                    continue;
                }
            };
            for job in jobs {
                let entry = &mut entries[job];
                let what = format!(
                    "run {run}/{runs} {} ({}) {}",
                    server.name(),
                    entry.load.name(),
                    entry.row.title()
                );
                let load_label = format!("{label}-{:?}-{:?}", entry.row, entry.load).to_lowercase();
                let result =
                    run_load(bench, entry.load, entry.row, addr, &load_label).and_then(|sample| {
                        match guard.exited() {
                            Some(status) => bail!(
                                "{} exited ({status}) during the load; stderr: {}",
                                server.name(),
                                guard.stderr_tail()
                            ),
                            None => Ok(sample),
                        }
                    });
                match result {
                    Ok(sample) => {
                        eprintln!("bench: {what}: {}", describe(&sample));
                        entry.samples.push(sample);
                    }
                    Err(err) => {
                        let message = format!("{what}: {err:#}");
                        eprintln!("bench: error: {message}");
                        entry.errors.push(message.clone());
                        errors.push(message);
                    }
                }
            }
            match guard.memory() {
                Ok(reading) => memory.push((server, reading)),
                Err(err) => errors.push(format!("run {run}, {} memory: {err:#}", server.name())),
            }
            guard.stop();
        }
    }
    memory
}

fn describe(sample: &Sample) -> String {
    format!(
        "{} replies/s, p50 {} µs, p99 {} µs, lost {}{}",
        fmt_count(Some(sample.replies_per_s)),
        fmt_us(sample.p50_us),
        fmt_us(sample.p99_us),
        sample.lost,
        if sample.mismatches > 0 {
            format!(", {} WRONG replies", sample.mismatches)
        } else {
            String::new()
        }
    )
}

/// Starts `server` and returns once it has answered a datagram.
fn start_server(
    bench: &Bench,
    server: Server,
    label: &str,
) -> anyhow::Result<(Process, SocketAddr)> {
    let tools = &bench.tools;
    let port = match server {
        Server::Upcase | Server::UpcaseBusyPoll | Server::UpcaseGro => 0,
        // Another process could take it before the server binds it; the
        // readiness probe then fails with a clear message.
        _ => upcase_e2e::free_udp_port().context("no free UDP port on loopback")?,
    };
    let (program, mut args): (&Path, Vec<OsString>) = match server {
        Server::Upcase | Server::UpcaseBusyPoll | Server::UpcaseGro => (&tools.server, Vec::new()),
        Server::CRecvmmsg | Server::CPlain | Server::CGro => (
            tools
                .limit_server
                .as_deref()
                .context("limit_server is not built")?,
            Vec::new(),
        ),
        Server::Python => {
            let script = tools
                .seed_server
                .as_ref()
                .context("no seed_udp_server.py")?;
            let python = tools.python.as_deref().context("no python3")?;
            (python, vec![script.clone().into_os_string()])
        }
    };
    args.extend(server.args(port).into_iter().map(OsString::from));
    let mut command = bench.pinning.command(Role::Server, program);
    command.args(args);
    let mut guard = Process::spawn(&mut command)
        .label(label)
        .logs_in(&bench.logs)
        .start()?;
    let addr = match server {
        Server::Upcase | Server::UpcaseBusyPoll | Server::UpcaseGro => {
            reachable(guard.wait_ready(procs::STARTUP_LIMIT)?.first())
        }
        _ => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    guard.wait_answering(addr, b"upcase bench probe", procs::STARTUP_LIMIT)?;
    Ok((guard, addr))
}

/// One bounded load run against `addr`.
fn run_load(
    bench: &Bench,
    load: Load,
    row: Row,
    addr: SocketAddr,
    label: &str,
) -> anyhow::Result<Sample> {
    let program = match load {
        Load::Loadgen => bench.tools.loadgen.as_deref(),
        Load::Client => bench.tools.client.as_deref(),
    }
    .with_context(|| format!("{} is not available", load.name()))?;
    let mut command = bench.pinning.command(Role::Load, program);
    command.args(load.args(row.spec(), addr.port(), bench.seconds));
    let mut guard = Process::spawn(&mut command)
        .label(label)
        .logs_in(&bench.logs)
        .start()?;
    // Loss timeouts and draining add well under a second; the rest is slack
    // for a loaded machine, while still bounding a hung load tool.
    let limit = Duration::from_secs_f64(bench.seconds) + Duration::from_secs(20);
    let status = guard.wait_within(limit)?;
    if !status.success() {
        bail!(
            "{} failed ({status}); stderr: {}",
            load.name(),
            guard.stderr_tail()
        );
    }
    load.parse(&guard.stdout())
        .with_context(|| format!("see {}", bench.logs.join(format!("{label}.out")).display()))
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

    #[test]
    fn plan_without_c_uses_the_client_and_skips_its_comparison() {
        let tools = Tools {
            server: PathBuf::from("s"),
            client: Some(PathBuf::from("c")),
            limit_server: None,
            loadgen: None,
            python: None,
            seed_server: None,
        };
        let mut notes = Vec::new();
        let entries = plan(&tools, &mut notes).unwrap();
        assert!(entries.iter().all(|e| matches!(
            e.server,
            Server::Upcase | Server::UpcaseBusyPoll | Server::UpcaseGro
        ) && e.load == Load::Client));
        // Ping and flood W=64 twice (with --busy-poll, with --gro), two more
        // floods, GSO twice (with and without --gro), two TCP.
        assert_eq!(entries.len(), 10);
        assert!(!notes.is_empty());
        let none = Tools {
            client: None,
            ..tools
        };
        assert!(plan(&none, &mut notes).is_err());
    }

    #[test]
    fn full_plan_compares_client_with_loadgen_on_the_reference() {
        let tools = Tools {
            server: PathBuf::from("s"),
            client: Some(PathBuf::from("c")),
            limit_server: Some(PathBuf::from("l")),
            loadgen: Some(PathBuf::from("g")),
            python: Some(PathBuf::from("p")),
            seed_server: Some(PathBuf::from("seed.py")),
        };
        let entries = plan(&tools, &mut Vec::new()).unwrap();
        // 4 classic rows x 4 servers, ping with --busy-poll, flood W=64 with
        // --gro, GSO x 4 servers x 2 loads, client x 1, TCP x 2.
        assert_eq!(entries.len(), 29);
        let client: Vec<_> = entries.iter().filter(|e| e.load == Load::Client).collect();
        assert_eq!(client.len(), 7);
        assert!(
            entries
                .iter()
                .filter(|e| matches!(e.row, Row::TcpPing | Row::TcpFlood))
                .all(|e| (e.server, e.load) == (Server::Upcase, Load::Client))
        );
        assert!(
            client
                .iter()
                .any(|e| (e.row, e.server) == (Row::ClientVsLoadgen, Server::CRecvmmsg))
        );
        assert!(client.iter().filter(|e| e.row == Row::Gso).count() == 4);
    }
}
