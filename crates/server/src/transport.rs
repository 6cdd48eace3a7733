//! Which transports the server serves, and serving them together on one
//! port number: UDP through [`Server`], TCP through [`crate::tcp`].
//!
//! A service that speaks both transports uses the same port number for both
//! (DNS on 53, echo on 7), so a client can pick a transport without learning
//! a new address. With `--port 0` the system chooses UDP's port and TCP
//! binds the same number; if that number is taken for TCP, both are bound
//! again on a new one, a few times.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use tracing::{debug, info};

use crate::config::{Bind, Config};
use crate::counters::Counters;
use crate::server::Server;
use crate::socket::ipv6_unavailable;
use crate::tcp::{TcpCounters, TcpLimits, listen_error, listen_tcp, serve_tcp};

/// How many ports `--port 0` tries before it gives up finding one free for
/// both transports; another program taking the same port for TCP a few times
/// in a row is not chance.
const PORT_PAIR_ATTEMPTS: usize = 8;

/// The command-line options of the transports, flattened into [`crate::Args`].
#[derive(Debug, Clone, clap::Args)]
pub struct TransportArgs {
    /// Transports to serve, on the same address and port: udp, tcp, or udp,tcp
    #[arg(long, value_name = "LIST", default_value = "udp,tcp", value_parser = parse_transports)]
    pub transport: Transports,
    /// Most TCP connections served at once; one more is reset at once
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Close a TCP connection that sends nothing, or takes none of its reply,
    /// for this long (`300ms`, `30s`, `2m`)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = upcase_cli::parse::positive_duration)]
    pub idle_timeout: Duration,
}

impl TransportArgs {
    pub fn into_config(self) -> TransportConfig {
        TransportConfig {
            transports: self.transport,
            tcp: TcpLimits {
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                idle_timeout: self.idle_timeout,
                ..TcpLimits::default()
            },
        }
    }
}

/// Which transports to serve; at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transports {
    pub udp: bool,
    pub tcp: bool,
}

impl Transports {
    pub const BOTH: Transports = Transports {
        udp: true,
        tcp: true,
    };
    pub const UDP: Transports = Transports {
        udp: true,
        tcp: false,
    };
    pub const TCP: Transports = Transports {
        udp: false,
        tcp: true,
    };
}

