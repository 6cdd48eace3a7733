//! What is measured: the rows of the table, the servers and load tools, their
//! command lines, and the parsing of what the load tools print.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::json::{ClientRateSearch, ClientRun};

/// One line of the comparison: a load pattern. `--rows` names them in
/// kebab case (`tcp-flood`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Row {
    Ping,
    Flood64,
    Flood256,
    Flood64Large,
    Gso,
    ClientVsLoadgen,
    TcpPing,
    TcpFlood,
    FindRate,
}

impl Row {
    /// Display order.
    pub(crate) const ALL: [Row; 9] = [
        Row::Ping,
        Row::Flood64,
        Row::Flood256,
        Row::Flood64Large,
        Row::Gso,
        Row::ClientVsLoadgen,
        Row::TcpPing,
        Row::TcpFlood,
        Row::FindRate,
    ];

    /// Order within one server's session: our client right after the
    /// loadgen run it is compared with, so both see the same conditions.
    pub(crate) const RUN_ORDER: [Row; 9] = [
        Row::Ping,
        Row::Flood64,
        Row::ClientVsLoadgen,
        Row::Flood256,
        Row::Flood64Large,
        Row::Gso,
        Row::TcpPing,
        Row::TcpFlood,
        Row::FindRate,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Row::Ping => "ping, 32 B",
            Row::Flood64 => "flood W=64, 32 B",
            Row::Flood256 => "flood W=256, 32 B",
            Row::Flood64Large => "flood W=64, 1400 B",
            Row::Gso => "flood W=64, 32 B, GSO send + GRO receive",
            Row::ClientVsLoadgen => "client vs loadgen: flood W=64, 32 B",
            Row::TcpPing => "TCP ping, 32 B, 1 connection",
            Row::TcpFlood => "TCP flood W=64, 32 B, 16 connections",
            Row::FindRate => "find-rate: highest paced rate, W=256, 32 B",
        }
    }

    /// The server every ratio of the row is taken against.
    pub(crate) fn reference(self) -> Server {
        match self {
            Row::TcpPing | Row::TcpFlood => Server::CTcp,
            _ => Server::CRecvmmsg,
        }
    }

    pub(crate) fn spec(self) -> LoadSpec {
        let flood = |window, size, gso| LoadSpec {
            ping: false,
            window,
            size,
            gso,
            tcp_connections: None,
            find_rate: false,
        };
        let ping = LoadSpec {
            ping: true,
            window: 1,
            size: 32,
            gso: false,
            tcp_connections: None,
            find_rate: false,
        };
        match self {
            Row::Ping => ping,
            Row::Flood64 | Row::ClientVsLoadgen => flood(64, 32, false),
            Row::Flood256 => flood(256, 32, false),
            Row::Flood64Large => flood(64, 1400, false),
            Row::Gso => flood(64, 32, true),
            Row::TcpPing => LoadSpec {
                tcp_connections: Some(1),
                ..ping
            },
            Row::TcpFlood => LoadSpec {
                tcp_connections: Some(16),
                ..flood(64, 32, false)
            },
            // A window of 256, so that the server's capacity, not the
            // window over the round trip, is what the search finds.
            Row::FindRate => LoadSpec {
                find_rate: true,
                ..flood(256, 32, false)
            },
        }
    }

    pub(crate) fn servers(self) -> &'static [Server] {
        const CLASSIC: &[Server] = &[
            Server::Upcase,
            Server::CRecvmmsg,
            Server::CPlain,
            Server::Python,
        ];
        match self {
            // --busy-poll is a latency mode: judged on the ping row only.
            // With --io portable too, on this row and the next, to show
            // what Linux's batched path buys on the same machine.
            Row::Ping => &[
                Server::Upcase,
                Server::UpcaseBusyPoll,
                Server::UpcasePortable,
                Server::CRecvmmsg,
                Server::CPlain,
                Server::Python,
            ],
            // With --gro too, to show what GRO costs an ordinary sender,
            // and with --metrics, to show that serving them costs nothing.
            Row::Flood64 => &[
                Server::Upcase,
                Server::UpcaseGro,
                Server::UpcaseMetrics,
                Server::UpcasePortable,
                Server::CRecvmmsg,
                Server::CPlain,
                Server::Python,
            ],
            Row::Flood256 | Row::Flood64Large => CLASSIC,
            // The servers with a GSO/GRO path, and without it (ours by
            // default, the reference).
            Row::Gso => &[
                Server::UpcaseGro,
                Server::Upcase,
                Server::CGro,
                Server::CRecvmmsg,
            ],
            Row::ClientVsLoadgen => &[Server::CRecvmmsg],
            // Against the C epoll server of ../shared/anchors.
            Row::TcpPing | Row::TcpFlood => &[Server::Upcase, Server::CTcp],
            Row::FindRate => &[Server::Upcase, Server::CRecvmmsg],
        }
    }
}

