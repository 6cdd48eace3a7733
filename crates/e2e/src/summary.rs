//! The server's `summary:` line, read into counters: `summary: received=N
//! replied=N bytes_in=N bytes_out=N invalid_utf8=N dropped_too_large=N
//! send_errors=N dropped_rate_limited=N dropped_ratio=N`, then, when TCP is
//! served, ` tcp_accepted=N tcp_refused=N tcp_timed_out=N tcp_bytes_in=N
//! tcp_bytes_out=N tcp_errors=N tcp_closed_at_stop=N`. With
//! `--proxy-protocol-from`, ` proxy_attributed=N proxy_unattributed=N
//! proxy_header_only=N proxy_malformed=N proxy_sessions=N
//! proxy_sessions_evicted=N` and, with TCP, ` tcp_proxy_attributed=N
//! tcp_proxy_unattributed=N tcp_proxy_malformed=N`. Keys it does not
//! know are passed over; a key it knows that is missing or not a count is
//! an error.

use std::collections::HashMap;
use std::ops::AddAssign;

use anyhow::{Context, bail};

const MARK: &str = "summary:";

/// What the server counted, as its summary line says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub udp: UdpCounts,
    /// `None` when the server served no TCP (the line has no `tcp_` keys).
    pub tcp: Option<TcpCounts>,
    /// `None` without `--proxy-protocol-from` (no `proxy_` keys).
    pub proxy: Option<ProxyCounts>,
}

/// The PROXY protocol's counters, `proxy_*` and `tcp_proxy_*` in the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Datagrams from listed proxies counted as the client a header named.
    pub attributed: u64,
    /// Datagrams from listed proxies counted as the proxy's own.
    pub unattributed: u64,
    /// Datagrams that were a header alone (not answered).
    pub header_only: u64,
    /// Datagrams dropped for a malformed header.
    pub malformed: u64,
    /// Sessions remembered at the end.
    pub sessions: u64,
    /// Sessions replaced before their idle time.
    pub sessions_evicted: u64,
    /// `(attributed, unattributed, malformed)` TCP connections, when TCP was served.
    pub tcp: Option<(u64, u64, u64)>,
}

/// The datagram counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounts {
    pub received: u64,
    pub replied: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub invalid_utf8: u64,
    pub dropped_too_large: u64,
    pub send_errors: u64,
    pub dropped_rate_limited: u64,
    pub dropped_ratio: u64,
}

/// The connection counters, `tcp_*` in the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounts {
    pub accepted: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
    pub closed_at_stop: u64,
}

impl UdpCounts {
    /// The datagrams whose fate a counter names: replied, dropped for a
    /// reason, or failed to send. Nothing vanishes when this equals
    /// `received`.
    pub fn accounted_for(&self) -> u64 {
        self.replied
            + self.dropped_too_large
            + self.dropped_rate_limited
            + self.dropped_ratio
            + self.send_errors
    }
}

impl AddAssign for UdpCounts {
    fn add_assign(&mut self, other: UdpCounts) {
        self.received += other.received;
        self.replied += other.replied;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.invalid_utf8 += other.invalid_utf8;
        self.dropped_too_large += other.dropped_too_large;
        self.send_errors += other.send_errors;
        self.dropped_rate_limited += other.dropped_rate_limited;
        self.dropped_ratio += other.dropped_ratio;
    }
}

impl Summary {
    /// The summary in a server's log: its last `summary:` line (the one it
    /// logs as it exits).
    pub fn from_log(log: &str) -> anyhow::Result<Summary> {
        let line = Summary::line_in(log)
            .with_context(|| format!("no summary line in the server's log:\n{log}"))?;
        Summary::parse(line)
    }

    /// The last summary line of `log`, from `summary:` on.
    pub fn line_in(log: &str) -> Option<&str> {
        log.lines()
            .rev()
            .find_map(|line| line.find(MARK).map(|at| &line[at..]))
    }

