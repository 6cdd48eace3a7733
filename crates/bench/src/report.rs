//! From raw samples to the report: medians, ratios, targets, and the
//! Markdown and JSON renderings.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use upcase_e2e::Memory;

use crate::load::{Load, Row, Sample, Server};

/// Everything one server/load pair measured in one row, over all runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) row: Row,
    pub(crate) server: Server,
    pub(crate) load: Load,
    pub(crate) samples: Vec<Sample>,
    pub(crate) errors: Vec<String>,
}

/// One line of the table: medians over the successful runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) row: Row,
    pub(crate) row_title: String,
    pub(crate) server: Server,
    pub(crate) server_name: String,
    pub(crate) load: Load,
    pub(crate) replies_per_s: Option<f64>,
    /// Against the row's reference (C recvmmsg, or the C epoll server on
    /// the TCP rows) driven by the same load tool, in the same row.
    pub(crate) ratio: Option<f64>,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) lost: Option<u64>,
    /// The server's CPU time per reply, µs (Linux only).
    #[serde(default)]
    pub(crate) server_cpu_us_per_reply: Option<f64>,
    pub(crate) mismatches: u64,
    pub(crate) samples: Vec<Sample>,
    pub(crate) errors: Vec<String>,
}

/// Median; the mean of the middle two for an even count.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

pub(crate) fn ratio(value: Option<f64>, reference: Option<f64>) -> Option<f64> {
    match (value, reference) {
        (Some(v), Some(r)) if r > 0.0 => Some(v / r),
        _ => None,
    }
}

/// The table in display order. The client-vs-loadgen row repeats the
/// loadgen line of flood W=64 on the reference server as its own reference:
/// the client ran right after it, in the same server session.
pub(crate) fn lines(entries: &[Entry]) -> Vec<Line> {
    let mut lines = Vec::new();
    for row in Row::ALL {
        let mut in_row: Vec<&Entry> = Vec::new();
        if row == Row::ClientVsLoadgen && entries.iter().any(|e| e.row == row) {
            in_row.extend(entries.iter().filter(|e| {
                e.row == Row::Flood64 && e.server == Server::REFERENCE && e.load == Load::Loadgen
            }));
        }
        in_row.extend(entries.iter().filter(|e| e.row == row));
        let start = lines.len();
        for entry in in_row {
            lines.push(summarize(row, entry));
        }
        // Against the reference under the same load tool, so a row measured
        // with two tools compares each with its own; the client-vs-loadgen
        // row compares with loadgen.
        let reference = |load: Load, lines: &[Line]| {
            let want = if row == Row::ClientVsLoadgen {
                Load::Loadgen
            } else {
                load
            };
            lines
                .iter()
                .find(|line| line.server == row.reference() && line.load == want)
                .and_then(|line| line.replies_per_s)
        };
        for i in start..lines.len() {
            let reference = reference(lines[i].load, &lines[start..]);
            lines[i].ratio = ratio(lines[i].replies_per_s, reference);
        }
    }
    lines
}

fn summarize(row: Row, entry: &Entry) -> Line {
    let of = |f: fn(&Sample) -> Option<f64>| {
        median(&entry.samples.iter().filter_map(f).collect::<Vec<_>>())
    };
    Line {
        row,
        row_title: row.title().to_string(),
        server: entry.server,
        server_name: entry.server.name().to_string(),
        load: entry.load,
        replies_per_s: of(|s| Some(s.replies_per_s)),
        ratio: None,
        p50_us: of(|s| s.p50_us),
        p99_us: of(|s| s.p99_us),
        lost: of(|s| Some(s.lost as f64)).map(|v| v.round() as u64),
        server_cpu_us_per_reply: of(Sample::server_cpu_us_per_reply),
        mismatches: entry.samples.iter().map(|s| s.mismatches).sum(),
        samples: entry.samples.clone(),
        errors: entry.errors.clone(),
    }
}

