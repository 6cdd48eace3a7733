//! The counters in the Prometheus text exposition format, version 0.0.4:
//! every family with its `# HELP` and `# TYPE`, counters named `..._total`.
//! Pure: the counts in, the text out; `metrics` serves it.
//!
//! The names, one family per summary counter (and a few the summary has
//! not): `upcase_udp_*` when UDP is served, `upcase_tcp_*` when TCP is,
//! `upcase_build_info` always.

use std::fmt::Write;

use crate::batch_sizes::BatchSizes;
use crate::counters::Counters;
use crate::serving::Totals;
use crate::sessions::SessionStats;
use crate::tcp::TcpCounters;

/// The `Content-Type` of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition of `totals`, with the UDP families when `udp` was served
/// and the TCP families when `totals` has TCP counts.
pub(crate) fn render(totals: &Totals, udp: bool, version: &str) -> String {
    let mut out = Exposition(String::with_capacity(4096));
    out.family(
        "upcase_build_info",
        "gauge",
        "The upcase-server that is running, by version; always 1.",
    );
    out.sample("upcase_build_info", &[("version", version)], 1);
    if udp {
        out.udp(&totals.udp);
        if let Some(sessions) = &totals.sessions {
            out.udp_proxy(&totals.udp, sessions);
        }
    }
    if let Some(tcp) = &totals.tcp {
        out.tcp(tcp);
        if totals.sessions.is_some() {
            out.tcp_proxy(tcp);
        }
    }
    out.0
}

struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape_label(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A counter family of one sample per value of `label`.
    fn by_label(&mut self, name: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
        self.family(name, "counter", help);
        for &(value, count) in samples {
            self.sample(name, &[(label, value)], count);
        }
    }

    /// A family of one unlabelled sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn udp(&mut self, c: &Counters) {
        let counter = "counter";
        self.one(
            "upcase_udp_datagrams_received_total",
            counter,
            "UDP datagrams received; each is replied, dropped or failed to send.",
            c.received,
        );
        self.one(
            "upcase_udp_replies_sent_total",
            counter,
            "UDP replies sent.",
            c.replied,
        );
        self.one(
            "upcase_udp_received_bytes_total",
            counter,
            "Payload bytes of the UDP datagrams received.",
            c.bytes_in,
        );
        self.one(
            "upcase_udp_sent_bytes_total",
            counter,
            "Payload bytes of the UDP replies sent.",
            c.bytes_out,
        );
        self.by_label(
            "upcase_udp_dropped_total",
            "UDP datagrams not answered, by reason: too_large (the reply would not fit one datagram), rate_limited (--rate-limit), ratio (--max-reply-ratio), proxy_malformed (a listed proxy's malformed PROXY header).",
            "reason",
            &[
                ("too_large", c.dropped_too_large),
                ("rate_limited", c.dropped_rate_limited),
                ("ratio", c.dropped_ratio),
                ("proxy_malformed", c.proxy_malformed),
            ],
        );
        self.one(
            "upcase_udp_send_errors_total",
            counter,
            "UDP replies the system refused to send.",
            c.send_errors,
        );
        self.one(
            "upcase_udp_receive_errors_total",
            counter,
            "UDP receive errors the server carried on after (ICMP errors, no buffers, cut datagrams).",
            c.recv_errors,
        );
        self.one(
            "upcase_udp_invalid_utf8_total",
            counter,
            "UDP datagrams that were not valid UTF-8, answered or not.",
            c.invalid_utf8,
        );
        self.histogram(
            "upcase_udp_batch_datagrams",
            "Datagrams per receive batch (one system call): ones mean the workers wait for each datagram, full batches that they are behind.",
            &c.batches,
        );
    }

    /// The `--proxy-protocol-from` families of UDP.
    fn udp_proxy(&mut self, c: &Counters, sessions: &SessionStats) {
        self.by_label(
            "upcase_udp_proxy_datagrams_total",
            "UDP datagrams from listed proxies, by whom they counted as: attributed (the client a PROXY header or its session named), unattributed (the proxy's own: no header and no session), malformed (dropped).",
            "origin",
            &[
                ("attributed", c.proxy_attributed),
                ("unattributed", c.proxy_unattributed),
                ("malformed", c.proxy_malformed),
            ],
        );
        self.one(
            "upcase_udp_proxy_header_only_total",
            "counter",
            "UDP datagrams that were a PROXY header alone: a session opened, nothing to answer.",
            c.proxy_header_only,
        );
        self.one(
            "upcase_udp_proxy_sessions",
            "gauge",
            "UDP proxy sessions remembered (slots in use, some perhaps past their idle time).",
            sessions.remembered,
        );
        self.one(
            "upcase_udp_proxy_session_slots",
            "gauge",
            "UDP proxy sessions there is room for, over every socket (--proxy-session-table each).",
            sessions.capacity,
        );
        self.one(
            "upcase_udp_proxy_sessions_evicted_total",
            "counter",
            "UDP proxy sessions replaced before their idle time to make room: the table is too small, or someone floods it.",
            sessions.evicted,
        );
    }

    /// The `--proxy-protocol-from` family of TCP.
    fn tcp_proxy(&mut self, t: &TcpCounters) {
        self.by_label(
            "upcase_tcp_proxy_connections_total",
            "TCP connections from listed proxies, by their PROXY header: attributed (it named a client), unattributed (it named no one), malformed (none or a bad one: closed unanswered).",
            "origin",
            &[
                ("attributed", t.proxy_attributed),
                ("unattributed", t.proxy_unattributed),
                ("malformed", t.proxy_malformed),
            ],
        );
    }

    fn histogram(&mut self, name: &str, help: &str, sizes: &BatchSizes) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in sizes.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&format!("{name}_sum"), &[], sizes.sum);
        self.sample(&format!("{name}_count"), &[], sizes.batches());
    }

    fn tcp(&mut self, t: &TcpCounters) {
        let counter = "counter";
        self.one(
            "upcase_tcp_connections_accepted_total",
            counter,
            "TCP connections accepted and served.",
            t.accepted,
        );
        self.one(
            "upcase_tcp_connections_refused_total",
            counter,
            "TCP connections reset at once because --max-connections were open.",
            t.refused_over_limit,
        );
        self.one(
            "upcase_tcp_connections_timed_out_total",
            counter,
            "TCP connections closed after --idle-timeout without progress.",
            t.timed_out,
        );
        self.one(
            "upcase_tcp_connections_closed_at_stop_total",
            counter,
            "TCP connections still open after --stop-grace, closed by the stop.",
            t.closed_at_stop,
        );
        self.one(
            "upcase_tcp_connections_open",
            "gauge",
            "TCP connections open now.",
            t.open,
        );
        self.one(
            "upcase_tcp_received_bytes_total",
            counter,
            "Bytes read from TCP clients.",
            t.bytes_in,
        );
        self.one(
            "upcase_tcp_sent_bytes_total",
            counter,
            "Bytes written to TCP clients.",
            t.bytes_out,
        );
        self.one(
            "upcase_tcp_errors_total",
            counter,
            "TCP connections that ended in an error, and failed accepts.",
            t.errors,
        );
    }
}