/// The shape of the load of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoadSpec {
    pub(crate) ping: bool,
    pub(crate) window: u32,
    pub(crate) size: u32,
    /// Send with UDP GSO and receive with UDP GRO.
    pub(crate) gso: bool,
    /// Over TCP, on this many connections, instead of UDP.
    pub(crate) tcp_connections: Option<u32>,
    /// `upcase-client bench --find-rate`: a search, not one run.
    pub(crate) find_rate: bool,
}

/// How long the load of one row runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Length {
    /// Seconds of one run.
    pub(crate) seconds: f64,
    /// `--find-rate`: seconds of each step, and the most steps.
    pub(crate) step_seconds: f64,
    pub(crate) max_steps: u32,
    /// `--find-rate` with bounds any machine meets, for a smoke run that
    /// checks the search works, not what it finds.
    pub(crate) loose: bool,
}

impl Length {
    /// Runs of `seconds`; a search in steps of a fifth of that (0.2 s to
    /// 1 s), at most 16 of them (4, loosely bounded, with `quick`).
    pub(crate) fn new(seconds: f64, quick: bool) -> Length {
        Length {
            seconds,
            step_seconds: (seconds / 5.0).clamp(0.2, 1.0),
            max_steps: if quick { 4 } else { 16 },
            loose: quick,
        }
    }
}

/// The first rate of the bench's searches: a tenth of what any server of
/// the UDP rows carries here, so the doubling starts on a passing step and
/// takes few steps to the top.
const FIRST_SEARCH_RATE: &str = "10000";

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Server {
    Upcase,
    UpcaseBusyPoll,
    UpcaseGro,
    UpcaseMetrics,
    UpcasePortable,
    CRecvmmsg,
    CPlain,
    Python,
    CGro,
    CTcp,
    /// `--other-server` with `--other-args`: another build or option of
    /// ours, on every row upcase-server runs, to compare in the same run.
    Other,
}

impl Server {
    /// Start order within a run.
    pub(crate) const ALL: [Server; 11] = [
        Server::Upcase,
        // Right after ours, so the two see the same moment of the machine.
        Server::Other,
        Server::UpcaseBusyPoll,
        Server::UpcaseGro,
        Server::UpcaseMetrics,
        Server::UpcasePortable,
        Server::CRecvmmsg,
        Server::CPlain,
        Server::Python,
        Server::CGro,
        Server::CTcp,
    ];

    /// The reference of the UDP rows (the TCP rows have their own: see
    /// [`Row::reference`]).
    pub(crate) const REFERENCE: Server = Server::CRecvmmsg;