/// Peak memory of one server over its sessions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MemoryLine {
    pub(crate) server: Server,
    pub(crate) server_name: String,
    pub(crate) vm_hwm_kib: u64,
    pub(crate) vm_rss_kib: u64,
    pub(crate) threads: u64,
    pub(crate) hwm_per_thread_kib: u64,
}

pub(crate) fn memory_lines(readings: &[(Server, Memory)]) -> Vec<MemoryLine> {
    let mut lines = Vec::new();
    for server in Server::ALL {
        let mine: Vec<&Memory> = readings
            .iter()
            .filter(|(s, _)| *s == server)
            .map(|(_, m)| m)
            .collect();
        let Some(peak) = mine.iter().max_by_key(|m| m.vm_hwm_kib) else {
            continue;
        };
        lines.push(MemoryLine {
            server,
            server_name: server.name().to_string(),
            vm_hwm_kib: peak.vm_hwm_kib,
            vm_rss_kib: mine.iter().map(|m| m.vm_rss_kib).max().unwrap_or(0),
            threads: peak.threads,
            hwm_per_thread_kib: peak.vm_hwm_kib / peak.threads.max(1),
        });
    }
    lines
}

/// Throughput of the transform alone on one input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TransformLine {
    pub(crate) input: String,
    pub(crate) bytes: u64,
    pub(crate) rust_gbps: f64,
    pub(crate) python_gbps: Option<f64>,
    pub(crate) ratio: Option<f64>,
}

/// A goal from the issue, and whether this run met it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Target {
    pub(crate) what: String,
    pub(crate) goal: String,
    pub(crate) measured: String,
    pub(crate) met: Option<bool>,
}

pub(crate) fn targets(
    lines: &[Line],
    memory: &[MemoryLine],
    transform: &[TransformLine],
) -> Vec<Target> {
    let client = lines
        .iter()
        .find(|l| l.row == Row::ClientVsLoadgen && l.load == Load::Client)
        .and_then(|l| l.ratio);
    let ascii = transform
        .iter()
        .find(|t| t.input == "ascii")
        .and_then(|t| t.ratio);
    let ours = memory.iter().find(|m| m.server == Server::Upcase);
    let (mem_value, mem_met) = match ours {
        Some(m) => (
            format!("{:.1} MiB per thread", m.hwm_per_thread_kib as f64 / 1024.0),
            Some(m.hwm_per_thread_kib <= 16 * 1024),
        ),
        None => ("–".into(), None),
    };
    let mut all = server_targets(lines);
    all.extend(tcp_targets(lines));
    all.extend([
        Target {
            what: "upcase-client load vs loadgen (flood W=64)".into(),
            goal: ">= 0.95x".into(),
            measured: fmt_ratio(client),
            met: client.map(|r| r >= 0.95),
        },
        Target {
            what: "transform on 64 KiB ASCII vs Python".into(),
            goal: ">= 10x".into(),
            measured: fmt_ratio(ascii),
            met: ascii.map(|r| r >= 10.0),
        },
        Target {
            what: "upcase-server peak memory (VmHWM)".into(),
            goal: "<= 16 MiB per thread".into(),
            measured: mem_value,
            met: mem_met,
        },
    ]);
    all
}

/// The median over the runs of `ours`'s figure over `theirs`'s in the same
/// run (the runs both measured): how the TCP targets are judged, since a
/// pair of runs side by side shares the machine's state of the moment.
pub(crate) fn median_of_ratios(
    ours: Option<&Line>,
    theirs: Option<&Line>,
    figure: fn(&Sample) -> Option<f64>,
) -> Option<f64> {
    let (ours, theirs) = (ours?, theirs?);
    let ratios: Vec<f64> = ours
        .samples
        .iter()
        .filter_map(|mine| {
            let other = theirs.samples.iter().find(|s| s.run == mine.run)?;
            ratio(figure(mine), figure(other))
        })
        .collect();
    median(&ratios)
}