/// A label value as the format quotes it: backslash, double quote and line
/// feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals() -> Totals {
        let mut udp = Counters {
            received: 7,
            replied: 4,
            bytes_in: 70,
            bytes_out: 40,
            dropped_too_large: 1,
            dropped_rate_limited: 2,
            send_errors: 0,
            recv_errors: 3,
            invalid_utf8: 1,
            ..Counters::default()
        };
        udp.batches.observe(1);
        udp.batches.observe(6);
        let tcp = TcpCounters {
            accepted: 5,
            open: 2,
            bytes_in: 9,
            ..TcpCounters::default()
        };
        Totals {
            udp,
            tcp: Some(tcp),
            sessions: None,
        }
    }

    /// The value of the sample written exactly `series` (name and labels).
    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_summary_counter_is_a_sample() {
        let text = render(&totals(), true, "1.2.3 (abc)");
        assert_eq!(
            value(&text, "upcase_build_info{version=\"1.2.3 (abc)\"}"),
            Some(1)
        );
        for (series, expected) in [
            ("upcase_udp_datagrams_received_total", 7),
            ("upcase_udp_replies_sent_total", 4),
            ("upcase_udp_received_bytes_total", 70),
            ("upcase_udp_sent_bytes_total", 40),
            ("upcase_udp_dropped_total{reason=\"too_large\"}", 1),
            ("upcase_udp_dropped_total{reason=\"rate_limited\"}", 2),
            ("upcase_udp_dropped_total{reason=\"ratio\"}", 0),
            ("upcase_udp_send_errors_total", 0),
            ("upcase_udp_receive_errors_total", 3),
            ("upcase_udp_invalid_utf8_total", 1),
            ("upcase_udp_batch_datagrams_bucket{le=\"1\"}", 1),
            ("upcase_udp_batch_datagrams_bucket{le=\"4\"}", 1),
            ("upcase_udp_batch_datagrams_bucket{le=\"8\"}", 2),
            ("upcase_udp_batch_datagrams_bucket{le=\"+Inf\"}", 2),
            ("upcase_udp_batch_datagrams_sum", 7),
            ("upcase_udp_batch_datagrams_count", 2),
            ("upcase_tcp_connections_accepted_total", 5),
            ("upcase_tcp_connections_open", 2),
            ("upcase_tcp_received_bytes_total", 9),
            ("upcase_tcp_errors_total", 0),
        ] {
            assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
        }
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render(&totals(), true, "v");
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("name and type");
                assert!(
                    text.contains(&format!("# HELP {name} ")),
                    "{name} has no HELP"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                typed.push(name.to_string());
            } else if !line.starts_with('#') {
                let series = line.split([' ', '{']).next().expect("a name");
                assert!(
                    typed
                        .iter()
                        .any(|family| series.starts_with(family.as_str())),
                    "{series} comes before its TYPE"
                );
            }
        }
        assert_eq!(typed.len(), 18, "{typed:?}");
    }

    #[test]
    fn only_the_transports_served_are_exposed() {
        let udp_only = Totals {
            tcp: None,
            ..totals()
        };
        let text = render(&udp_only, true, "v");
        assert!(text.contains("upcase_udp_"), "{text}");
        assert!(!text.contains("upcase_tcp_"), "{text}");
        let tcp_only = render(&totals(), false, "v");
        assert!(!tcp_only.contains("upcase_udp_"), "{tcp_only}");
        assert!(tcp_only.contains("upcase_tcp_"), "{tcp_only}");
    }

    #[test]
    fn the_proxy_families_come_with_the_option() {
        let plain = render(&totals(), true, "v");
        assert!(!plain.contains("proxy_datagrams"), "{plain}");
        assert_eq!(
            value(
                &plain,
                "upcase_udp_dropped_total{reason=\"proxy_malformed\"}"
            ),
            Some(0)
        );
        let mut proxied = totals();
        proxied.udp.proxy_attributed = 3;
        proxied.udp.proxy_malformed = 2;
        proxied.udp.proxy_header_only = 1;
        proxied.tcp = proxied.tcp.map(|tcp| TcpCounters {
            proxy_unattributed: 4,
            ..tcp
        });
        proxied.sessions = Some(SessionStats {
            remembered: 5,
            capacity: 16,
            evicted: 6,
        });
        let text = render(&proxied, true, "v");
        for (series, expected) in [
            ("upcase_udp_dropped_total{reason=\"proxy_malformed\"}", 2),
            ("upcase_udp_proxy_datagrams_total{origin=\"attributed\"}", 3),
            (
                "upcase_udp_proxy_datagrams_total{origin=\"unattributed\"}",
                0,
            ),
            ("upcase_udp_proxy_datagrams_total{origin=\"malformed\"}", 2),
            ("upcase_udp_proxy_header_only_total", 1),
            ("upcase_udp_proxy_sessions", 5),
            ("upcase_udp_proxy_session_slots", 16),
            ("upcase_udp_proxy_sessions_evicted_total", 6),
            (
                "upcase_tcp_proxy_connections_total{origin=\"unattributed\"}",
                4,
            ),
        ] {
            assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), r"two\nlines");
    }
}
