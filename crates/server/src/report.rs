//! The counts as one log event: the summary at the exit and the counters so
//! far on SIGUSR1. One event with a numeric field per counter, so the text
//! log reads `summary: received=N replied=N ...` (the line scripts and the
//! test kit parse, its fields in the summary's order) and the JSON log has
//! one object whose fields are numbers.

use tracing::info;

use crate::serving::Totals;

/// Logs `totals` after `label` (`summary:`, `counters so far:`).
pub(crate) fn log_totals(label: &str, totals: &Totals) {
    let (udp, tcp) = (&totals.udp, totals.tcp.as_ref());
    let proxy = totals.sessions.as_ref();
    let tcp_proxy = tcp.filter(|_| proxy.is_some());
    info!(
        received = udp.received,
        replied = udp.replied,
        bytes_in = udp.bytes_in,
        bytes_out = udp.bytes_out,
        invalid_utf8 = udp.invalid_utf8,
        dropped_too_large = udp.dropped_too_large,
        send_errors = udp.send_errors,
        dropped_rate_limited = udp.dropped_rate_limited,
        dropped_ratio = udp.dropped_ratio,
        // With --proxy-protocol-from only.
        proxy_attributed = proxy.map(|_| udp.proxy_attributed),
        proxy_unattributed = proxy.map(|_| udp.proxy_unattributed),
        proxy_header_only = proxy.map(|_| udp.proxy_header_only),
        proxy_malformed = proxy.map(|_| udp.proxy_malformed),
        proxy_sessions = proxy.map(|s| s.remembered),
        proxy_sessions_evicted = proxy.map(|s| s.evicted),
        // Fields of `None` are left out: no `tcp_` field without TCP.
        tcp_accepted = tcp.map(|t| t.accepted),
        tcp_refused = tcp.map(|t| t.refused_over_limit),
        tcp_timed_out = tcp.map(|t| t.timed_out),
        tcp_bytes_in = tcp.map(|t| t.bytes_in),
        tcp_bytes_out = tcp.map(|t| t.bytes_out),
        tcp_errors = tcp.map(|t| t.errors),
        tcp_closed_at_stop = tcp.map(|t| t.closed_at_stop),
        tcp_proxy_attributed = tcp_proxy.map(|t| t.proxy_attributed),
        tcp_proxy_unattributed = tcp_proxy.map(|t| t.proxy_unattributed),
        tcp_proxy_malformed = tcp_proxy.map(|t| t.proxy_malformed),
        "{label}"
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::counters::Counters;
    use crate::tcp::TcpCounters;

    /// What `log` writes through a text subscriber like the programs'.
    fn logged_text(log: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("text")
    }

    #[test]
    fn the_text_line_is_the_summary_line_byte_for_byte() {
        let udp = Counters {
            received: 2,
            replied: 1,
            bytes_in: 9,
            dropped_ratio: 1,
            ..Counters::default()
        };
        let tcp = TcpCounters {
            accepted: 3,
            bytes_out: 4,
            ..TcpCounters::default()
        };
        let sessions = Some(crate::sessions::SessionStats {
            remembered: 5,
            capacity: 8,
            evicted: 6,
        });
        let proxied = Counters {
            proxy_attributed: 1,
            proxy_malformed: 2,
            ..udp
        };
        for totals in [
            Totals {
                udp,
                ..Totals::default()
            },
            Totals {
                udp,
                tcp: Some(tcp),
                sessions: None,
            },
            Totals {
                udp: proxied,
                tcp: None,
                sessions,
            },
            Totals {
                udp: proxied,
                tcp: Some(tcp),
                sessions,
            },
        ] {
            let text = logged_text(|| log_totals("summary:", &totals));
            assert_eq!(text, format!(" INFO summary: {totals}\n"));
        }
    }
}