/// The TCP targets of issue 15, against the C epoll server.
fn tcp_targets(lines: &[Line]) -> Vec<Target> {
    let find = |row: Row, server: Server| {
        lines
            .iter()
            .find(|l| l.row == row && l.server == server && l.load == Load::Client)
    };
    let flood = median_of_ratios(
        find(Row::TcpFlood, Server::Upcase),
        find(Row::TcpFlood, Server::CTcp),
        |s| Some(s.replies_per_s),
    );
    let ping = median_of_ratios(
        find(Row::TcpPing, Server::Upcase),
        find(Row::TcpPing, Server::CTcp),
        |s| s.p50_us,
    );
    vec![
        Target {
            what: "upcase-server TCP flood W=64 x 16 connections vs C epoll (median of per-run ratios)"
                .into(),
            goal: ">= 1.00x".into(),
            measured: fmt_ratio(flood),
            met: flood.map(|r| r >= 1.0),
        },
        Target {
            what: "upcase-server TCP ping p50 vs C epoll (median of per-run ratios)".into(),
            goal: "<= 1.05x".into(),
            measured: fmt_ratio(ping),
            met: ping.map(|r| r <= 1.05),
        },
    ]
}

/// The server targets of the issue, as ratios inside this run.
fn server_targets(lines: &[Line]) -> Vec<Target> {
    let find = |row: Row, server: Server, load: Load| {
        lines
            .iter()
            .find(|l| l.row == row && l.server == server && l.load == load)
    };
    let versus_as =
        |ours: Server, row: Row, server: Server, load: Load, f: fn(&Line) -> Option<f64>| {
            ratio(
                find(row, ours, load).and_then(f),
                find(row, server, load).and_then(f),
            )
        };
    let versus = |row: Row, server: Server, load: Load, f: fn(&Line) -> Option<f64>| {
        versus_as(Server::Upcase, row, server, load, f)
    };
    let rate = |l: &Line| l.replies_per_s;
    let p50 = |l: &Line| l.p50_us;
    let at_least = |what: &str, goal: f64, value: Option<f64>| Target {
        what: what.into(),
        goal: format!(">= {goal:.2}x"),
        measured: fmt_ratio(value),
        met: value.map(|r| r >= goal),
    };
    let flood = versus(Row::Flood64, Server::CRecvmmsg, Load::Loadgen, rate);
    let gso = versus_as(
        Server::UpcaseGro,
        Row::Gso,
        Server::CGro,
        Load::Loadgen,
        rate,
    );
    let gso_client = versus_as(
        Server::UpcaseGro,
        Row::Gso,
        Server::CGro,
        Load::Client,
        rate,
    );
    let ping = versus(Row::Ping, Server::CPlain, Load::Loadgen, p50);
    let ping_busy = versus_as(
        Server::UpcaseBusyPoll,
        Row::Ping,
        Server::CPlain,
        Load::Loadgen,
        p50,
    );
    let metrics_on = ratio(
        find(Row::Flood64, Server::UpcaseMetrics, Load::Loadgen).and_then(rate),
        find(Row::Flood64, Server::Upcase, Load::Loadgen).and_then(rate),
    );
    let batching_buys = ratio(
        find(Row::Flood64, Server::Upcase, Load::Loadgen).and_then(rate),
        find(Row::Flood64, Server::UpcasePortable, Load::Loadgen).and_then(rate),
    );
    let lost_256 = find(Row::Flood256, Server::Upcase, Load::Loadgen).and_then(|l| l.lost);
    // What a reply costs the server, whichever side limited the rate: on
    // this 2-core VM the flood's replies/s swing by a quarter between runs
    // of one binary, its CPU per reply by a few percent.
    let cpu_of = |server: Server| {
        median_of_ratios(
            find(Row::Flood64, Server::Upcase, Load::Loadgen),
            find(Row::Flood64, server, Load::Loadgen),
            Sample::server_cpu_us_per_reply,
        )
    };
    let (cpu_vs_c, cpu_vs_other) = (cpu_of(Server::CRecvmmsg), cpu_of(Server::Other));
    let at_most = |what: &str, goal: f64, value: Option<f64>| Target {
        what: what.into(),
        goal: format!("<= {goal:.2}x"),
        measured: fmt_ratio(value),
        met: value.map(|r| r <= goal),
    };
    vec![
        at_least("upcase-server flood W=64 vs C recvmmsg", 1.0, flood),
        at_most(
            "upcase-server flood W=64, server CPU per reply vs C recvmmsg (median of per-run ratios)",
            1.05,
            cpu_vs_c,
        ),
        at_most(
            "upcase-server flood W=64, server CPU per reply vs --other-server (no regression; median of per-run ratios)",
            1.05,
            cpu_vs_other,
        ),
        // Noise between two runs of the same server is a few percent here.
        at_least(
            "upcase-server --metrics flood W=64 vs without (no regression)",
            0.95,
            metrics_on,
        ),
        // What the batched path buys over the portable one, same machine.
        at_least(
            "upcase-server flood W=64, batched vs --io portable",
            1.0,
            batching_buys,
        ),
        Target {
            what: "upcase-server flood W=256: lost".into(),
            goal: "0".into(),
            measured: lost_256.map_or("–".into(), |l| l.to_string()),
            met: lost_256.map(|l| l == 0),
        },
        at_least(
            "upcase-server --gro, GSO+GRO sender (loadgen -G -g) vs C GRO/GSO",
            1.0,
            gso,
        ),
        at_least(
            "upcase-server --gro, GSO+GRO sender (upcase-client --gso) vs C GRO/GSO",
            1.0,
            gso_client,
        ),
        Target {
            what: "upcase-server ping p50 vs C plain".into(),
            goal: "<= 1.05x".into(),
            measured: fmt_ratio(ping),
            met: ping.map(|r| r <= 1.05),
        },
        Target {
            what: "upcase-server --busy-poll ping p50 vs C plain".into(),
            goal: "< 1.00x".into(),
            measured: fmt_ratio(ping_busy),
            met: ping_busy.map(|r| r < 1.0),
        },
    ]
}

