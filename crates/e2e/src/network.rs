//! The deployment under test, as five hosts: a client, a balancer and three
//! backends, each a network namespace, wired by one veth pair per link
//! (no bridge: the balancer routes between its links, as a router does).
//!
//! ```text
//!  client 10.77.0.2, 10.77.0.3 ── 10.77.0.1  balancer  10.77.1X.1 ── 10.77.1X.2:12000 backend X
//!                                VIP 10.77.100.100 (lo)                  (X = 0, 1, 2)
//! ```
//!
//! The addresses exist only inside the namespaces, which have no link to
//! the machine's own network, so no other network and no other run can
//! see them. Every host's default route is the balancer, so a backend's
//! replies to the client's own address go back through it (no SNAT: the
//! server sees the real client). Each backend serves on sockets the kit
//! holds (socket activation, [`HeldSockets`]), made inside its namespace,
//! so a server can be replaced without closing them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::signal::Signal;
use anyhow::{Context, bail};

use crate::held::HeldSockets;
use crate::netns::{Netns, next_network, run, sweep_stale};
use crate::process::{Process, Stopped};
use crate::scrape::Scrape;
use crate::{PATIENCE, find_tool};

/// The service's port, on the virtual address and on every backend.
pub const PORT: u16 = 12000;
/// The virtual address the clients use.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 100, 100);
/// The client's first address (the polite client, the load).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The client's second address (the flooder).
pub const CLIENT_2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// The balancer's address on the client's link.
pub const BALANCER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// How many backends.
pub const BACKENDS: usize = 3;

/// The health probe's settings, as a controller runs it.
pub const PROBE_TIMEOUT: &str = "200ms";

/// The programs the hosts run.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub server: PathBuf,
    pub client: PathBuf,
}

impl Binaries {
    /// The workspace's, next to the test executable (see [`crate::binary`]).
    pub fn built() -> Binaries {
        Binaries {
            server: crate::binary("upcase-server"),
            client: crate::binary("upcase-client"),
        }
    }

    /// The ones in `dir` (`target/debug`, say).
    pub fn in_dir(dir: &Path) -> Binaries {
        Binaries {
            server: dir.join("upcase-server"),
            client: dir.join("upcase-client"),
        }
    }
}

/// Backend `index`'s address: the next one after its [`gateway`].
pub fn backend_addr(index: usize) -> SocketAddr {
    let [a, b, c, d] = gateway(index).octets();
    SocketAddr::from((Ipv4Addr::new(a, b, c, d + 1), PORT))
}

/// The balancer's address on backend `index`'s link: where the backend's
/// default route goes, and nginx's source address towards it.
pub fn gateway(index: usize) -> Ipv4Addr {
    let subnet = u8::try_from(10 + index).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 77, subnet, 1)
}

/// The five hosts. Dropping it stops every server, then deletes the
/// namespaces (and with them every interface).
pub struct Network {
    pub backends: Vec<Backend>,
    pub balancer: Netns,
    pub client: Netns,
    pub bins: Binaries,
}

/// One backend host and the server it runs, if any.
pub struct Backend {
    pub index: usize,
    pub addr: SocketAddr,
    server: Option<Process>,
    held: Option<HeldSockets>,
    metrics: Option<SocketAddr>,
    args: Vec<String>,
    pub host: Netns,
}

impl Network {
    /// Builds the hosts and links, and starts a server on every backend
    /// with `server_args` (beyond the kit's own) and waits for each to be
    /// ready. Sweeps namespaces a killed run left behind first.
    pub fn build(bins: &Binaries, server_args: &[&str]) -> anyhow::Result<Network> {
        find_tool("ip", "iproute2")?;
        for program in [&bins.server, &bins.client] {
            if !program.exists() {
                bail!(
                    "{} is not built: run `cargo build --workspace --bins` first",
                    program.display()
                );
            }
        }
        sweep_stale()?;
        let n = next_network();
        let client = Netns::create(n, "client")?;
        let balancer = Netns::create(n, "lb")?;
        link(&balancer, "client", &client, "eth0")?;
        balancer.ip(&["addr", "add", &format!("{BALANCER}/24"), "dev", "client"])?;
        for ip in [CLIENT, CLIENT_2] {
            client.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        }
        client.ip(&["route", "add", "default", "via", &BALANCER.to_string()])?;
        balancer.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        // The balancer routes between its links.
        balancer
            .within(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))?
            .context("cannot turn on forwarding in the balancer")?;
        let mut backends = Vec::with_capacity(BACKENDS);
        for index in 0..BACKENDS {
            let host = Netns::create(n, &format!("b{index}"))?;
            let name = format!("b{index}");
            link(&balancer, &name, &host, "eth0")?;
            let addr = backend_addr(index);
            let IpAddr::V4(ip) = addr.ip() else {
                bail!("backends are IPv4")
            };
            let gateway = gateway(index);
            balancer.ip(&["addr", "add", &format!("{gateway}/24"), "dev", &name])?;
            host.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            host.ip(&["route", "add", "default", "via", &gateway.to_string()])?;
            backends.push(Backend {
                index,
                addr,
                server: None,
                held: None,
                metrics: None,
                args: server_args.iter().map(|a| (*a).to_string()).collect(),
                host,
            });
        }
        // Built before the servers start, so a failure drops it all.
        let mut network = Network {
            backends,
            balancer,
            client,
            bins: bins.clone(),
        };
        for backend in &mut network.backends {
            backend.start(bins)?;
        }
        Ok(network)
    }

    /// `count` UDP sockets of the client host on `ip`, each on its own
    /// system-chosen port.
    pub fn client_sockets(&self, ip: Ipv4Addr, count: usize) -> anyhow::Result<Vec<UdpSocket>> {
        self.client
            .within(|| {
                (0..count)
                    .map(|_| UdpSocket::bind((ip, 0)))
                    .collect::<std::io::Result<Vec<_>>>()
            })?
            .context("cannot bind the client's sockets")
    }

    /// The health probe, exactly as an operator runs it, from `host` to
    /// `target`: `upcase-client --server T --timeout 200ms --retries 0
    /// [--tcp] health`. Its output, whatever its exit status.
    pub fn probe(&self, host: &Netns, target: SocketAddr, tcp: bool) -> anyhow::Result<Output> {
        let mut command = host.command(&self.bins.client);
        command.args(["--server", &target.to_string()]);
        command.args(["--timeout", PROBE_TIMEOUT, "--retries", "0"]);
        if tcp {
            command.arg("--tcp");
        }
        command.arg("health");
        Process::spawn(&mut command)
            .label("upcase-client health")
            .start()
            .and_then(|process| process.finish(PATIENCE))
    }

    /// Whether backend `index` passes the probe from the balancer.
    pub fn healthy(&self, index: usize) -> anyhow::Result<bool> {
        let out = self.probe(&self.balancer, backend_addr(index), false)?;
        Ok(out.status.success())
    }
}

