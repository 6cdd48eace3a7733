//! What the cluster checks saw, as plain data: printed by `cargo xtask
//! cluster` and by the tests (`Display`), and judged against issue 14's
//! bars by `failures` (empty when every bar is met), one rule each, so the
//! tests and xtask cannot disagree on what passing means.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::network::{BACKENDS, BALANCER, CLIENT, CLIENT_2};
use crate::retrying::LoadOutcome;
use crate::summary::UdpCounts;

/// Which balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nftables,
    Nginx,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Nftables => {
                "nftables (DNAT by numgen random mod 3, conntrack; the test plays the controller)"
            }
            Kind::Nginx => {
                "nginx stream (udp reuseport, proxy_responses 1, passive health, proxy_protocol on)"
            }
        })
    }
}

impl Kind {
    /// The balancer's name alone.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Nftables => "nftables",
            Kind::Nginx => "nginx (proxy_protocol on)",
        }
    }
}

/// One request from each of many client sockets.
#[derive(Clone, Debug)]
pub struct Spread {
    pub sockets: usize,
    /// Behind nginx: how the servers read its PROXY headers.
    pub proxied: Option<ProxiedCounts>,
    /// Datagrams each backend received meanwhile.
    pub per_backend: [u64; BACKENDS],
    pub outcome: LoadOutcome,
    /// TCP health probes through the virtual address that passed.
    pub tcp_passed: usize,
    pub tcp_probes: usize,
}

/// A paced load and what happened during it.
#[derive(Clone, Debug)]
pub struct Event {
    pub what: String,
    pub outcome: LoadOutcome,
    /// Requests the load was to send.
    pub total: u64,
    /// Requests settled when each step of the event began: under the load
    /// only if fewer than `total`.
    pub settled_at: Vec<u64>,
    pub detail: String,
    pub elapsed: Duration,
    /// Whether the event's own bar was met (see `detail`).
    pub ok: bool,
}

/// Everything behind one balancer.
#[derive(Clone, Debug)]
pub struct BalancerReport {
    pub kind: Kind,
    pub spread: Spread,
    pub restart: Event,
    pub kill: Event,
    pub drain: Event,
    /// The drained server's summary.
    pub drained: UdpCounts,
    /// nginx's error log (its passive health at work), if nginx.
    pub nginx_log: String,
    pub elapsed: Duration,
}

/// A dead backend's conntrack entries left in place.
#[derive(Clone, Debug)]
pub struct StaleReport {
    /// Client flows on the backend that died, of `clients`.
    pub pinned: u64,
    pub clients: usize,
    /// Requests each client sends in each load.
    pub requests_each: u64,
    /// What the controller took out of the map.
    pub removed: Vec<usize>,
    /// The load, with the dead backend's entries left.
    pub stale: LoadOutcome,
    /// Its entries still there once that load ended.
    pub left: u64,
    /// Entries `conntrack -D` deleted then.
    pub deleted: u64,
    /// The same client sockets afterwards.
    pub after: LoadOutcome,
    pub elapsed: Duration,
}

/// `--rate-limit` behind nftables.
#[derive(Clone, Debug)]
pub struct RateLimitReport {
    pub kind: Kind,
    pub polite: LoadOutcome,
    pub flood_sent: u64,
    pub flood_answered: u64,
    /// Datagrams the servers refused as over the limit.
    pub rate_limited: u64,
    /// Behind nginx: how the servers read its PROXY headers.
    pub proxied: Option<ProxiedCounts>,
    /// The servers' warnings about sources over the limit.
    pub warned: Vec<String>,
    pub elapsed: Duration,
}

/// The servers' `upcase_udp_proxy_datagrams_total`, summed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxiedCounts {
    /// Counted as the client a header (or its session) named.
    pub attributed: u64,
    /// From nginx with no header and no session: nginx's own.
    pub unattributed: u64,
    /// Dropped for a malformed header.
    pub malformed: u64,
}

impl ProxiedCounts {
    /// Every datagram through nginx must have named its client.
    fn failure(self) -> Option<String> {
        (self.attributed == 0 || self.unattributed > 0 || self.malformed > 0)
            .then(|| format!("the PROXY headers were not all read: {self:?}"))
    }
}

impl fmt::Display for ProxiedCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the servers counted {} datagrams as the client a PROXY header named, {} as nginx's own, {} malformed",
            self.attributed, self.unattributed, self.malformed
        )
    }
}

/// A report judged against its bars.
pub trait Checked {
    /// Every bar missed, in words; empty when all are met.
    fn failures(&self) -> Vec<String>;
}

impl Checked for BalancerReport {
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let spread = &self.spread;
        let total: u64 = spread.per_backend.iter().sum();
        let (low, high) = (total / 5, total / 2);
        for (i, &n) in spread.per_backend.iter().enumerate() {
            if n < low || n > high {
                failures.push(format!(
                    "spread: backend {i} received {n} of {total}, outside {low}..={high}"
                ));
            }
        }
        if spread.outcome.unanswered > 0 || total < spread.sockets as u64 {
            failures.push(format!(
                "spread: {:?}, backends received {total}",
                spread.outcome
            ));
        }
        failures.extend(spread.proxied.and_then(ProxiedCounts::failure));
        if spread.tcp_passed != spread.tcp_probes {
            failures.push(format!(
                "spread: {} of {} TCP probes through the virtual address passed",
                spread.tcp_passed, spread.tcp_probes
            ));
        }
        for event in [&self.restart, &self.kill, &self.drain] {
            failures.extend(event.failures());
        }
        // What nginx decided, for whoever reads why.
        if !failures.is_empty() && !self.nginx_log.is_empty() {
            failures.push(format!("nginx's log:\n{}", self.nginx_log));
        }
        failures
    }
}