    pub(crate) fn name(self) -> &'static str {
        match self {
            Server::Upcase => "upcase-server",
            Server::UpcaseBusyPoll => "upcase-server --busy-poll",
            Server::UpcaseGro => "upcase-server --gro",
            Server::UpcaseMetrics => "upcase-server --metrics",
            Server::UpcasePortable => "upcase-server --io portable",
            Server::CRecvmmsg => "C recvmmsg",
            Server::CPlain => "C plain",
            Server::Python => "Python seed",
            Server::CGro => "C GRO/GSO",
            Server::CTcp => "C epoll",
            Server::Other => "other upcase-server",
        }
    }

    /// The program, as the report names it.
    fn program(self) -> &'static str {
        match self {
            Server::Upcase
            | Server::UpcaseBusyPoll
            | Server::UpcaseGro
            | Server::UpcaseMetrics
            | Server::UpcasePortable => "upcase-server",
            Server::Other => "OTHER-SERVER",
            Server::CRecvmmsg | Server::CPlain | Server::CGro => "limit_server",
            Server::Python => "python3 seed_udp_server.py",
            Server::CTcp => "tcp_server",
        }
    }

    /// The words after the program, `PORT` standing for the port. Our
    /// server picks its own port (`--port 0`) and says which in its ready
    /// line.
    fn words(self) -> Vec<&'static str> {
        const UPCASE: [&str; 6] = ["--bind", "127.0.0.1", "--port", "0", "--threads", "1"];
        match self {
            // The other server's own words (`--other-args`) follow.
            Server::Upcase | Server::Other => UPCASE.to_vec(),
            Server::UpcaseBusyPoll => {
                [&UPCASE[..], &["--transport", "udp", "--busy-poll"]].concat()
            }
            Server::UpcaseGro => [&UPCASE[..], &["--transport", "udp", "--gro"]].concat(),
            // Served but never scraped during the run: what it costs is
            // the counters it keeps, not the scrapes.
            Server::UpcaseMetrics => [
                &UPCASE[..],
                &["--transport", "udp", "--metrics", "127.0.0.1:0"],
            ]
            .concat(),
            Server::UpcasePortable => {
                [&UPCASE[..], &["--transport", "udp", "--io", "portable"]].concat()
            }
            Server::CRecvmmsg => vec!["-a", "127.0.0.1", "-p", "PORT", "-r", "4194304"],
            Server::CPlain => vec!["-a", "127.0.0.1", "-p", "PORT", "-n"],
            Server::Python => vec!["PORT"],
            Server::CGro => vec!["-a", "127.0.0.1", "-p", "PORT", "-g", "-r", "4194304"],
            // It picks its own port too, and says which in `ready port=P`.
            Server::CTcp => vec!["-a", "127.0.0.1", "-p", "0"],
        }
    }

    /// Whether it serves TCP (and is probed over TCP), not UDP.
    pub(crate) fn tcp_only(self) -> bool {
        self == Server::CTcp
    }

    /// How it is started, for the report (`PORT` stands for the port).
    pub(crate) fn command_line(self) -> String {
        std::iter::once(self.program())
            .chain(self.words())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Arguments after the program, for a server on `port`.
    pub(crate) fn args(self, port: u16) -> Vec<String> {
        self.words()
            .into_iter()
            .map(|word| match word {
                "PORT" => port.to_string(),
                word => word.to_string(),
            })
            .collect()
    }
}

/// What generates the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Load {
    /// The C reference load generator.
    Loadgen,
    /// `upcase-client bench`.
    Client,
}

impl Load {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Load::Loadgen => "loadgen",
            Load::Client => "upcase-client",
        }
    }

    /// Arguments for one run against `port`, as long as `length` says.
    pub(crate) fn args(self, spec: LoadSpec, port: u16, length: Length) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |words: &[&str]| args.extend(words.iter().map(|w| w.to_string()));
        let (window, size) = (spec.window.to_string(), spec.size.to_string());
        let mode = if spec.ping { "ping" } else { "flood" };
        let seconds = if spec.find_rate {
            length.step_seconds
        } else {
            length.seconds
        };
        match self {
            Load::Loadgen => {
                let (port, seconds) = (port.to_string(), format!("{seconds}"));
                push(&["-a", "127.0.0.1", "-p", &port, "-d", &seconds, "-m", mode]);
                if !spec.ping {
                    push(&["-w", &window]);
                }
                push(&["-s", &size]);
                if spec.gso {
                    push(&["-G", "-g"]);
                }
            }
            Load::Client => {
                let millis = format!("{}ms", (seconds * 1000.0).round());
                let sockets = spec.tcp_connections.unwrap_or(1).to_string();
                push(&[
                    "bench",
                    "--mode",
                    mode,
                    "--window",
                    &window,
                    "--sockets",
                    &sockets,
                ]);
                if spec.tcp_connections.is_some() {
                    push(&["--tcp"]);
                }
                push(&["--size", &size, "--duration", &millis]);
                if spec.gso {
                    push(&["--gso"]);
                }
                if spec.find_rate {
                    let steps = length.max_steps.to_string();
                    push(&["--find-rate", "--rate", FIRST_SEARCH_RATE]);
                    push(&["--max-steps", &steps]);
                    if length.loose {
                        push(&["--max-loss", "50%", "--max-p99", "1s"]);
                    }
                }
                push(&[
                    "--server",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--json",
                ]);
            }
        }
        args
    }

    /// What the run of `spec` printed on `stdout`.
    pub(crate) fn parse(self, spec: LoadSpec, stdout: &str) -> anyhow::Result<Sample> {
        match self {
            Load::Loadgen => parse_loadgen(stdout),
            Load::Client if spec.find_rate => parse_client_search(stdout),
            Load::Client => parse_client_json(stdout),
        }
    }
}

