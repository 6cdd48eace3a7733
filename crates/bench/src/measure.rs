//! The measuring: which server/load pairs run (the plan), then every run
//! of every server in turn, each server started, probed until it answers,
//! driven row by row and stopped.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use upcase_e2e::{Memory, Process, reachable};

use crate::build::Tools;
use crate::load::{Length, Load, Row, Sample, Server};
use crate::procs::{Pinning, Role, STARTUP_LIMIT};
use crate::report::{Entry, fmt_count, fmt_us};

/// What one invocation measures and where it keeps things.
pub(crate) struct Bench {
    pub(crate) tools: Tools,
    pub(crate) pinning: Pinning,
    pub(crate) logs: PathBuf,
    pub(crate) length: Length,
}

fn available(tools: &Tools, server: Server) -> bool {
    match server {
        Server::Upcase
        | Server::UpcaseBusyPoll
        | Server::UpcaseGro
        | Server::UpcaseMetrics
        | Server::UpcasePortable => true,
        Server::CRecvmmsg | Server::CPlain | Server::CGro => tools.limit_server.is_some(),
        Server::Python => tools.python.is_some() && tools.seed_server.is_some(),
        Server::CTcp => tools.tcp_server.is_some(),
        Server::Other => tools.other.is_some(),
    }
}