/// A veth pair from `a` (named `a_name` there) to `b` (`b_name`), both
/// ends up; made inside the two namespaces at once, so no name is ever
/// taken in the machine's own.
fn link(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    run(std::process::Command::new("ip").args([
        "link",
        "add",
        a_name,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ]))?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["link", "set", b_name, "up"])
}

impl Backend {
    /// Starts a server on the held sockets (held first if they are not),
    /// and waits for its ready line.
    pub fn start(&mut self, bins: &Binaries) -> anyhow::Result<()> {
        if self.server.is_some() {
            bail!("backend {} already runs a server", self.index);
        }
        if self.held.is_none() {
            let addr = self.addr;
            let held = self
                .host
                .within(move || -> std::io::Result<HeldSockets> {
                    Ok(HeldSockets::from_sockets(
                        Some(UdpSocket::bind(addr)?),
                        Some(TcpListener::bind(addr)?),
                    ))
                })?
                .with_context(|| format!("cannot bind backend {}'s sockets", self.index))?;
            self.held = Some(held);
        }
        let held = self.held.as_ref().context("no held sockets")?;
        let server = bins.server.to_string_lossy().into_owned();
        let mut args = vec!["netns", "exec", self.host.name(), &server];
        args.extend(["--threads", "1", "--metrics", "127.0.0.1:0"]);
        args.extend(self.args.iter().map(String::as_str));
        let mut command = held.command(Path::new("ip"), &args);
        let mut process = Process::spawn(&mut command)
            .label(&format!("backend {}", self.index))
            .start()?;
        let ready = process.wait_ready(PATIENCE)?;
        self.metrics = ready.metrics();
        self.server = Some(process);
        Ok(())
    }

    /// Whether a server runs.
    pub fn is_up(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the server with SIGTERM and waits for its exit; the sockets
    /// stay held, so what arrives meanwhile waits for the next server.
    pub fn stop(&mut self) -> anyhow::Result<Stopped> {
        let process = self
            .server
            .take()
            .with_context(|| format!("backend {} runs no server", self.index))?;
        let stopped = process.stop_with(Signal::SIGTERM, PATIENCE)?;
        if !stopped.status.success() {
            bail!(
                "backend {} exited {} after SIGTERM: {}",
                self.index,
                stopped.status,
                stopped.stderr
            );
        }
        Ok(stopped)
    }

    /// The backend dies: SIGKILL for its server, and its sockets closed
    /// (the service and its socket unit gone; the host still up, so a
    /// datagram sent to it is refused with ICMP port unreachable).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut process = self
            .server
            .take()
            .with_context(|| format!("backend {} runs no server", self.index))?;
        process.signal(Signal::SIGKILL)?;
        process.wait_within(PATIENCE)?;
        self.held = None;
        Ok(())
    }

    /// Closes the held sockets (after a stop: the socket unit stopped too).
    pub fn release_sockets(&mut self) {
        self.held = None;
    }

    /// The server's counter `series` now, from its metrics.
    pub fn counter(&self, series: &str) -> anyhow::Result<u64> {
        let metrics = self
            .metrics
            .filter(|_| self.server.is_some())
            .with_context(|| format!("backend {} runs no server", self.index))?;
        let series = series.to_string();
        self.host.within(move || Scrape::of(metrics).get(&series))
    }

    /// Datagrams the running server has received so far.
    pub fn received(&self) -> anyhow::Result<u64> {
        self.counter("upcase_udp_datagrams_received_total")
    }

    /// What the running server has logged so far.
    pub fn log(&self) -> String {
        self.server
            .as_ref()
            .map(Process::stderr)
            .unwrap_or_default()
    }
}