/// Where and how the figures were taken.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
    pub(crate) date: String,
    pub(crate) rustc: String,
    pub(crate) commit: String,
    pub(crate) command: String,
}

impl Machine {
    pub(crate) fn collect(root: &Path, command: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
            .map_or("unknown".into(), |m| m.trim().to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |k| k.trim().to_string());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel,
            date: output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])),
            rustc: output_of(Command::new("rustc").arg("--version")),
            commit: output_of(Command::new("git").arg("-C").arg(root).args([
                "rev-parse",
                "--short",
                "HEAD",
            ])),
            command,
        }
    }
}

fn output_of(command: &mut Command) -> String {
    match command.output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) runs: u32,
    pub(crate) seconds: f64,
    pub(crate) quick: bool,
    pub(crate) pinned: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) lines: Vec<Line>,
    pub(crate) memory: Vec<MemoryLine>,
    pub(crate) transform: Vec<TransformLine>,
    pub(crate) targets: Vec<Target>,
    pub(crate) notes: Vec<String>,
    pub(crate) errors: Vec<String>,
}

pub(crate) fn fmt_count(value: Option<f64>) -> String {
    let Some(value) = value else {
        return "–".into();
    };
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn fmt_ratio(value: Option<f64>) -> String {
    value.map_or("–".into(), |r| format!("{r:.2}x"))
}

pub(crate) fn fmt_us(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.1}"))
}

fn fmt_met(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The steps of the find-rate searches, run by run: the curve the SVG
/// draws, in figures.
fn render_curves(md: &mut String, lines: &[Line]) {
    let searches: Vec<&Line> = lines
        .iter()
        .filter(|l| l.row == Row::FindRate && l.samples.iter().any(|s| !s.curve.is_empty()))
        .collect();
    if searches.is_empty() {
        return;
    }
    md.push_str("\n## find-rate: every step\n\n");
    md.push_str(
        "Each step is a paced run of `upcase-client bench --rate R`; round trips are timed \
         from each request's intended send time.\n\n",
    );
    md.push_str("| server | run | offered/s | replies/s | loss | p50 µs | p99 µs | |\n");
    md.push_str("|---|--:|--:|--:|--:|--:|--:|---|\n");
    for line in searches {
        for sample in &line.samples {
            for point in &sample.curve {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.3} % | {} | {} | {} |",
                    line.server_name,
                    sample.run,
                    fmt_count(Some(point.offered_per_s as f64)),
                    fmt_count(Some(point.replies_per_s)),
                    point.loss * 100.0,
                    fmt_us(point.p50_us),
                    fmt_us(point.p99_us),
                    match (&point.failed_on, point.passed) {
                        (_, true) => "pass".to_string(),
                        (Some(why), false) => format!("fail: {why}"),
                        (None, false) => "fail".to_string(),
                    }
                );
            }
        }
    }
}