/// The entries to fill for `rows`, in display order.
pub(crate) fn plan(
    tools: &Tools,
    rows: &[Row],
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Entry>> {
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
    for row in Row::ALL.into_iter().filter(|row| rows.contains(row)) {
        // The other server, where there is one, runs wherever ours does.
        let servers = row.servers().iter().flat_map(|&server| {
            let other = (server == Server::Upcase).then_some(Server::Other);
            std::iter::once(server).chain(other)
        });
        for server in servers {
            if !available(tools, server) {
                continue;
            }
            let both = primary == Load::Loadgen && tools.client.is_some();
            let loads: &[Load] = match row {
                Row::ClientVsLoadgen if both => &[Load::Client],
                Row::ClientVsLoadgen => continue,
                // loadgen speaks UDP only, and has no paced search.
                Row::TcpPing | Row::TcpFlood | Row::FindRate if tools.client.is_some() => {
                    &[Load::Client]
                }
                Row::TcpPing | Row::TcpFlood | Row::FindRate => continue,
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
pub(crate) fn measure(
    bench: &Bench,
    runs: u32,
    entries: &mut [Entry],
    errors: &mut Vec<String>,
) -> Vec<(Server, Memory)> {
    let length = bench.length;
    let searches = entries.iter().filter(|e| e.row == Row::FindRate).count() as f64;
    let loads = entries.len() as f64 - searches;
    let per_search = f64::from(length.max_steps) * (length.step_seconds + 0.3);
    eprintln!(
        "bench: {} load runs of {} s and {} searches of at most {} steps of {} s, about {:.0} s at most",
        loads * f64::from(runs),
        length.seconds,
        searches * f64::from(runs),
        length.max_steps,
        length.step_seconds,
        f64::from(runs) * (loads * (length.seconds + 0.5) + searches * per_search)
    );
    let mut memory = Vec::new();
    for run in 1..=runs {
        // Every other run starts the servers in reverse order, so that a
        // drift over the session does not always favour the same one.
        let mut order = Server::ALL.to_vec();
        if run % 2 == 0 {
            order.reverse();
        }
        for server in order {
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
                let cpu_before = guard.cpu_time();
                let result =
                    run_load(bench, entry.load, entry.row, addr, &load_label).and_then(|sample| {
                        match guard.exited() {
                            Some(status) => bail!(
                                "{} exited ({status}) during the load; stderr: {}",
                                server.name(),
                                guard.stderr_tail()
                            ),
                            None => Ok(Sample {
                                server_cpu_s: cpu_used(cpu_before, guard.cpu_time(), entry.row),
                                ..sample
                            }),
                        }
                    });
                match result {
                    Ok(sample) => {
                        eprintln!("bench: {what}: {}", describe(&sample));
                        entry.samples.push(Sample { run, ..sample });
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
                Ok(Some(reading)) => memory.push((server, reading)),
                // Off Linux: the report says the memory was not measured.
                Ok(None) => {}
                Err(err) => errors.push(format!("run {run}, {} memory: {err:#}", server.name())),
            }
            guard.stop();
        }
    }
    memory
}

/// The server's CPU seconds between two readings, where both were taken
/// (on Linux) and the row is a plain load: a search's steps pause between
/// rates, so its time is not one load's.
fn cpu_used(
    before: anyhow::Result<Option<Duration>>,
    after: anyhow::Result<Option<Duration>>,
    row: Row,
) -> Option<f64> {
    let (before, after) = (before.ok()??, after.ok()??);
    (!row.spec().find_rate).then(|| after.saturating_sub(before).as_secs_f64())
}

fn describe(sample: &Sample) -> String {
    let cpu = sample
        .server_cpu_us_per_reply()
        .map_or_else(String::new, |us| format!(", server CPU {us:.2} µs/reply"));
    format!(
        "{} replies/s, p50 {} µs, p99 {} µs, lost {}{cpu}{}",
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

/// Starts `server` and returns once it has answered a datagram (a line,
/// for a TCP-only server).
fn start_server(
    bench: &Bench,
    server: Server,
    label: &str,
) -> anyhow::Result<(Process, SocketAddr)> {
    let tools = &bench.tools;
    let port = match server {
        Server::Upcase
        | Server::UpcaseBusyPoll
        | Server::UpcaseGro
        | Server::UpcaseMetrics
        | Server::Other
        | Server::CTcp => 0,
        // Another process could take it before the server binds it; the
        // readiness probe then fails with a clear message.
        _ => upcase_e2e::free_udp_port().context("no free UDP port on loopback")?,
    };
    let (program, mut args): (&Path, Vec<OsString>) = match server {
        Server::Upcase
        | Server::UpcaseBusyPoll
        | Server::UpcaseGro
        | Server::UpcaseMetrics
        | Server::UpcasePortable => (&tools.server, Vec::new()),
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
        Server::CTcp => (
            tools
                .tcp_server
                .as_deref()
                .context("tcp_server is not built")?,
            Vec::new(),
        ),
        Server::Other => (
            &tools.other.as_ref().context("no --other-server")?.program,
            Vec::new(),
        ),
    };
    args.extend(server.args(port).into_iter().map(OsString::from));
    if let (Server::Other, Some(other)) = (server, &tools.other) {
        args.extend(other.words.iter().map(OsString::from));
    }
    let mut command = bench.pinning.command(Role::Server, program);
    command.args(args);
    let mut guard = Process::spawn(&mut command)
        .label(label)
        .logs_in(&bench.logs)
        .start()?;
    let addr = match server {
        Server::Upcase
        | Server::UpcaseBusyPoll
        | Server::UpcaseGro
        | Server::UpcaseMetrics
        | Server::UpcasePortable
        | Server::Other => reachable(guard.wait_ready(STARTUP_LIMIT)?.first()),
        Server::CTcp => {
            let port = guard
                .wait_for_stdout(STARTUP_LIMIT, tcp_server_port)
                .context("waiting for tcp_server's `ready port=P` line")?;
            SocketAddr::from(([127, 0, 0, 1], port))
        }
        _ => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    if server.tcp_only() {
        guard.wait_answering_tcp(addr, b"upcase bench probe\n", STARTUP_LIMIT)?;
    } else {
        guard.wait_answering(addr, b"upcase bench probe", STARTUP_LIMIT)?;
    }
    Ok((guard, addr))
}

/// The port in tcp_server's `ready port=P variant=epoll ...` line, once a
/// whole one is on its stdout.
fn tcp_server_port(stdout: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(stdout);
    let (whole, _) = text.rsplit_once('\n')?;
    whole.lines().find_map(|line| {
        line.strip_prefix("ready port=")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
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
    let spec = row.spec();
    command.args(load.args(spec, addr.port(), bench.length));
    let mut guard = Process::spawn(&mut command)
        .label(label)
        .logs_in(&bench.logs)
        .start()?;
    // Loss timeouts and draining add well under a second (a step of a
    // search too); the rest is slack for a loaded machine, while still
    // bounding a hung load tool.
    let length = bench.length;
    let busy = if spec.find_rate {
        f64::from(length.max_steps) * (length.step_seconds + 1.0)
    } else {
        length.seconds
    };
    let limit = Duration::from_secs_f64(busy) + Duration::from_secs(20);
    let status = guard.wait_within(limit)?;
    if !status.success() {
        bail!(
            "{} failed ({status}); stderr: {}",
            load.name(),
            guard.stderr_tail()
        );
    }
    load.parse(spec, &guard.stdout())
        .with_context(|| format!("see {}", bench.logs.join(format!("{label}.out")).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_without_c_uses_the_client_and_skips_its_comparison() {
        let tools = Tools {
            server: PathBuf::from("s"),
            client: Some(PathBuf::from("c")),
            limit_server: None,
            loadgen: None,
            tcp_server: None,
            python: None,
            seed_server: None,
            other: None,
        };
        let mut notes = Vec::new();
        let entries = plan(&tools, &Row::ALL, &mut notes).unwrap();
        assert!(entries.iter().all(|e| matches!(
            e.server,
            Server::Upcase
                | Server::UpcaseBusyPoll
                | Server::UpcaseGro
                | Server::UpcaseMetrics
                | Server::UpcasePortable
        ) && e.load == Load::Client));
        // Ping three times (with --busy-poll, with --io portable), flood
        // W=64 four times (with --gro, --metrics, --io portable), two more
        // floods, GSO twice (with and without --gro), two TCP, the search.
        assert_eq!(entries.len(), 14);
        assert!(!notes.is_empty());
        let none = Tools {
            client: None,
            ..tools
        };
        assert!(plan(&none, &Row::ALL, &mut notes).is_err());
    }

    /// Every tool found, and no other server.
    fn every_tool() -> Tools {
        Tools {
            server: PathBuf::from("s"),
            client: Some(PathBuf::from("c")),
            limit_server: Some(PathBuf::from("l")),
            loadgen: Some(PathBuf::from("g")),
            tcp_server: Some(PathBuf::from("t")),
            python: Some(PathBuf::from("p")),
            seed_server: Some(PathBuf::from("seed.py")),
            other: None,
        }
    }

    #[test]
    fn full_plan_compares_client_with_loadgen_on_the_reference() {
        let tools = every_tool();
        let entries = plan(&tools, &Row::ALL, &mut Vec::new()).unwrap();
        // 4 classic rows x 4 servers, ping with --busy-poll, flood W=64 with
        // --gro, --metrics and --io portable, ping with --io portable, GSO x
        // 4 servers x 2 loads, client x 1, TCP x 2 x 2 servers, the search x
        // 2 servers.
        assert_eq!(entries.len(), 36);
        let client: Vec<_> = entries.iter().filter(|e| e.load == Load::Client).collect();
        assert_eq!(client.len(), 11);
        let tcp: Vec<_> = entries
            .iter()
            .filter(|e| matches!(e.row, Row::TcpPing | Row::TcpFlood))
            .collect();
        assert_eq!(tcp.len(), 4);
        assert!(
            tcp.iter().all(
                |e| e.load == Load::Client && matches!(e.server, Server::Upcase | Server::CTcp)
            )
        );
        assert!(
            entries
                .iter()
                .filter(|e| e.row == Row::FindRate)
                .map(|e| (e.server, e.load))
                .eq([
                    (Server::Upcase, Load::Client),
                    (Server::CRecvmmsg, Load::Client)
                ])
        );
        assert!(
            client
                .iter()
                .any(|e| (e.row, e.server) == (Row::ClientVsLoadgen, Server::CRecvmmsg))
        );
        assert!(client.iter().filter(|e| e.row == Row::Gso).count() == 4);
    }

    #[test]
    fn rows_filter_the_plan_and_the_other_server_runs_where_ours_does() {
        let tools = Tools {
            other: Some(crate::build::OtherServer {
                program: PathBuf::from("o"),
                words: vec!["--io".into(), "uring".into()],
            }),
            ..every_tool()
        };
        let entries = plan(&tools, &[Row::TcpFlood, Row::Flood64], &mut Vec::new()).unwrap();
        let got: Vec<_> = entries.iter().map(|e| (e.row, e.server)).collect();
        assert_eq!(
            got,
            [
                (Row::Flood64, Server::Upcase),
                (Row::Flood64, Server::Other),
                (Row::Flood64, Server::UpcaseGro),
                (Row::Flood64, Server::UpcaseMetrics),
                (Row::Flood64, Server::UpcasePortable),
                (Row::Flood64, Server::CRecvmmsg),
                (Row::Flood64, Server::CPlain),
                (Row::Flood64, Server::Python),
                (Row::TcpFlood, Server::Upcase),
                (Row::TcpFlood, Server::Other),
                (Row::TcpFlood, Server::CTcp),
            ]
        );
        let without = Tools {
            other: None,
            ..tools
        };
        let entries = plan(&without, &[Row::TcpPing], &mut Vec::new()).unwrap();
        assert!(
            entries
                .iter()
                .map(|e| e.server)
                .eq([Server::Upcase, Server::CTcp])
        );
    }

    #[test]
    fn the_tcp_reference_says_its_port_in_its_ready_line() {
        let line = b"ready port=40123 variant=epoll threads=1 maxconn=1024 buf=16384 spin=0 addr=127.0.0.1\n";
        assert_eq!(tcp_server_port(line), Some(40123));
        assert_eq!(tcp_server_port(&line[..20]), None, "not a whole line yet");
        assert_eq!(tcp_server_port(b"listening\n"), None);
    }
}