impl Event {
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let o = &self.outcome;
        if o.unanswered > 0 || o.requests != self.total {
            failures.push(format!("{}: {o:?} of {} requests", self.what, self.total));
        }
        if self.settled_at.iter().any(|&at| at >= self.total) {
            failures.push(format!(
                "{}: not under load (settled at {:?} of {})",
                self.what, self.settled_at, self.total
            ));
        }
        if !self.ok {
            failures.push(format!("{}: {}", self.what, self.detail));
        }
        failures
    }
}

/// Every way the demonstration failed to show what it shows.
impl Checked for StaleReport {
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.pinned == 0 || self.removed.len() != 1 {
            failures.push(format!(
                "no client flow on the dead backend ({} of {}) or it was not removed ({:?})",
                self.pinned, self.clients, self.removed
            ));
        }
        // Exactly the pinned clients' requests are lost, every one of them.
        let lost = self.pinned * self.requests_each;
        if self.stale.unanswered != lost || self.left < self.pinned {
            failures.push(format!(
                "stale entries were to blackhole the {lost} requests of the {} pinned clients: {:?}, {} entries left",
                self.pinned, self.stale, self.left
            ));
        }
        if self.deleted == 0 || self.after.unanswered > 0 {
            failures.push(format!(
                "after conntrack -D ({} deleted): {:?}",
                self.deleted, self.after
            ));
        }
        failures
    }
}

impl Checked for RateLimitReport {
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.polite.unanswered > 0 {
            failures.push(format!("the polite client: {:?}", self.polite));
        }
        if self.flood_answered * 2 > self.flood_sent || self.rate_limited == 0 {
            failures.push(format!(
                "the flood was not limited: {} of {} answered, {} rate-limited",
                self.flood_answered, self.flood_sent, self.rate_limited
            ));
        }
        failures.extend(self.proxied.and_then(ProxiedCounts::failure));
        let names = |ip: std::net::Ipv4Addr| {
            let ip = format!("reply to {ip}:");
            move |line: &&String| line.contains(&ip)
        };
        let flooder = self.warned.iter().filter(names(CLIENT_2)).count();
        let others = self.warned.iter().filter(names(CLIENT)).count()
            + self.warned.iter().filter(names(BALANCER)).count();
        if flooder == 0 || others > 0 || flooder != self.warned.len() {
            failures.push(format!(
                "the servers did not see the flooder's own address: {:?}",
                self.warned
            ));
        }
        failures
    }
}

fn load(o: &LoadOutcome) -> String {
    format!(
        "{} requests, {} answered ({} at once, {} after a retry), {} unanswered; {} datagrams sent",
        o.requests,
        o.answered_first_try + o.answered_after_retry,
        o.answered_first_try,
        o.answered_after_retry,
        o.unanswered,
        o.datagrams_sent
    )
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl fmt::Display for BalancerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spread;
        let total: u64 = s.per_backend.iter().sum();
        let counts: Vec<String> = s.per_backend.iter().map(u64::to_string).collect();
        writeln!(f, "{} [{}]", self.kind, seconds(self.elapsed))?;
        writeln!(
            f,
            "  spread over {} client sockets: {}; the backends received {} ({} in all; each must be {}..={}); TCP through the virtual address: {} of {} probes healthy",
            s.sockets,
            load(&s.outcome),
            counts.join(" / "),
            total,
            total / 5,
            total / 2,
            s.tcp_passed,
            s.tcp_probes
        )?;
        if let Some(proxied) = s.proxied {
            writeln!(f, "  (spread) {proxied}")?;
        }
        let mut all = LoadOutcome::default();
        for event in [&self.restart, &self.kill, &self.drain] {
            writeln!(f, "  {event}")?;
            all += event.outcome;
        }
        writeln!(
            f,
            "  in all, across the restart, the kill and the drain: {}",
            load(&all)
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; at {:?} of {} settled; {} [{}]",
            self.what,
            load(&self.outcome),
            self.settled_at,
            self.total,
            self.detail,
            seconds(self.elapsed)
        )
    }
}

impl fmt::Display for StaleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nftables without conntrack -D [{}]: a backend with {} of {} client flows killed and removed from the map",
            seconds(self.elapsed),
            self.pinned,
            self.clients
        )?;
        writeln!(
            f,
            "  its entries left: {}; {} stale entries still there at the end",
            load(&self.stale),
            self.left
        )?;
        writeln!(
            f,
            "  then conntrack -D deleted {}; the same client sockets: {}",
            self.deleted,
            load(&self.after)
        )
    }
}

impl fmt::Display for RateLimitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--rate-limit through {} [{}]: the flooder ({CLIENT_2}) sent {} back to back, {} answered, {} rate-limited by the servers, {} never reached a server; the polite client ({CLIENT}): {}",
            self.kind.short(),
            seconds(self.elapsed),
            self.flood_sent,
            self.flood_answered,
            self.rate_limited,
            self.flood_sent
                .saturating_sub(self.flood_answered + self.rate_limited),
            load(&self.polite)
        )?;
        if let Some(proxied) = self.proxied {
            writeln!(f, "  {proxied}")?;
        }
        if let Some(first) = self.warned.first() {
            let warning = first
                .split_once("WARN")
                .map_or(first.as_str(), |(_, w)| w.trim());
            writeln!(f, "  a server's warning: {warning}")?;
        }
        Ok(())
    }
}

/// The addresses of backends nginx's log says it disabled.
pub(crate) fn disabled_by_nginx(log: &str) -> Vec<SocketAddr> {
    log.lines()
        .filter(|line| line.contains("upstream server temporarily disabled"))
        .filter_map(|line| {
            line.split("upstream: \"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}