impl Default for Transports {
    fn default() -> Self {
        Transports::BOTH
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.udp, self.tcp) {
            (true, true) => f.write_str("udp,tcp"),
            (true, false) => f.write_str("udp"),
            (false, true) => f.write_str("tcp"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// `udp`, `tcp`, or both separated by a comma, in any order.
pub fn parse_transports(text: &str) -> Result<Transports, String> {
    let mut chosen = Transports {
        udp: false,
        tcp: false,
    };
    for name in text.split(',').map(str::trim) {
        match name.to_ascii_lowercase().as_str() {
            "udp" => chosen.udp = true,
            "tcp" => chosen.tcp = true,
            _ => {
                return Err(format!(
                    "unknown transport {name:?}: expected udp, tcp or udp,tcp"
                ));
            }
        }
    }
    Ok(chosen)
}

/// The transports to serve and TCP's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportConfig {
    pub transports: Transports,
    pub tcp: TcpLimits,
}

/// The sockets of every transport asked for, bound, not yet serving.
#[derive(Debug)]
pub struct Bound {
    pub udp: Option<Server>,
    pub tcp: Option<TcpListener>,
}

impl Bound {
    /// Binds what `config.transport` asks for, on the same address and port.
    pub fn bind(config: &Config) -> anyhow::Result<Bound> {
        let Transports { udp, tcp } = config.transport.transports;
        match (udp, tcp) {
            (true, true) => bind_pair(config),
            (true, false) => Ok(Bound {
                udp: Some(Server::bind(config)?),
                tcp: None,
            }),
            (false, true) => Ok(Bound {
                udp: None,
                tcp: Some(bind_tcp_alone(config.bind, config.port)?),
            }),
            (false, false) => anyhow::bail!("no transport to serve"),
        }
    }

    /// The UDP address, when UDP is served.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(Server::local_addr)
    }

    /// The TCP address, when TCP is served.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The line printed once every socket is bound; see [`ready_line`].
    pub fn ready_line(&self) -> String {
        ready_line(self.udp_addr(), self.tcp_addr())
    }

    /// Serves every bound transport until `stop` is set, TCP on a thread of
    /// its own. A transport that fails sets `stop`, so the other ends too,
    /// and its error is returned.
    pub fn serve(
        self,
        limits: TcpLimits,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<(Counters, Option<TcpCounters>)> {
        if let Some(addr) = self.tcp_addr() {
            info!(
                "accepting TCP on {addr}, at most {} connections, idle timeout {}",
                limits.max_connections,
                humantime::format_duration(limits.idle_timeout)
            );
        }
        match (self.udp, self.tcp) {
            (Some(udp), None) => Ok((udp.serve(stop)?, None)),
            (None, Some(tcp)) => {
                let counters = serve_tcp(tcp, limits, Arc::clone(stop))?;
                Ok((Counters::default(), Some(counters)))
            }
            (Some(udp), Some(tcp)) => {
                let tcp_stop = Arc::clone(stop);
                let tcp_thread = thread::Builder::new()
                    .name("tcp".to_string())
                    .spawn(move || {
                        let served = serve_tcp(tcp, limits, Arc::clone(&tcp_stop));
                        if served.is_err() {
                            tcp_stop.store(true, Ordering::Relaxed);
                        }
                        served
                    })
                    .context("cannot start the TCP thread")?;
                let udp_served = udp.serve(stop);
                // UDP ends on the stop flag or on a failure; TCP must end too.
                stop.store(true, Ordering::Relaxed);
                let tcp_served = tcp_thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("the TCP thread panicked"))?;
                Ok((udp_served?, Some(tcp_served?)))
            }
            (None, None) => anyhow::bail!("no transport to serve"),
        }
    }
}

/// The ready line: `The server is ready to receive on udp A, tcp B` when
/// both are served, `... on tcp B` for TCP alone, and for UDP alone the
/// foundation's line `... on A`, which scripts already parse. Every form
/// ends in an address.
pub fn ready_line(udp: Option<SocketAddr>, tcp: Option<SocketAddr>) -> String {
    match (udp, tcp) {
        (Some(udp), None) => crate::ready_line(udp),
        (udp, tcp) => {
            let named = udp
                .map(|a| format!("udp {a}"))
                .into_iter()
                .chain(tcp.map(|a| format!("tcp {a}")))
                .collect::<Vec<_>>()
                .join(", ");
            format!("The server is ready to receive on {named}")
        }
    }
}

/// The summary line's TCP fields, or nothing when TCP was not served.
pub fn tcp_summary(tcp: Option<TcpCounters>) -> String {
    tcp.map(|c| c.summary_fields()).unwrap_or_default()
}

/// UDP first, then TCP on the address and port UDP got. With port 0, a port
/// that turns out to be taken for TCP means binding both again.
fn bind_pair(config: &Config) -> anyhow::Result<Bound> {
    bind_pair_with(config, listen_tcp)
}

/// [`bind_pair`] with the TCP listen step given, so that a test can take
/// the port from under it.
fn bind_pair_with(
    config: &Config,
    mut listen: impl FnMut(SocketAddr) -> io::Result<TcpListener>,
) -> anyhow::Result<Bound> {
    let mut attempt = 1;
    loop {
        let udp = Server::bind(config)?;
        let addr = udp.local_addr();
        match listen(addr) {
            Ok(tcp) => {
                return Ok(Bound {
                    udp: Some(udp),
                    tcp: Some(tcp),
                });
            }
            Err(err)
                if config.port == 0
                    && err.kind() == io::ErrorKind::AddrInUse
                    && attempt < PORT_PAIR_ATTEMPTS =>
            {
                debug!(
                    "port {} is free for UDP but not for TCP; choosing another",
                    addr.port()
                );
                attempt += 1;
            }
            Err(err) => return Err(listen_error(err, addr)),
        }
    }
}

/// TCP alone: the address UDP would use, with the same fallback to IPv4
/// when the host has no IPv6.
fn bind_tcp_alone(bind: Bind, port: u16) -> anyhow::Result<TcpListener> {
    let addr = match bind {
        Bind::Addr(ip) => SocketAddr::new(ip, port),
        Bind::DualStack => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match listen_tcp(v6) {
                Ok(listener) => return Ok(listener),
                Err(err) if ipv6_unavailable(&err) => {
                    info!("IPv6 is not available ({err}); accepting on IPv4 only");
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
                }
                Err(err) => return Err(listen_error(err, v6)),
            }
        }
    };
    listen_tcp(addr).map_err(|err| listen_error(err, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("addr")
    }

    fn config(transports: Transports, ip: &str, port: u16) -> Config {
        let mut config = Config {
            bind: Bind::Addr(ip.parse().expect("ip")),
            port,
            ..Config::default()
        };
        config.transport.transports = transports;
        config
    }

    #[test]
    fn transports_are_parsed() {
        assert_eq!(parse_transports("udp"), Ok(Transports::UDP));
        assert_eq!(parse_transports("tcp"), Ok(Transports::TCP));
        assert_eq!(parse_transports("udp,tcp"), Ok(Transports::BOTH));
        assert_eq!(parse_transports("TCP, udp"), Ok(Transports::BOTH));
        for bad in ["", "udp,", "sctp", "udp;tcp"] {
            assert!(parse_transports(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Transports::default().to_string(), "udp,tcp");
    }

    #[test]
    fn the_command_line_sets_transports_and_limits() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            crate::Args::try_parse_from(
                std::iter::once("upcase-server").chain(args.iter().copied()),
            )
            .map(crate::Args::into_config)
        };
        let defaults = parse(&[]).expect("defaults");
        assert_eq!(defaults.transport.transports, Transports::BOTH);
        assert_eq!(defaults.transport.tcp.max_connections, 1024);
        assert_eq!(defaults.transport.tcp.idle_timeout, Duration::from_secs(30));
        let chosen = parse(&[
            "--transport",
            "tcp",
            "--max-connections",
            "2",
            "--idle-timeout",
            "300ms",
        ])
        .expect("valid");
        assert_eq!(chosen.transport.transports, Transports::TCP);
        assert_eq!(chosen.transport.tcp.max_connections, 2);
        assert_eq!(
            chosen.transport.tcp.idle_timeout,
            Duration::from_millis(300)
        );
        for bad in [
            &["--transport", "sctp"][..],
            &["--transport", ""],
            &["--max-connections", "0"],
            &["--max-connections", "-1"],
            &["--idle-timeout", "0s"],
            &["--idle-timeout", "30"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_ready_line_names_every_socket_and_ends_in_an_address() {
        let a = addr("[::]:12000");
        assert_eq!(
            ready_line(Some(a), Some(a)),
            "The server is ready to receive on udp [::]:12000, tcp [::]:12000"
        );
        assert_eq!(
            ready_line(None, Some(addr("127.0.0.1:5"))),
            "The server is ready to receive on tcp 127.0.0.1:5"
        );
        assert_eq!(
            ready_line(Some(a), None),
            "The server is ready to receive on [::]:12000"
        );
    }

    #[test]
    fn both_transports_share_a_system_chosen_port() {
        let bound = Bound::bind(&config(Transports::BOTH, "127.0.0.1", 0)).expect("bind");
        let udp = bound.udp_addr().expect("udp");
        assert_ne!(udp.port(), 0);
        assert_eq!(bound.tcp_addr(), Some(udp));
    }

    #[test]
    fn a_port_taken_for_tcp_is_an_error_when_it_was_asked_for() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = Bound::bind(&config(Transports::BOTH, "127.0.0.1", port)).expect_err("taken");
        assert!(
            format!("{err:#}").starts_with(&format!("cannot listen on TCP 127.0.0.1:{port}: ")),
            "{err:#}"
        );
    }

    #[test]
    fn a_system_chosen_port_taken_for_tcp_is_chosen_again() {
        let mut tried = Vec::new();
        let mut squatters = Vec::new();
        let bound = bind_pair_with(&config(Transports::BOTH, "127.0.0.1", 0), |addr| {
            tried.push(addr.port());
            if tried.len() == 1 {
                // Someone else takes the TCP side of the port UDP just got.
                squatters.extend(TcpListener::bind(addr).ok());
            }
            listen_tcp(addr)
        })
        .expect("a second port");
        assert_eq!(tried.len(), 2, "ports tried: {tried:?}");
        let udp = bound.udp_addr().expect("udp");
        assert_eq!(bound.tcp_addr(), Some(udp));
        assert_ne!(udp.port(), tried[0]);
        assert_eq!(udp.port(), tried[1]);
    }

    #[test]
    fn a_system_chosen_port_always_taken_for_tcp_ends_in_an_error() {
        let mut tried = 0;
        let mut squatters = Vec::new();
        let err = bind_pair_with(&config(Transports::BOTH, "127.0.0.1", 0), |addr| {
            tried += 1;
            squatters.extend(TcpListener::bind(addr).ok());
            listen_tcp(addr)
        })
        .expect_err("every port taken");
        assert_eq!(tried, PORT_PAIR_ATTEMPTS);
        assert!(
            format!("{err:#}").contains("cannot listen on TCP 127.0.0.1:"),
            "{err:#}"
        );
    }

    #[test]
    fn one_transport_binds_only_its_socket() {
        let udp = Bound::bind(&config(Transports::UDP, "127.0.0.1", 0)).expect("bind");
        assert!(udp.udp.is_some() && udp.tcp.is_none());
        let tcp = Bound::bind(&config(Transports::TCP, "127.0.0.1", 0)).expect("bind");
        assert!(tcp.udp.is_none());
        assert_ne!(tcp.tcp_addr().expect("tcp").port(), 0);
    }

    #[test]
    fn the_stop_flag_ends_both_transports() {
        let bound = Bound::bind(&config(Transports::BOTH, "127.0.0.1", 0)).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let served = thread::scope(|s| {
            let serving = s.spawn(|| bound.serve(TcpLimits::default(), &stop));
            stop.store(true, Ordering::Relaxed);
            serving.join().expect("no panic")
        });
        let (udp, tcp) = served.expect("clean stop");
        assert_eq!(udp, Counters::default());
        assert_eq!(tcp, Some(TcpCounters::default()));
    }
}
