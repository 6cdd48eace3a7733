//! The TCP service's counters: written by every event loop as it goes
//! (relaxed atomics: each is a tally, nothing is ordered by them), read by
//! the metrics and the summary at any time.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the TCP service did, over its whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpCounters {
    /// Connections served (not counting those refused).
    pub(crate) accepted: u64,
    /// Connections reset at once because `max_connections` were open.
    pub(crate) refused_over_limit: u64,
    /// Connections closed because they stayed idle for `idle_timeout`.
    pub(crate) timed_out: u64,
    /// Bytes read from clients.
    pub(crate) bytes_in: u64,
    /// Bytes written to clients.
    pub(crate) bytes_out: u64,
    /// Connections that ended in an error (a reset, say), and failed accepts.
    pub(crate) errors: u64,
    /// Connections still open after the grace period, closed by the stop.
    pub(crate) closed_at_stop: u64,
    /// Connections open now (a gauge for the metrics; not in the summary,
    /// where it is always 0).
    pub(crate) open: u64,
    /// Connections from listed proxies whose header named a client.
    pub(crate) proxy_attributed: u64,
    /// Connections from listed proxies whose header named no one (v2
    /// `LOCAL`, v1 `UNKNOWN`): the proxy's own.
    pub(crate) proxy_unattributed: u64,
    /// Connections from listed proxies closed for not starting with a
    /// valid header.
    pub(crate) proxy_malformed: u64,
}

impl TcpCounters {
    /// The fields the server appends to its summary line, each after a space:
    /// ` tcp_accepted=N tcp_refused=N tcp_timed_out=N tcp_bytes_in=N
    /// tcp_bytes_out=N tcp_errors=N tcp_closed_at_stop=N`.
    pub(crate) fn summary_fields(&self) -> String {
        format!(
            " tcp_accepted={} tcp_refused={} tcp_timed_out={} tcp_bytes_in={} tcp_bytes_out={} tcp_errors={} tcp_closed_at_stop={}",
            self.accepted,
            self.refused_over_limit,
            self.timed_out,
            self.bytes_in,
            self.bytes_out,
            self.errors,
            self.closed_at_stop
        )
    }

    /// The fields added after those with `--proxy-protocol-from`:
    /// ` tcp_proxy_attributed=N tcp_proxy_unattributed=N tcp_proxy_malformed=N`.
    pub(crate) fn proxy_fields(&self) -> String {
        format!(
            " tcp_proxy_attributed={} tcp_proxy_unattributed={} tcp_proxy_malformed={}",
            self.proxy_attributed, self.proxy_unattributed, self.proxy_malformed
        )
    }
}

/// The counters while the service runs, shared by every event loop
/// and readable at any time.
#[derive(Debug, Default)]
pub(crate) struct TcpLive {
    pub(super) accepted: AtomicU64,
    pub(super) refused_over_limit: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) closed_at_stop: AtomicU64,
    pub(super) open: AtomicU64,
    pub(super) proxy_attributed: AtomicU64,
    pub(super) proxy_unattributed: AtomicU64,
    pub(super) proxy_malformed: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Ordering::Relaxed);
}

impl TcpLive {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> TcpCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpCounters {
            accepted: get(&self.accepted),
            refused_over_limit: get(&self.refused_over_limit),
            timed_out: get(&self.timed_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            errors: get(&self.errors),
            closed_at_stop: get(&self.closed_at_stop),
            open: get(&self.open),
            proxy_attributed: get(&self.proxy_attributed),
            proxy_unattributed: get(&self.proxy_unattributed),
            proxy_malformed: get(&self.proxy_malformed),
        }
    }
}
