//! Issue 14's checks of upcase behind a balancer, run the same way by
//! `cargo test` (crates/e2e/tests/cluster.rs) and `cargo xtask cluster`:
//! each builds a [`Network`], runs its phases under paced loads of
//! retrying clients from the client host, and returns a report whose
//! [`failures`](Checked::failures) say which bar was missed.
//!
//! For each balancer, in one network: the spread over many client sockets
//! (and the TCP service on the same address), a rolling restart of every
//! backend on its held sockets, a backend killed (SIGKILL, its sockets
//! closed), another drained (SIGTERM). Beside them: what a stale conntrack
//! entry does to a UDP client of a dead backend, and `--rate-limit` seeing
//! the real client through nftables (no NAT of the source) and through
//! nginx (by the PROXY protocol, on for the whole nginx run, as operators
//! are told to run it). nftables' controller acts once, right after a
//! kill: a real one acts within its probe interval, which the clients'
//! tries (12 x 400 ms) outlast. Every load is bounded in count (and so in
//! time: requests x tries x timeout at most).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::network::{
    BACKENDS, Binaries, CLIENT, CLIENT_2, Network, PORT, VIP, backend_addr, gateway,
};
use crate::nft::{NftBalancer, Reconciled};
use crate::nginx::{NginxBalancer, NginxSettings};
use crate::retrying::{RetryingLoad, RunningLoad};
use crate::summary::{Summary, UdpCounts};
use crate::{PATIENCE, try_wait_until};

use crate::cluster_report::disabled_by_nginx;
pub use crate::cluster_report::{
    BalancerReport, Checked, Event, Kind, ProxiedCounts, RateLimitReport, Spread, StaleReport,
};

/// Client sockets of the spread, one request each.
pub const SPREAD_SOCKETS: usize = 300;
/// TCP probes through the virtual address.
pub const TCP_PROBES: usize = 6;

/// The paced load of each phase: long enough that its events (a kill, a
/// drain, three restarts) fall inside it, with tries enough to outlast the
/// balancer's reaction (tries x timeout = 4.8 s).
pub const LOAD: RetryingLoad = RetryingLoad {
    clients: 12,
    requests: 100,
    pace: Duration::from_millis(10),
    timeout: Duration::from_millis(400),
    tries: 12,
};

/// nginx's settings: `proxy_timeout` half the clients' timeout, so a retry
/// always starts a new session.
pub const NGINX: NginxSettings = NginxSettings {
    proxy_timeout: Duration::from_millis(200),
    max_fails: 2,
    fail_timeout: Duration::from_secs(10),
    proxy_protocol: true,
};

/// The running balancer.
enum Balancer {
    Nft(NftBalancer),
    Nginx(NginxBalancer),
}

impl Balancer {
    fn start(kind: Kind, network: &Network) -> anyhow::Result<Balancer> {
        Ok(match kind {
            Kind::Nftables => Balancer::Nft(NftBalancer::install(network)?),
            Kind::Nginx => Balancer::Nginx(NginxBalancer::start(network, NGINX)?),
        })
    }

    /// The controller's pass (nftables); nginx has its passive health only.
    fn reconcile(&mut self, network: &Network) -> anyhow::Result<Reconciled> {
        match self {
            Balancer::Nft(nft) => nft.reconcile(network),
            Balancer::Nginx(_) => Ok(Reconciled::default()),
        }
    }
}

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, PORT))
}

/// Runs every phase behind `kind` in a network of its own.
pub fn run(kind: Kind, bins: &Binaries) -> anyhow::Result<BalancerReport> {
    let started = Instant::now();
    let trusted = trusted(kind);
    let mut network = Network::build(bins, &arg_refs(&trusted))?;
    let mut balancer = Balancer::start(kind, &network)?;
    let spread = spread(&network, kind)?;
    let restart = rolling_restart(&mut network)?;
    let kill = kill(&mut network, &mut balancer)?;
    let (drain, drained) = drain(&mut network, &mut balancer)?;
    let nginx_log = match &balancer {
        Balancer::Nginx(nginx) => nginx.log(),
        Balancer::Nft(_) => String::new(),
    };
    drop(balancer);
    drop(network);
    Ok(BalancerReport {
        kind,
        spread,
        restart,
        kill,
        drain,
        drained,
        nginx_log,
        elapsed: started.elapsed(),
    })
}

/// The servers' arguments for `kind`: behind nginx (which sends the PROXY
/// protocol) they trust the balancer's addresses on their links.
fn trusted(kind: Kind) -> Vec<String> {
    match kind {
        Kind::Nftables => Vec::new(),
        Kind::Nginx => {
            let gateways: Vec<String> = (0..BACKENDS).map(|i| gateway(i).to_string()).collect();
            vec!["--proxy-protocol-from".to_string(), gateways.join(",")]
        }
    }
}