/// One step of a `--find-rate` search, as the curve shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CurvePoint {
    pub(crate) offered_per_s: u64,
    pub(crate) replies_per_s: f64,
    pub(crate) loss: f64,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) passed: bool,
    /// Why a step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failed_on: Option<String>,
}

/// What one load run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sample {
    pub(crate) replies_per_s: f64,
    pub(crate) lost: u64,
    /// `None` when no reply came back, so there is no latency to speak of.
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    /// Replies that were not the uppercase of their request.
    pub(crate) mismatches: u64,
    /// Replies counted during the measurement (correct ones, for the
    /// client); 0 for a search.
    #[serde(default)]
    pub(crate) replies: u64,
    /// The CPU time the server's threads used while the load ran, in
    /// seconds; `None` where it is not measured (off Linux, a search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_s: Option<f64>,
    /// Which run of the bench it was (from 1), to pair it with the
    /// reference's sample of the same run.
    #[serde(default)]
    pub(crate) run: u32,
    /// A `--find-rate` search's steps (its sample is the highest rate that
    /// passed, as `replies_per_s`, with that step's figures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) curve: Vec<CurvePoint>,
}

impl Sample {
    /// The server's CPU time per reply, in µs: what a reply costs the
    /// server, whichever side limited the rate.
    pub(crate) fn server_cpu_us_per_reply(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.replies > 0).then(|| cpu * 1e6 / self.replies as f64)
    }
}

/// Reads loadgen's `RESULT key=value ...` line.
pub(crate) fn parse_loadgen(stdout: &str) -> anyhow::Result<Sample> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .context("loadgen printed no RESULT line")?;
    let field = |key: &str| -> anyhow::Result<&str> {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("loadgen's RESULT line has no {key}="))
    };
    let number = |key: &str| -> anyhow::Result<f64> {
        let text = field(key)?;
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| format!("loadgen's {key}={text} is not a number"))
    };
    let count = |key: &str| -> anyhow::Result<u64> {
        let text = field(key)?;
        text.parse::<u64>()
            .with_context(|| format!("loadgen's {key}={text} is not a count"))
    };
    Ok(Sample {
        replies_per_s: number("replies_per_s")?,
        lost: count("lost")?,
        // loadgen prints -1 when it has no latency sample.
        p50_us: Some(number("p50_us")?).filter(|v| *v >= 0.0),
        p99_us: Some(number("p99_us")?).filter(|v| *v >= 0.0),
        mismatches: count("mismatches").unwrap_or(0),
        replies: count("replies")?,
        server_cpu_s: None,
        run: 0,
        curve: Vec::new(),
    })
}

/// Reads what `upcase-client bench --json` printed.
pub(crate) fn parse_client_json(stdout: &str) -> anyhow::Result<Sample> {
    let run = ClientRun::from_stdout(stdout)?;
    Ok(Sample {
        replies_per_s: run.replies_per_s,
        lost: run.lost,
        p50_us: run.p50_us.filter(|v| *v >= 0.0),
        p99_us: run.p99_us.filter(|v| *v >= 0.0),
        mismatches: run.wrong,
        replies: run.correct,
        server_cpu_s: None,
        run: 0,
        curve: Vec::new(),
    })
}