pub(crate) fn render_markdown(report: &Report) -> String {
    let m = &report.machine;
    let s = &report.settings;
    let mut md = String::new();
    let _ = writeln!(md, "# upcase benchmark\n");
    let _ = writeln!(md, "- command: `{}`", m.command);
    let _ = writeln!(md, "- date: {}; commit {}; {}", m.date, m.commit, m.rustc);
    let _ = writeln!(
        md,
        "- machine: {} cores, {}; Linux {}",
        m.cores, m.cpu, m.kernel
    );
    let pinning = if s.pinned {
        "server on core 0, load on core 1 (taskset)"
    } else {
        "unpinned"
    };
    let _ = writeln!(
        md,
        "- {} run(s) of {} s per row, servers interleaved run by run; {pinning}\n",
        s.runs, s.seconds
    );
    let _ = writeln!(
        md,
        "Medians over the runs. \"vs C\" is replies/s over the C recvmmsg reference's in the same \
         row (in the client-vs-loadgen row: over the C load generator's; in the TCP rows: over \
         the C epoll server's, ../shared/anchors/tcp_server.c). RTT in µs; lost per run; CPU: \
         the server's CPU time (user and system, all its threads) over the replies, while the \
         load ran. The find-rate row's replies/s is the highest paced rate that passed (loss <= 0.1 %, p99 \
         <= 10 ms timed from each request's intended send time, the sender on schedule), its \
         p50 and p99 that step's.\n"
    );
    md.push_str(
        "| row | server | load | replies/s | vs C | p50 µs | p99 µs | lost | CPU µs/reply |\n",
    );
    md.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|\n");
    for line in &report.lines {
        let mut lost = line.lost.map_or("–".into(), |l| fmt_count(Some(l as f64)));
        if line.mismatches > 0 {
            let _ = write!(lost, " ({} wrong)", line.mismatches);
        }
        if !line.errors.is_empty() {
            let _ = write!(lost, " ({} failed)", line.errors.len());
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            line.row_title,
            line.server_name,
            line.load.name(),
            fmt_count(line.replies_per_s),
            fmt_ratio(line.ratio),
            fmt_us(line.p50_us),
            fmt_us(line.p99_us),
            lost,
            line.server_cpu_us_per_reply
                .map_or("–".into(), |us| format!("{us:.2}"))
        );
    }
    render_curves(&mut md, &report.lines);
    if !report.memory.is_empty() {
        md.push_str("\n## Server memory (peak over the session, after the flood rows)\n\n");
        md.push_str(
            "| server | threads | VmHWM | VmRSS | VmHWM per thread |\n|---|--:|--:|--:|--:|\n",
        );
        for mem in &report.memory {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                mem.server_name,
                mem.threads,
                mem.vm_hwm_kib as f64 / 1024.0,
                mem.vm_rss_kib as f64 / 1024.0,
                mem.hwm_per_thread_kib as f64 / 1024.0
            );
        }
    }
    if !report.transform.is_empty() {
        md.push_str("\n## The transform alone, one 64 KiB datagram\n\n");
        md.push_str(
            "`upcase_proto::uppercase_datagram` against Python's \
             `data.decode().upper().encode()` on the same bytes.\n\n",
        );
        md.push_str("| input | upcase_proto GB/s | Python GB/s | ratio |\n|---|--:|--:|--:|\n");
        for t in &report.transform {
            let _ = writeln!(
                md,
                "| {} ({} B) | {:.3} | {} | {} |",
                t.input,
                t.bytes,
                t.rust_gbps,
                t.python_gbps.map_or("–".into(), |g| format!("{g:.3}")),
                fmt_ratio(t.ratio)
            );
        }
    }
    md.push_str("\n## Targets\n\n| what | goal | measured | |\n|---|---|---|---|\n");
    for t in &report.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.what,
            t.goal,
            t.measured,
            fmt_met(t.met)
        );
    }
    md.push_str("\n## Servers\n\n");
    // The other server's program and words are the user's: the notes say them.
    for server in Server::ALL.into_iter().filter(|&s| s != Server::Other) {
        let _ = writeln!(md, "- {}: `{}`", server.name(), server.command_line());
    }
    if !report.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for note in &report.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    if !report.errors.is_empty() {
        md.push_str("\n## Errors\n\n");
        for error in &report.errors {
            let _ = writeln!(md, "- {error}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(replies_per_s: f64, lost: u64) -> Sample {
        Sample {
            replies_per_s,
            lost,
            p50_us: Some(50.0),
            p99_us: Some(90.0),
            mismatches: 0,
            replies: (replies_per_s * 5.0) as u64,
            server_cpu_s: None,
            run: 1,
            curve: Vec::new(),
        }
    }

    fn entry(row: Row, server: Server, load: Load, rates: &[f64]) -> Entry {
        Entry {
            row,
            server,
            load,
            samples: rates.iter().map(|&r| sample(r, 2)).collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 7.0]), Some(7.0));
    }

    #[test]
    fn ratio_needs_a_positive_reference() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }

    #[test]
    fn lines_take_ratios_against_the_reference_of_their_row() {
        let entries = vec![
            entry(
                Row::Flood64,
                Server::Upcase,
                Load::Loadgen,
                &[300.0, 100.0, 200.0],
            ),
            entry(Row::Flood64, Server::CRecvmmsg, Load::Loadgen, &[100.0]),
            entry(
                Row::ClientVsLoadgen,
                Server::CRecvmmsg,
                Load::Client,
                &[95.0],
            ),
        ];
        let lines = lines(&entries);
        assert_eq!(lines.len(), 4, "the client row repeats the loadgen line");
        assert_eq!(lines[0].replies_per_s, Some(200.0));
        assert_eq!(lines[0].ratio, Some(2.0));
        assert_eq!(lines[1].ratio, Some(1.0));
        assert_eq!(
            (lines[2].row, lines[2].load, lines[2].ratio),
            (Row::ClientVsLoadgen, Load::Loadgen, Some(1.0))
        );
        assert_eq!((lines[3].load, lines[3].ratio), (Load::Client, Some(0.95)));
        let targets = targets(&lines, &[], &[]);
        assert_eq!(targets[0].met, Some(true));
        assert_eq!(targets[1].met, None);
    }

    #[test]
    fn busy_poll_ping_is_judged_against_the_plain_c_server() {
        let mut busy = entry(Row::Ping, Server::UpcaseBusyPoll, Load::Loadgen, &[20000.0]);
        busy.samples[0].p50_us = Some(40.0);
        let entries = vec![
            entry(Row::Ping, Server::Upcase, Load::Loadgen, &[15000.0]),
            busy,
            entry(Row::Ping, Server::CPlain, Load::Loadgen, &[15000.0]),
        ];
        let targets = targets(&lines(&entries), &[], &[]);
        let find = |what: &str| {
            targets
                .iter()
                .find(|t| t.what.contains(what))
                .unwrap_or_else(|| panic!("no target {what:?}"))
        };
        let plain = find("upcase-server ping p50");
        assert_eq!((plain.measured.as_str(), plain.met), ("1.00x", Some(true)));
        let busy = find("--busy-poll ping p50");
        assert_eq!((busy.measured.as_str(), busy.met), ("0.80x", Some(true)));
    }

    #[test]
    fn tcp_targets_are_medians_of_the_ratios_of_each_run() {
        let runs = |server, rates: &[f64], p50s: &[f64]| {
            let mut e = entry(Row::TcpFlood, server, Load::Client, rates);
            for (i, (sample, p50)) in e.samples.iter_mut().zip(p50s).enumerate() {
                sample.run = i as u32 + 1;
                sample.p50_us = Some(*p50);
            }
            e
        };
        // Run by run: 1.2, 0.5, 1.1 (median 1.1); the medians' ratio is 1.0.
        let ours = runs(Server::Upcase, &[120.0, 100.0, 110.0], &[10.0, 10.0, 10.0]);
        let theirs = runs(Server::CTcp, &[100.0, 200.0, 100.0], &[10.0, 9.0, 11.0]);
        let mut entries = vec![ours, theirs];
        for e in entries.clone() {
            entries.push(Entry {
                row: Row::TcpPing,
                ..e
            });
        }
        // A run only one side measured is left out.
        entries[1].samples.push(Sample {
            run: 4,
            ..sample(1.0, 0)
        });
        let lines = lines(&entries);
        let flood_line = lines
            .iter()
            .find(|l| l.row == Row::TcpFlood && l.server == Server::Upcase)
            .unwrap();
        assert_eq!(flood_line.ratio, Some(110.0 / 100.0), "against C epoll");
        let targets = targets(&lines, &[], &[]);
        let find = |what: &str| targets.iter().find(|t| t.what.contains(what)).unwrap();
        let flood = find("TCP flood");
        assert_eq!((flood.measured.as_str(), flood.met), ("1.10x", Some(true)));
        let ping = find("TCP ping p50");
        // 10/10, 10/9, 10/11: median 1.00.
        assert_eq!((ping.measured.as_str(), ping.met), ("1.00x", Some(true)));
    }

    /// A report of nothing, from a test machine.
    fn test_report() -> Report {
        Report {
            machine: Machine {
                cores: 2,
                cpu: "Test CPU".into(),
                kernel: "6.1".into(),
                date: "today".into(),
                rustc: "rustc".into(),
                commit: "abc".into(),
                command: "cargo xtask bench --quick".into(),
            },
            settings: Settings {
                runs: 1,
                seconds: 1.0,
                quick: true,
                pinned: true,
            },
            targets: Vec::new(),
            lines: Vec::new(),
            memory: Vec::new(),
            transform: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn cpu_per_reply_is_judged_run_by_run_against_c_and_the_other_server() {
        // CPU seconds per run; 5 s of 100,000 replies/s each: 500,000 replies.
        let runs = |server, cpu: &[f64]| {
            let mut e = entry(Row::Flood64, server, Load::Loadgen, &[100_000.0; 3]);
            for (i, (sample, cpu)) in e.samples.iter_mut().zip(cpu).enumerate() {
                sample.run = i as u32 + 1;
                sample.server_cpu_s = Some(*cpu);
            }
            e
        };
        let entries = [
            runs(Server::Upcase, &[2.0, 2.2, 2.4]),
            // 2.0/2.0, 2.2/2.0, 2.4/2.0: median 1.10, over the goal.
            runs(Server::CRecvmmsg, &[2.0, 2.0, 2.0]),
            // 2.0/2.0, 2.2/2.2, 2.4/2.3: median 1.00.
            runs(Server::Other, &[2.0, 2.2, 2.3]),
        ];
        let lines = lines(&entries);
        let ours = lines.iter().find(|l| l.server == Server::Upcase).unwrap();
        assert_eq!(ours.server_cpu_us_per_reply, Some(4.4), "2.2 s / 500,000");
        let targets = targets(&lines, &[], &[]);
        let find = |what: &str| targets.iter().find(|t| t.what.contains(what)).unwrap();
        let c = find("CPU per reply vs C recvmmsg");
        assert_eq!((c.measured.as_str(), c.met), ("1.10x", Some(false)));
        let other = find("CPU per reply vs --other-server");
        assert_eq!((other.measured.as_str(), other.met), ("1.00x", Some(true)));
        let md = render_markdown(&Report {
            lines: lines.clone(),
            ..test_report()
        });
        assert!(md.contains("| 4.40 |"), "{md}");
    }

    #[test]
    fn the_markdown_lists_every_step_of_the_searches() {
        use crate::load::CurvePoint;
        let point = |offered_per_s, passed: bool| CurvePoint {
            offered_per_s,
            replies_per_s: offered_per_s as f64 * 0.9,
            loss: if passed { 0.0 } else { 0.25 },
            p50_us: Some(40.0),
            p99_us: Some(90.0),
            passed,
            failed_on: (!passed).then(|| "loss 25.000 % over 0.100 %".to_string()),
        };
        let mut search = entry(Row::FindRate, Server::Upcase, Load::Client, &[10_000.0]);
        search.samples[0].curve = vec![point(10_000, true), point(20_000, false)];
        let mut md = String::new();
        render_curves(&mut md, &lines(&[search]));
        assert!(md.contains("## find-rate: every step"), "{md}");
        assert!(
            md.contains("| upcase-server | 1 | 10,000 | 9,000 | 0.000 % | 40.0 | 90.0 | pass |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 20,000 | 18,000 | 25.000 % | 40.0 | 90.0 | fail: loss 25.000 % over 0.100 % |"
            ),
            "{md}"
        );
        let mut none = String::new();
        render_curves(&mut none, &[]);
        assert!(none.is_empty(), "no search, no section");
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(fmt_count(Some(1234567.4)), "1,234,567");
        assert_eq!(fmt_count(Some(999.0)), "999");
        assert_eq!(fmt_count(Some(1000.0)), "1,000");
        assert_eq!(fmt_count(None), "–");
    }

    #[test]
    fn markdown_table_has_one_line_per_measurement() {
        let mut failed = entry(Row::Ping, Server::Python, Load::Loadgen, &[]);
        failed.errors.push("Python seed did not answer".into());
        let entries = vec![
            entry(Row::Ping, Server::Upcase, Load::Loadgen, &[15000.0]),
            entry(Row::Ping, Server::CRecvmmsg, Load::Loadgen, &[12000.0]),
            failed,
        ];
        let lines = lines(&entries);
        let report = Report {
            targets: targets(&lines, &[], &[]),
            lines,
            memory: memory_lines(&[(
                Server::Upcase,
                Memory {
                    vm_hwm_kib: 8192,
                    vm_rss_kib: 4096,
                    threads: 2,
                },
            )]),
            transform: vec![TransformLine {
                input: "ascii".into(),
                bytes: 65536,
                rust_gbps: 20.0,
                python_gbps: Some(2.0),
                ratio: Some(10.0),
            }],
            notes: vec!["a note".into()],
            errors: vec!["an error".into()],
            ..test_report()
        };
        let md = render_markdown(&report);
        assert!(md.contains("`cargo xtask bench --quick`"), "{md}");
        assert!(
            md.contains(
                "| ping, 32 B | upcase-server | loadgen | 15,000 | 1.25x | 50.0 | 90.0 | 2 | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| ping, 32 B | Python seed | loadgen | – | – | – | – | – (1 failed) | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| upcase-server | 2 | 8.0 MiB | 4.0 MiB | 4.0 MiB |"),
            "{md}"
        );
        assert!(
            md.contains("| ascii (65536 B) | 20.000 | 2.000 | 10.00x |"),
            "{md}"
        );
        assert!(md.contains("- a note") && md.contains("- an error"), "{md}");
        let table_rows = md.lines().filter(|l| l.starts_with("| ping")).count();
        assert_eq!(table_rows, 3);
        // report.json reads back through the same types.
        let json = serde_json::to_string_pretty(&report).unwrap();
        let read: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(read.lines[0].replies_per_s, Some(15000.0), "{json}");
        assert_eq!(read.lines[0].row, Row::Ping);
        assert_eq!(read.lines[2].errors, ["Python seed did not answer"]);
        assert_eq!(read.memory[0].server_name, "upcase-server");
        assert_eq!(read.settings.runs, 1);
        assert_eq!(render_markdown(&read), md, "nothing is lost on the way");
    }
}