fn arg_refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// How the running servers have read PROXY headers so far.
fn proxied(network: &Network) -> anyhow::Result<ProxiedCounts> {
    let mut counts = ProxiedCounts::default();
    let origin = |origin| format!("upcase_udp_proxy_datagrams_total{{origin=\"{origin}\"}}");
    for backend in network.backends.iter().filter(|b| b.is_up()) {
        counts.attributed += backend.counter(&origin("attributed"))?;
        counts.unattributed += backend.counter(&origin("unattributed"))?;
        counts.malformed += backend.counter(&origin("malformed"))?;
    }
    Ok(counts)
}

/// Datagrams each backend's running server has received so far (zero for
/// one that runs none).
fn received(network: &Network) -> anyhow::Result<[u64; BACKENDS]> {
    let mut counts = [0; BACKENDS];
    for (count, backend) in counts.iter_mut().zip(&network.backends) {
        if backend.is_up() {
            *count = backend.received()?;
        }
    }
    Ok(counts)
}

/// One request from each of [`SPREAD_SOCKETS`] client sockets, counted at
/// the backends; and [`TCP_PROBES`] health probes over TCP through the
/// virtual address.
fn spread(network: &Network, kind: Kind) -> anyhow::Result<Spread> {
    let before = received(network)?;
    let sockets = network.client_sockets(CLIENT, SPREAD_SOCKETS)?;
    let load = RetryingLoad {
        requests: 1,
        pace: Duration::ZERO,
        ..LOAD
    };
    let outcome = load.start_on(vip(), sockets).finish();
    let after = received(network)?;
    let mut per_backend = [0; BACKENDS];
    for i in 0..BACKENDS {
        per_backend[i] = after[i] - before[i];
    }
    let mut tcp_passed = 0;
    for _ in 0..TCP_PROBES {
        if network
            .probe(&network.client, vip(), true)?
            .status
            .success()
        {
            tcp_passed += 1;
        }
    }
    let proxied = match kind {
        Kind::Nginx => Some(proxied(network)?),
        Kind::Nftables => None,
    };
    Ok(Spread {
        sockets: SPREAD_SOCKETS,
        proxied,
        per_backend,
        outcome,
        tcp_passed,
        tcp_probes: TCP_PROBES,
    })
}

/// A phase under [`LOAD`], from client sockets of its own: its events
/// happen at the points where the load has settled so many requests.
struct Phase {
    started: Instant,
    load: RunningLoad,
    total: u64,
    settled_at: Vec<u64>,
}

impl Phase {
    fn start(network: &Network) -> anyhow::Result<Phase> {
        let sockets = network.client_sockets(CLIENT, LOAD.clients)?;
        Ok(Phase {
            started: Instant::now(),
            load: LOAD.start_on(vip(), sockets),
            total: (LOAD.clients * LOAD.requests) as u64,
            settled_at: Vec::new(),
        })
    }

    /// Waits until the load has settled `numerator / denominator` of its
    /// requests (see [`try_wait_until`] for how long at most): the next event
    /// happens then.
    fn when_settled(&mut self, numerator: u64, denominator: u64) -> anyhow::Result<()> {
        let at_least = self.total * numerator / denominator;
        try_wait_until("the load reaches its next event", || {
            self.load.settled() >= at_least
        })?;
        self.settled_at.push(self.load.settled());
        Ok(())
    }

    /// Lets the load finish, then has `judge` say what the event came to
    /// (its detail and whether its own bar was met): after the load, so
    /// that what the balancer logged meanwhile is there to read.
    fn end(
        self,
        what: String,
        judge: impl FnOnce() -> anyhow::Result<(String, bool)>,
    ) -> anyhow::Result<Event> {
        let outcome = self.load.finish();
        let (detail, ok) = judge()?;
        Ok(Event {
            what,
            outcome,
            total: self.total,
            settled_at: self.settled_at,
            detail,
            elapsed: self.started.elapsed(),
            ok,
        })
    }
}

/// Every backend in turn, under the load: SIGTERM, a new server on the
/// same held sockets, its ready line, the next.
fn rolling_restart(network: &mut Network) -> anyhow::Result<Event> {
    let mut phase = Phase::start(network)?;
    let mut served = UdpCounts::default();
    for i in 0..BACKENDS {
        phase.when_settled(i as u64 + 1, BACKENDS as u64 + 1)?;
        let stopped = network.backends[i].stop()?;
        served += Summary::from_log(&stopped.stderr)?.udp;
        let bins = network.bins.clone();
        network.backends[i].start(&bins)?;
    }
    phase.end(
        format!("rolling restart of the {BACKENDS} backends on their held sockets"),
        || {
            Ok((
                format!(
                    "the {BACKENDS} stopped servers had received {} datagrams and answered {}",
                    served.received, served.replied
                ),
                served.replied == served.received,
            ))
        },
    )
}