    /// Reads the counters of one line, from `summary:` on (or the words
    /// after it).
    pub fn parse(line: &str) -> anyhow::Result<Summary> {
        let words = line.find(MARK).map_or(line, |at| &line[at + MARK.len()..]);
        let values: HashMap<&str, &str> = words
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .map(|(key, value)| (key, value.trim_end_matches(',')))
            .collect();
        let count = |key: &str| -> anyhow::Result<u64> {
            let Some(value) = values.get(key) else {
                bail!("no {key}= in the summary line {line:?}");
            };
            value
                .parse()
                .with_context(|| format!("{key}={value} is not a count in {line:?}"))
        };
        let udp = UdpCounts {
            received: count("received")?,
            replied: count("replied")?,
            bytes_in: count("bytes_in")?,
            bytes_out: count("bytes_out")?,
            invalid_utf8: count("invalid_utf8")?,
            dropped_too_large: count("dropped_too_large")?,
            send_errors: count("send_errors")?,
            dropped_rate_limited: count("dropped_rate_limited")?,
            dropped_ratio: count("dropped_ratio")?,
        };
        let tcp = if values.keys().any(|key| key.starts_with("tcp_")) {
            Some(TcpCounts {
                accepted: count("tcp_accepted")?,
                refused: count("tcp_refused")?,
                timed_out: count("tcp_timed_out")?,
                bytes_in: count("tcp_bytes_in")?,
                bytes_out: count("tcp_bytes_out")?,
                errors: count("tcp_errors")?,
                closed_at_stop: count("tcp_closed_at_stop")?,
            })
        } else {
            None
        };
        let proxy = if values.contains_key("proxy_attributed") {
            Some(ProxyCounts {
                attributed: count("proxy_attributed")?,
                unattributed: count("proxy_unattributed")?,
                header_only: count("proxy_header_only")?,
                malformed: count("proxy_malformed")?,
                sessions: count("proxy_sessions")?,
                sessions_evicted: count("proxy_sessions_evicted")?,
                tcp: match tcp {
                    Some(_) => Some((
                        count("tcp_proxy_attributed")?,
                        count("tcp_proxy_unattributed")?,
                        count("tcp_proxy_malformed")?,
                    )),
                    None => None,
                },
            })
        } else {
            None
        };
        Ok(Summary { udp, tcp, proxy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "received=10 replied=7 bytes_in=100 bytes_out=90 invalid_utf8=2 \
                       dropped_too_large=1 send_errors=0 dropped_rate_limited=1 dropped_ratio=1";
    const TCP: &str = " tcp_accepted=3 tcp_refused=1 tcp_timed_out=0 tcp_bytes_in=40 \
                       tcp_bytes_out=44 tcp_errors=0 tcp_closed_at_stop=2";

    #[test]
    fn the_udp_counters_are_read_from_a_log_line() {
        let log =
            format!("2026 INFO upcase_server: ready\n2026 INFO upcase_server: summary: {UDP}\n");
        let summary = Summary::from_log(&log).unwrap();
        assert_eq!(
            summary.udp,
            UdpCounts {
                received: 10,
                replied: 7,
                bytes_in: 100,
                bytes_out: 90,
                invalid_utf8: 2,
                dropped_too_large: 1,
                send_errors: 0,
                dropped_rate_limited: 1,
                dropped_ratio: 1,
            }
        );
        assert_eq!(summary.udp.accounted_for(), 10);
        assert_eq!(summary.tcp, None);
        assert_eq!(Summary::line_in(&log), Some(&*format!("summary: {UDP}")));
    }

    #[test]
    fn the_tcp_counters_follow_when_tcp_is_served() {
        let summary = Summary::parse(&format!("summary: {UDP}{TCP}")).unwrap();
        let tcp = summary.tcp.unwrap();
        assert_eq!((tcp.accepted, tcp.refused, tcp.closed_at_stop), (3, 1, 2));
        assert_eq!((tcp.bytes_in, tcp.bytes_out), (40, 44));
    }

    #[test]
    fn unknown_keys_are_passed_over_and_missing_ones_are_errors() {
        let extra = format!("summary: dropped_other=4 {UDP} uptime=5s{TCP} note");
        assert_eq!(Summary::parse(&extra).unwrap().udp.received, 10);
        let without = UDP.replace("replied=7 ", "");
        let err = Summary::parse(&without).unwrap_err().to_string();
        assert!(err.contains("no replied="), "{err}");
        let bad = UDP.replace("replied=7", "replied=x");
        assert!(Summary::parse(&bad).is_err());
        let half_tcp = format!("{UDP} tcp_accepted=1");
        assert!(Summary::parse(&half_tcp).is_err());
        assert!(Summary::from_log("no summary here").is_err());
    }

    #[test]
    fn the_last_summary_is_the_one_at_the_exit() {
        let log = format!(
            "summary: {}\nsummary: {UDP}\n",
            UDP.replace("received=10", "received=1")
        );
        assert_eq!(Summary::from_log(&log).unwrap().udp.received, 10);
    }

    #[test]
    fn the_proxy_counters_come_with_the_option() {
        assert_eq!(
            Summary::parse(&format!("summary: {UDP}{TCP}"))
                .unwrap()
                .proxy,
            None
        );
        let proxy = " proxy_attributed=1 proxy_unattributed=2 proxy_header_only=3 \
                     proxy_malformed=4 proxy_sessions=5 proxy_sessions_evicted=6";
        let tcp_proxy = " tcp_proxy_attributed=7 tcp_proxy_unattributed=8 tcp_proxy_malformed=9";
        let counts = Summary::parse(&format!("summary: {UDP}{proxy}{TCP}{tcp_proxy}"))
            .unwrap()
            .proxy
            .unwrap();
        assert_eq!(
            counts,
            ProxyCounts {
                attributed: 1,
                unattributed: 2,
                header_only: 3,
                malformed: 4,
                sessions: 5,
                sessions_evicted: 6,
                tcp: Some((7, 8, 9)),
            }
        );
        let udp_only = Summary::parse(&format!("summary: {UDP}{proxy}")).unwrap();
        assert_eq!(udp_only.proxy.unwrap().tcp, None);
        assert!(Summary::parse(&format!("summary: {UDP}{proxy}{TCP}")).is_err());
    }

    #[test]
    fn counts_add_up() {
        let mut total = UdpCounts {
            received: 1,
            replied: 1,
            ..UdpCounts::default()
        };
        total += UdpCounts {
            received: 2,
            dropped_ratio: 2,
            ..UdpCounts::default()
        };
        assert_eq!((total.received, total.accounted_for()), (3, 3));
    }
}
