//! Serving the bound sockets: a thread per UDP worker and one for the TCP
//! service, until the stop flag is set; then what they counted, added up.
//!
//! A transport that fails sets the stop flag too, so that the other ends and
//! the server exits with the error rather than serving half of what it was
//! asked to.

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use anyhow::Context;
use tracing::info;
use upcase_udp::{Io, opts};

use crate::activation::Inherited;
use crate::binding::{Bound, RECV_TIMEOUT};
use crate::config::{Config, TcpLimits};
use crate::counters::Counters;
use crate::live::{self, LiveStats};
use crate::policy::Policy;
use crate::proxy::{Proxies, SharedSessions, session_stats};
use crate::sessions::{SessionStats, SessionTable};
use crate::tcp::{TcpCounters, TcpLive, TcpProxies, serve_tcp};
use crate::worker::Worker;

/// Every bound socket with what serves it, ready to serve.
pub(crate) struct Service {
    workers: Vec<Worker>,
    tcp: Vec<TcpListener>,
    limits: TcpLimits,
    /// `--threads`: the number of TCP event loops too.
    threads: usize,
    policy: Arc<Policy>,
    tcp_proxies: Option<Arc<TcpProxies>>,
    live: Live,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
}

/// The sockets to serve, bound here or inherited: one UDP socket per
/// worker (several workers may share one inherited socket), and the TCP
/// listeners.
#[derive(Debug)]
pub(crate) struct Sockets {
    udp: Vec<UdpSocket>,
    /// For each of `udp`, which socket it is: workers of the same socket
    /// share its proxy sessions, since any of them may receive a proxy's
    /// next datagram.
    socket_of: Vec<usize>,
    tcp: Vec<TcpListener>,
}

impl From<Bound> for Sockets {
    fn from(bound: Bound) -> Sockets {
        let workers = bound.udp.len();
        Sockets {
            // Where the system cannot balance a port over sockets, binding
            // gave every worker a handle of one socket.
            socket_of: if opts::BALANCED_REUSE_PORT {
                (0..workers).collect()
            } else {
                vec![0; workers]
            },
            udp: bound.udp,
            tcp: bound.tcp.into_iter().collect(),
        }
    }
}

impl Sockets {
    /// The inherited sockets, with `threads` workers spread over the UDP
    /// ones (each gets at least one; with fewer sockets than threads,
    /// workers share a socket, each blocking in its own receive, and the
    /// kernel hands each datagram to one of them). Not one socket per
    /// worker with SO_REUSEPORT, as when binding: sockets the server made
    /// itself would die with it, and whatever the kernel queued on them
    /// would be lost at a restart.
    pub(crate) fn inherited(
        inherited: Inherited,
        threads: usize,
        config: &Config,
    ) -> anyhow::Result<Sockets> {
        let Inherited { udp, tcp, .. } = inherited;
        for socket in &udp {
            // Blocking, with the receive timeout a worker needs to notice
            // the stop, whatever mode the supervisor left it in.
            socket
                .set_nonblocking(false)
                .and_then(|()| socket.set_read_timeout(Some(RECV_TIMEOUT)))
                .context("cannot prepare an inherited UDP socket")?;
        }
        crate::tuning::tune(&udp, &config.udp)?;
        let workers = if udp.is_empty() {
            0
        } else {
            threads.max(udp.len())
        };
        let socket_of: Vec<usize> = (0..workers).map(|worker| worker % udp.len()).collect();
        let udp = socket_of
            .iter()
            // A duplicate descriptor for each worker: the same socket.
            .map(|&socket| udp[socket].try_clone())
            .collect::<std::io::Result<Vec<_>>>()
            .context("cannot share an inherited UDP socket between workers")?;
        Ok(Sockets {
            udp,
            socket_of,
            tcp,
        })
    }
}

/// Where every thread's counts can be read while they serve.
#[derive(Clone, Debug, Default)]
pub(crate) struct Live {
    udp: Vec<Arc<LiveStats>>,
    tcp: Option<Arc<TcpLive>>,
    /// Each UDP socket's proxy sessions, with `--proxy-protocol-from`.
    sessions: Option<Vec<SharedSessions>>,
}

impl Live {
    /// Whether UDP is served (it has workers).
    pub(crate) fn serves_udp(&self) -> bool {
        !self.udp.is_empty()
    }

    /// The counts so far, in the summary's form.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            udp: live::total(&self.udp),
            tcp: self.tcp.as_ref().map(|tcp| tcp.snapshot()),
            sessions: self.sessions.as_deref().map(session_stats),
        }
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("udp_addrs", &self.udp_addrs)
            .field("tcp_addrs", &self.tcp_addrs)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// What the server counted: the body of the summary line,