/// The running backend that received most of this phase's datagrams so
/// far, `since` its counts at the phase's start.
fn busiest(network: &Network, since: [u64; BACKENDS]) -> anyhow::Result<usize> {
    let now = received(network)?;
    (0..BACKENDS)
        .filter(|&i| network.backends[i].is_up())
        .max_by_key(|&i| now[i].saturating_sub(since[i]))
        .context("no backend runs")
}

/// A phase started, and the running backend busiest in it once a third of
/// its load has settled: the one whose loss would cost most.
fn busiest_under_load(network: &Network) -> anyhow::Result<(Phase, usize)> {
    let since = received(network)?;
    let mut phase = Phase::start(network)?;
    phase.when_settled(1, 3)?;
    Ok((phase, busiest(network, since)?))
}

/// The busiest backend dies under the load (SIGKILL, sockets closed); the
/// controller's next pass (nftables) or nginx's passive health takes it out.
fn kill(network: &mut Network, balancer: &mut Balancer) -> anyhow::Result<Event> {
    let (phase, victim) = busiest_under_load(network)?;
    network.backends[victim].kill()?;
    let reconciled = balancer.reconcile(network)?;
    phase.end(format!("SIGKILL of backend {victim} (sockets closed)"), || {
        Ok(match balancer {
            Balancer::Nft(_) => (
                format!(
                    "the probe failed; the controller removed backends {:?} from the map and deleted {} conntrack entries",
                    reconciled.removed, reconciled.conntrack_deleted
                ),
                reconciled.removed == [victim],
            ),
            Balancer::Nginx(nginx) => {
                let dead = backend_addr(victim);
                let disabled = disabled_by_nginx(&nginx.log())
                    .into_iter()
                    .filter(|addr| *addr == dead)
                    .count();
                (
                    format!("nginx's passive health disabled it {disabled} times"),
                    disabled > 0,
                )
            }
        })
    })
}

/// The busiest backend left is stopped with SIGTERM under the load: for
/// nftables the controller withdraws it from the map first (its flows go
/// on to it while it drains), and deletes its conntrack entries once it
/// has exited; nginx finds out by itself.
fn drain(network: &mut Network, balancer: &mut Balancer) -> anyhow::Result<(Event, UdpCounts)> {
    let (phase, drainee) = busiest_under_load(network)?;
    if let Balancer::Nft(nft) = balancer {
        nft.withdraw(network, drainee)?;
    }
    let stopped = network.backends[drainee].stop()?;
    network.backends[drainee].release_sockets();
    let reconciled = balancer.reconcile(network)?;
    let drained = Summary::from_log(&stopped.stderr)?.udp;
    let detail = match balancer {
        Balancer::Nft(_) => format!(
            "withdrawn from the map first; it answered {} of the {} datagrams it received, then the controller deleted {} conntrack entries",
            drained.replied, drained.received, reconciled.conntrack_deleted
        ),
        Balancer::Nginx(_) => format!(
            "it answered {} of the {} datagrams it received",
            drained.replied, drained.received
        ),
    };
    let ok = stopped.status.success() && drained.replied == drained.received;
    let event = phase.end(format!("SIGTERM of backend {drainee} (drained)"), || {
        Ok((detail, ok))
    })?;
    Ok((event, drained))
}