/// Reads what `upcase-client bench --find-rate --json` printed: the
/// highest rate that passed stands for the run, with its step's figures.
pub(crate) fn parse_client_search(stdout: &str) -> anyhow::Result<Sample> {
    let search = ClientRateSearch::from_stdout(stdout)?;
    let found = search
        .found_per_s
        .context("the search found no rate that passed")?;
    let best = search
        .steps
        .iter()
        .find(|s| s.passed && s.offered_per_s == found)
        .context("the search's JSON has no step at the rate it found")?;
    Ok(Sample {
        replies_per_s: found as f64,
        lost: best.lost,
        p50_us: best.p50_us,
        p99_us: best.p99_us,
        mismatches: search.steps.iter().map(|s| s.wrong).sum(),
        replies: 0,
        server_cpu_s: None,
        run: 0,
        curve: search
            .steps
            .iter()
            .map(|s| CurvePoint {
                offered_per_s: s.offered_per_s,
                replies_per_s: s.replies_per_s,
                loss: s.loss,
                p50_us: s.p50_us,
                p99_us: s.p99_us,
                passed: s.passed,
                failed_on: s.failed_on.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = "RESULT mode=flood host=127.0.0.1 port=4000 size=32 window=64 \
        sockets=1 batch=64 duration_s=5.000 sent=1500064 replies=1500000 \
        replies_per_s=300000 lost=64 late=0 mismatches=0 errors=0 refused=0 \
        p50_us=201.50 p90_us=250.00 p99_us=390.25 p999_us=500.00 max_us=900.00 \
        loadgen_cpu_pct=99.0 syscalls_per_reply=0.05 spin=0 extra_ns=0 gso=0 gro=0 \
        payload_MBps=9.60 rx_bufs=1500000 coalesced_rx_bufs=0 replies_per_rx_buf=1.00 \
        requests_per_send=8.00\n";

    #[test]
    fn loadgen_result_line_is_read() {
        let sample = parse_loadgen(&format!("warming up\n{RESULT}")).unwrap();
        assert_eq!(
            sample,
            Sample {
                replies_per_s: 300000.0,
                lost: 64,
                p50_us: Some(201.5),
                p99_us: Some(390.25),
                mismatches: 0,
                replies: 1500000,
                server_cpu_s: None,
                run: 0,
                curve: Vec::new(),
            }
        );
    }

    #[test]
    fn loadgen_without_replies_has_no_latency() {
        let line = RESULT
            .replace("p50_us=201.50", "p50_us=-1.00")
            .replace("p99_us=390.25", "p99_us=-1.00");
        let sample = parse_loadgen(&line).unwrap();
        assert_eq!((sample.p50_us, sample.p99_us), (None, None));
    }

    #[test]
    fn loadgen_keys_are_matched_whole() {
        // `p999_us` must not be taken for `p99_us`, nor `replies_per_s`
        // for `replies`, wherever they stand.
        let line = "RESULT p999_us=7 replies_per_s=1 lost=0 p50_us=2 p99_us=3 replies=5";
        let sample = parse_loadgen(line).unwrap();
        assert_eq!((sample.p99_us, sample.replies), (Some(3.0), 5));
    }

    #[test]
    fn bad_loadgen_output_is_an_error() {
        assert!(parse_loadgen("usage: loadgen -p port").is_err());
        assert!(parse_loadgen("RESULT replies_per_s=12 p50_us=1 p99_us=2").is_err());
        assert!(parse_loadgen("RESULT replies_per_s=x lost=0 p50_us=1 p99_us=2").is_err());
    }

    #[test]
    fn client_json_is_read() {
        let out = "note\n{\"server\": \"127.0.0.1:4000\", \"transport\": \"udp\", \
                   \"mode\": \"flood\", \"size\": 32, \"window\": 64, \"sockets\": 1, \
                   \"sent\": 10, \"correct\": 5, \"replies_per_s\": 250000.5, \"lost\": 3, \
                   \"p50_us\": 40.0, \"p99_us\": null, \"max_us\": null, \"wrong\": 2, \
                   \"extra\": \"ignored\"}\n";
        let sample = parse_client_json(out).unwrap();
        assert_eq!(sample.replies_per_s, 250000.5);
        assert_eq!(sample.lost, 3);
        assert_eq!(sample.mismatches, 2);
        assert_eq!((sample.p50_us, sample.p99_us), (Some(40.0), None));
        assert!(parse_client_json("{\"lost\": 0}").is_err());
        assert!(parse_client_json("{\"replies_per_s\": 1}").is_err());
        assert!(parse_client_json("no json").is_err());
    }

    #[test]
    fn servers_start_as_the_report_says() {
        assert_eq!(
            Server::UpcaseGro.command_line(),
            "upcase-server --bind 127.0.0.1 --port 0 --threads 1 --transport udp --gro"
        );
        assert_eq!(
            Server::CRecvmmsg.args(4000).join(" "),
            "-a 127.0.0.1 -p 4000 -r 4194304"
        );
        assert_eq!(Server::Python.args(4000), ["4000"]);
        for server in Server::ALL {
            let line = server.command_line().replace("PORT", "4000");
            assert!(line.ends_with(&server.args(4000).join(" ")), "{line}");
        }
    }

    #[test]
    fn load_arguments_follow_the_row() {
        let quick = Length::new(1.0, true);
        let full = Length::new(5.0, false);
        let args = Load::Loadgen.args(Row::Gso.spec(), 4000, quick).join(" ");
        assert_eq!(args, "-a 127.0.0.1 -p 4000 -d 1 -m flood -w 64 -s 32 -G -g");
        let args = Load::Loadgen.args(Row::Ping.spec(), 4000, full).join(" ");
        assert_eq!(args, "-a 127.0.0.1 -p 4000 -d 5 -m ping -s 32");
        let args = Load::Client.args(Row::Flood64Large.spec(), 4000, Length::new(2.5, false));
        assert!(args.windows(2).any(|w| w == ["--size", "1400"]));
        assert!(args.windows(2).any(|w| w == ["--duration", "2500ms"]));
        assert!(!args.contains(&"--tcp".to_string()));
        let args = Load::Client.args(Row::TcpFlood.spec(), 4000, quick);
        assert!(args.contains(&"--tcp".to_string()));
        assert!(args.windows(2).any(|w| w == ["--sockets", "16"]));
        assert!(args.windows(2).any(|w| w == ["--window", "64"]));
        assert!(!args.contains(&"--find-rate".to_string()));
    }

    #[test]
    fn find_rate_runs_in_short_steps_and_loosely_when_quick() {
        let args = Load::Client.args(Row::FindRate.spec(), 4000, Length::new(5.0, false));
        let line = args.join(" ");
        assert!(
            line.contains("--find-rate --rate 10000 --max-steps 16"),
            "{line}"
        );
        assert!(line.contains("--duration 1000ms"), "{line}");
        assert!(line.contains("--window 256"), "{line}");
        assert!(!line.contains("--max-p99"), "{line}");
        let quick = Load::Client.args(Row::FindRate.spec(), 4000, Length::new(1.0, true));
        let line = quick.join(" ");
        assert!(
            line.contains("--max-steps 4 --max-loss 50% --max-p99 1s"),
            "{line}"
        );
        assert!(line.contains("--duration 200ms"), "{line}");
    }

    #[test]
    fn a_search_stands_for_its_highest_passing_step() {
        let out = r#"{"server":"127.0.0.1:4000","found_per_s":20000,"replies_per_s":19999.0,
            "steps":[
              {"offered_per_s":10000,"sent_per_s":10000.0,"replies_per_s":10000.0,"sent":10000,"correct":10000,"wrong":0,"lost":0,"loss":0.0,"p50_us":40.0,"p99_us":90.0,"passed":true},
              {"offered_per_s":40000,"sent_per_s":40000.0,"replies_per_s":30000.0,"sent":40000,"correct":30000,"wrong":0,"lost":10000,"loss":0.25,"p50_us":900.0,"p99_us":null,"passed":false},
              {"offered_per_s":20000,"sent_per_s":20000.0,"replies_per_s":19999.0,"sent":20000,"correct":19999,"wrong":0,"lost":1,"loss":0.00005,"p50_us":50.0,"p99_us":120.0,"passed":true}
            ]}"#.replace('\n', "");
        let sample = parse_client_search(&out).unwrap();
        assert_eq!(sample.replies_per_s, 20_000.0);
        assert_eq!((sample.lost, sample.p99_us), (1, Some(120.0)));
        assert_eq!(sample.curve.len(), 3);
        assert!(!sample.curve[1].passed);
        let none = out.replace("\"found_per_s\":20000", "\"found_per_s\":null");
        assert!(parse_client_search(&none).is_err());
    }
}