/// `received=N ... dropped_ratio=N`, then the ` proxy_...=N` fields with
/// `--proxy-protocol-from`, then the ` tcp_...=N` fields when TCP was
/// served (and ` tcp_proxy_...=N` with `--proxy-protocol-from`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) udp: Counters,
    pub(crate) tcp: Option<TcpCounters>,
    /// The proxy sessions, with `--proxy-protocol-from` (`None`: off).
    pub(crate) sessions: Option<SessionStats>,
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.udp)?;
        if let Some(sessions) = &self.sessions {
            write!(
                f,
                "{} proxy_sessions={} proxy_sessions_evicted={}",
                self.udp.proxy_fields(),
                sessions.remembered,
                sessions.evicted
            )?;
        }
        if let Some(tcp) = &self.tcp {
            f.write_str(&tcp.summary_fields())?;
            if self.sessions.is_some() {
                f.write_str(&tcp.proxy_fields())?;
            }
        }
        Ok(())
    }
}

impl Service {
    /// Builds every UDP worker, buffers and all, so that once this returns
    /// (and the ready line is printed) the server's memory is claimed; logs
    /// what it is about to serve.
    pub(crate) fn new(sockets: Sockets, config: &Config) -> anyhow::Result<Service> {
        let udp_addrs = distinct(sockets.udp.iter().map(UdpSocket::local_addr))?;
        let tcp_addrs = distinct(sockets.tcp.iter().map(TcpListener::local_addr))?;
        let policy = Arc::new(Policy::new(config.policy));
        let mut live = Live {
            udp: Vec::with_capacity(sockets.udp.len()),
            tcp: (!sockets.tcp.is_empty()).then(Arc::default),
            sessions: None,
        };
        let proxies = config.proxy.as_ref().map(|proxy| {
            let sources = Arc::new(proxy.from.clone());
            // One table per socket, all allocated now.
            let sockets = sockets.socket_of.iter().max().map_or(0, |&last| last + 1);
            let tables: Vec<SharedSessions> = (0..sockets)
                .map(|_| Arc::new(Mutex::new(SessionTable::new(proxy.sessions, proxy.idle))))
                .collect();
            live.sessions = Some(tables.clone());
            (sources, tables)
        });
        let epoch = Instant::now();
        let workers = sockets
            .udp
            .into_iter()
            .zip(&sockets.socket_of)
            .map(|(socket, &index)| {
                let (publisher, stats) = live::block();
                live.udp.push(stats);
                let udp = &config.udp;
                let worker = Worker::new(
                    socket,
                    Arc::clone(&policy),
                    udp.busy_poll,
                    udp.io,
                    publisher,
                )?;
                Ok(match &proxies {
                    Some((sources, tables)) => worker.with_proxies(Proxies::new(
                        Arc::clone(sources),
                        Arc::clone(&tables[index]),
                        epoch,
                    )),
                    None => worker,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tcp_proxies = proxies.map(|(sources, _)| Arc::new(TcpProxies::new(sources)));
        if !udp_addrs.is_empty() {
            info!(
                "receiving on {} with {} worker thread{}, {}",
                listed(&udp_addrs),
                workers.len(),
                if workers.len() == 1 { "" } else { "s" },
                io_path(config.udp.io)
            );
        }
        if let Some(limits) = config.policy.describe() {
            info!("abuse limits: {limits}");
        }
        if let Some(proxy) = &config.proxy {
            info!("{}", proxy.describe());
        }
        if !tcp_addrs.is_empty() {
            info!(
                "accepting TCP on {}, at most {} connections, idle timeout {}",
                listed(&tcp_addrs),
                config.tcp.max_connections,
                humantime::format_duration(config.tcp.idle_timeout)
            );
        }
        Ok(Service {
            workers,
            tcp: sockets.tcp,
            limits: config.tcp,
            threads: config.threads,
            policy,
            tcp_proxies,
            live,
            udp_addrs,
            tcp_addrs,
        })
    }

    /// The UDP addresses served, each once (the port the system chose, for
    /// port 0).
    pub(crate) fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The TCP addresses served.
    pub(crate) fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The first UDP address, when UDP is served.
    #[cfg(test)]
    pub(crate) fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addrs.first().copied()
    }

    /// The first TCP address, when TCP is served.
    #[cfg(test)]
    pub(crate) fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addrs.first().copied()
    }

    /// Where the counts can be read while the service runs.
    pub(crate) fn live(&self) -> Live {
        self.live.clone()
    }

    /// Serves until `stop` is set, then returns the counts of every thread
    /// added up. A thread that fails sets `stop`, so the others end, and its
    /// error is returned.
    pub(crate) fn serve(self, stop: &AtomicBool) -> anyhow::Result<Totals> {
        let Service {
            workers,
            tcp,
            limits,
            threads,
            policy,
            tcp_proxies,
            live,
            ..
        } = self;
        let tcp_live = live.tcp.unwrap_or_default();
        let served = thread::scope(|scope| {
            let tcp_thread = match tcp {
                listeners if !listeners.is_empty() => Some(
                    thread::Builder::new()
                        .name("tcp".to_string())
                        .spawn_scoped(scope, || {
                            let served =
                                serve_tcp(listeners, limits, threads, tcp_proxies, stop, &tcp_live);
                            if served.is_err() {
                                stop.store(true, Ordering::Relaxed);
                            }
                            served
                        })
                        .context("cannot start the TCP thread")?,
                ),
                _ => None,
            };
            let udp = serve_udp(scope, workers, stop);
            if udp.is_err() {
                // Even a worker that panicked, which set no flag: TCP must
                // not go on serving alone.
                stop.store(true, Ordering::Relaxed);
            }
            let tcp = tcp_thread.map(|thread| {
                thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("the TCP thread panicked"))
                    .and_then(|served| served)
            });
            let udp = udp?;
            let tcp = tcp.transpose()?.map(|()| tcp_live.snapshot());
            let sessions = live.sessions.as_deref().map(session_stats);
            Ok(Totals { udp, tcp, sessions })
        });
        if let Some(table) = policy.table_summary() {
            info!("{table}");
        }
        served
    }
}

/// The addresses of some sockets, each once, in order.
fn distinct(
    addrs: impl Iterator<Item = std::io::Result<SocketAddr>>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut seen = Vec::new();
    for addr in addrs {
        let addr = addr.context("cannot read the bound address")?;
        if !seen.contains(&addr) {
            seen.push(addr);
        }
    }
    Ok(seen)
}

/// The UDP path in words, for the startup log.
fn io_path(io: Io) -> String {
    let how = match io {
        Io::Batched => "many datagrams per system call, recvmmsg/sendmmsg",
        Io::Portable => "one datagram per system call",
    };
    format!("{io} I/O ({how})")
}

/// `A`, or `A, B`, for the log.
fn listed(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs each worker on a thread of its own until `stop` is set, and adds up
/// their counts.
fn serve_udp<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    workers: Vec<Worker>,
    stop: &'scope AtomicBool,
) -> anyhow::Result<Counters> {
    let mut handles = Vec::with_capacity(workers.len());
    let mut failure = None;
    for (index, worker) in workers.into_iter().enumerate() {
        let spawned = thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn_scoped(scope, move || {
                let result = worker.run(stop);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                stop.store(true, Ordering::Relaxed);
                failure = Some(anyhow::Error::new(err).context("cannot start a worker thread"));
                break;
            }
        }
    }
    let mut total = Counters::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok(counters)) => total += counters,
            Ok(Err(err)) => {
                failure.get_or_insert(err);
            }
            Err(_) => {
                failure.get_or_insert(anyhow::anyhow!("a worker thread panicked"));
            }
        }
    }
    failure.map_or(Ok(total), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bind, Transports};
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    fn config(transports: Transports, threads: usize) -> Config {
        Config {
            bind: Bind::Addr(Ipv4Addr::LOCALHOST.into()),
            port: 0,
            threads,
            transports,
            ..Config::default()
        }
    }

    fn service(config: &Config) -> Service {
        Service::new(Bound::bind(config).expect("bind").into(), config).expect("service")
    }

    #[test]
    fn threads_serve_one_port_and_their_counts_add_up() {
        let service = service(&config(Transports::UDP, 2));
        let addr = service.udp_addr().expect("udp");
        assert_ne!(addr.port(), 0);
        assert_eq!(service.tcp_addr(), None);
        let stop = AtomicBool::new(false);
        let clients = 8;
        let totals = thread::scope(|s| {
            let serving = s.spawn(|| service.serve(&stop));
            for i in 0..clients {
                let client = UdpSocket::bind("127.0.0.1:0").expect("client");
                client
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let request = format!("client {i}");
                client.send_to(request.as_bytes(), addr).expect("send");
                let mut buf = [0; 64];
                let n = client.recv(&mut buf).expect("reply");
                assert_eq!(&buf[..n], request.to_uppercase().as_bytes());
            }
            stop.store(true, Ordering::Relaxed);
            serving.join().expect("no panic")
        })
        .expect("clean stop");
        assert_eq!(totals.udp.received, clients);
        assert_eq!(totals.udp.replied, clients);
        assert_eq!(totals.tcp, None);
    }

    #[test]
    fn the_stop_flag_ends_both_transports() {
        let service = service(&config(Transports::BOTH, 1));
        assert_eq!(service.udp_addr(), service.tcp_addr());
        let stop = AtomicBool::new(false);
        let served = thread::scope(|s| {
            let serving = s.spawn(|| service.serve(&stop));
            stop.store(true, Ordering::Relaxed);
            serving.join().expect("no panic")
        });
        let totals = served.expect("clean stop");
        assert_eq!(totals.udp, Counters::default());
        assert_eq!(totals.tcp, Some(TcpCounters::default()));
    }

    #[test]
    fn tcp_alone_serves_until_the_stop() {
        let service = service(&config(Transports::TCP, 1));
        assert_eq!(service.udp_addr(), None);
        let addr = service.tcp_addr().expect("tcp");
        let stop = AtomicBool::new(false);
        let totals = thread::scope(|s| {
            let serving = s.spawn(|| service.serve(&stop));
            // Twice, so the service is seen to go on after the first.
            for line in [&b"first"[..], b"second"] {
                let mut stream = upcase_e2e::tcp::connect(addr);
                let got = upcase_e2e::tcp::exchange(&mut stream, line);
                assert_eq!(got, line.to_ascii_uppercase());
            }
            stop.store(true, Ordering::Relaxed);
            serving.join().expect("no panic")
        })
        .expect("clean stop");
        assert_eq!(totals.udp, Counters::default());
        assert_eq!(totals.tcp.map(|tcp| tcp.accepted), Some(2));
    }

    #[test]
    fn the_live_totals_follow_both_transports_while_they_serve() {
        let service = service(&config(Transports::BOTH, 2));
        let addr = service.udp_addr().expect("udp");
        let live = service.live();
        assert_eq!(live.totals().udp, Counters::default());
        assert_eq!(live.totals().tcp, Some(TcpCounters::default()));
        let stop = AtomicBool::new(false);
        let totals = thread::scope(|s| {
            let serving = s.spawn(|| service.serve(&stop));
            let client = UdpSocket::bind("127.0.0.1:0").expect("client");
            client
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            client.send_to(b"so far", addr).expect("send");
            let mut buf = [0; 16];
            assert_eq!(client.recv(&mut buf).expect("reply"), 6);
            let mut stream = upcase_e2e::tcp::connect(addr);
            assert_eq!(upcase_e2e::tcp::exchange(&mut stream, b"tcp"), b"TCP");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let wanted = |t: &Totals| t.udp.replied == 1 && t.tcp.is_some_and(|c| c.bytes_out == 3);
            while !wanted(&live.totals()) {
                assert!(std::time::Instant::now() < deadline, "{:?}", live.totals());
                thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
            serving.join().expect("no panic")
        })
        .expect("clean stop");
        assert_eq!(live.totals(), totals, "the last counts are the summary's");
    }

    #[test]
    fn the_totals_are_the_summary_line() {
        let udp = Counters {
            received: 2,
            replied: 1,
            dropped_ratio: 1,
            ..Counters::default()
        };
        let tcp = TcpCounters {
            accepted: 3,
            ..TcpCounters::default()
        };
        assert_eq!(
            Totals {
                udp,
                ..Totals::default()
            }
            .to_string(),
            "received=2 replied=1 bytes_in=0 bytes_out=0 invalid_utf8=0 dropped_too_large=0 send_errors=0 dropped_rate_limited=0 dropped_ratio=1"
        );
        assert_eq!(
            Totals {
                udp,
                tcp: Some(tcp),
                sessions: None,
            }
            .to_string(),
            "received=2 replied=1 bytes_in=0 bytes_out=0 invalid_utf8=0 dropped_too_large=0 send_errors=0 dropped_rate_limited=0 dropped_ratio=1 tcp_accepted=3 tcp_refused=0 tcp_timed_out=0 tcp_bytes_in=0 tcp_bytes_out=0 tcp_errors=0 tcp_closed_at_stop=0"
        );
        let proxied = Totals {
            udp: Counters {
                proxy_attributed: 1,
                proxy_unattributed: 2,
                proxy_header_only: 3,
                proxy_malformed: 4,
                ..udp
            },
            tcp: Some(TcpCounters {
                proxy_attributed: 5,
                proxy_malformed: 6,
                ..tcp
            }),
            sessions: Some(SessionStats {
                remembered: 7,
                capacity: 16,
                evicted: 8,
            }),
        };
        assert_eq!(
            proxied.to_string(),
            "received=2 replied=1 bytes_in=0 bytes_out=0 invalid_utf8=0 dropped_too_large=0 send_errors=0 dropped_rate_limited=0 dropped_ratio=1 proxy_attributed=1 proxy_unattributed=2 proxy_header_only=3 proxy_malformed=4 proxy_sessions=7 proxy_sessions_evicted=8 tcp_accepted=3 tcp_refused=0 tcp_timed_out=0 tcp_bytes_in=0 tcp_bytes_out=0 tcp_errors=0 tcp_closed_at_stop=0 tcp_proxy_attributed=5 tcp_proxy_unattributed=0 tcp_proxy_malformed=6"
        );
    }
}