/// Why the controller deletes conntrack entries: every client socket makes
/// its flow with one request; the backend with most flows dies and is taken
/// out of the map, but its entries are left; then, under a load from the
/// same sockets, the clients whose flows it had stay unanswered and the
/// others do not; after `conntrack -D` the same sockets are answered again.
/// The kill comes between two loads, not during one, so what each load
/// meets is known before it starts.
pub fn stale_conntrack(bins: &Binaries) -> anyhow::Result<StaleReport> {
    let started = Instant::now();
    let mut network = Network::build(bins, &[])?;
    let mut nft = NftBalancer::install(&network)?;
    nft.delete_conntrack = false;
    // Short: a pinned client spends all its tries on every request (2 x
    // 200 ms each), which is the whole cost of this check.
    let load = RetryingLoad {
        requests: STALE_REQUESTS,
        tries: 2,
        timeout: Duration::from_millis(200),
        ..LOAD
    };
    let sockets = network.client_sockets(CLIENT, load.clients)?;
    let copies = || -> anyhow::Result<Vec<UdpSocket>> {
        sockets
            .iter()
            .map(UdpSocket::try_clone)
            .collect::<std::io::Result<_>>()
            .context("cannot copy the client sockets")
    };
    let first = RetryingLoad {
        requests: 1,
        ..load
    }
    .start_on(vip(), copies()?)
    .finish();
    if first.unanswered > 0 {
        bail!("the first requests were not all answered: {first:?}");
    }
    let flows: Vec<u64> = (0..BACKENDS)
        .map(|i| nft.flows_to(&network, i))
        .collect::<anyhow::Result<_>>()?;
    let victim = (0..BACKENDS).max_by_key(|&i| flows[i]).unwrap_or(0);
    network.backends[victim].kill()?;
    let reconciled = nft.reconcile(&network)?;
    let stale = load.start_on(vip(), copies()?).finish();
    let left = nft.flows_to(&network, victim)?;
    let deleted = nft.delete_conntrack_of(&network, victim)?;
    let after = load.start_on(vip(), sockets).finish();
    Ok(StaleReport {
        pinned: flows[victim],
        clients: load.clients,
        requests_each: STALE_REQUESTS as u64,
        removed: reconciled.removed,
        stale,
        left,
        deleted,
        after,
        elapsed: started.elapsed(),
    })
}

/// Requests each client sends in each load of the stale-entries check.
const STALE_REQUESTS: usize = 5;

/// Limit per source on every backend in the rate-limit check.
pub const RATE_LIMIT: u64 = 50;
/// Datagrams the flooder sends, back to back.
pub const FLOOD: u64 = 600;

/// `--rate-limit` behind `kind`: a flooder (the client host's second
/// address) and a polite client (its first) at once; the servers must see
/// each one's own address. Behind nftables they do by themselves; behind
/// nginx only with the PROXY protocol (`proxy_protocol on`, and the servers
/// trusting the balancer's addresses with `--proxy-protocol-from`), and
/// with passive health off (`max_fails=0`): a rate-limited request gets no
/// reply, which nginx would count as its backend failing.
pub fn rate_limit(kind: Kind, bins: &Binaries) -> anyhow::Result<RateLimitReport> {
    let started = Instant::now();
    let mut args = vec!["--rate-limit".to_string(), RATE_LIMIT.to_string()];
    args.extend(trusted(kind));
    let network = Network::build(bins, &arg_refs(&args))?;
    let _balancer = match kind {
        Kind::Nftables => Balancer::Nft(NftBalancer::install(&network)?),
        Kind::Nginx => Balancer::Nginx(NginxBalancer::start(
            &network,
            NginxSettings {
                max_fails: 0,
                ..NGINX
            },
        )?),
    };
    // 25 a second, half the limit.
    let polite = RetryingLoad {
        clients: 1,
        requests: 20,
        pace: Duration::from_millis(40),
        timeout: Duration::from_millis(500),
        tries: 5,
    };
    let running = polite.start_on(vip(), network.client_sockets(CLIENT, 1)?);
    let flooder = network
        .client_sockets(CLIENT_2, 1)?
        .pop()
        .context("no flooder socket")?;
    let answered = flood(&flooder)?;
    let polite = running.finish();
    let mut rate_limited = 0;
    let proxied = match kind {
        Kind::Nginx => Some(proxied(&network)?),
        Kind::Nftables => None,
    };
    let mut warned = Vec::new();
    for backend in &network.backends {
        rate_limited += backend.counter("upcase_udp_dropped_total{reason=\"rate_limited\"}")?;
        warned.extend(
            backend
                .log()
                .lines()
                .filter(|line| line.contains("over the rate limit"))
                .map(str::to_string),
        );
    }
    Ok(RateLimitReport {
        kind,
        polite,
        flood_sent: FLOOD,
        flood_answered: answered,
        rate_limited,
        proxied,
        warned,
        elapsed: started.elapsed(),
    })
}

/// Sends [`FLOOD`] datagrams back to back, then counts the replies until
/// none has come for half a second (at most one per datagram).
fn flood(socket: &UdpSocket) -> anyhow::Result<u64> {
    socket.connect(vip()).context("connect the flooder")?;
    for i in 0..FLOOD {
        // A refused send is a datagram the flood did not deliver: fine.
        let _ = socket.send(format!("flood {i}").as_bytes());
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .context("flooder timeout")?;
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 64];
    let mut answered = 0;
    while answered < FLOOD && Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) if buf[..n].starts_with(b"FLOOD ") => answered += 1,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => break,
        }
    }
    if Instant::now() >= deadline {
        bail!("the flood's replies did not end within {PATIENCE:?}");
    }
    Ok(answered)
}
