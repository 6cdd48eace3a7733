//! The server's ready line, `The server is ready to receive on ...`: the
//! textbook's words, then the addresses it serves on, each named by its
//! transport when there are two (`udp A, tcp B`), bare when UDP is all
//! (`A`, as the textbook server and the Python peers print it), and the
//! metrics endpoint last when there is one (`metrics http://M/metrics`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a server serves on, as its ready line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyLine {
    line: String,
    addrs: Vec<(Option<Transport>, SocketAddr)>,
    metrics: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl ReadyLine {
    pub const PREFIX: &str = "The server is ready to receive on ";

    /// The ready line in `line`, if it is one and names an address. Words
    /// other than `udp`, `tcp`, addresses and `metrics http://ADDR/metrics`
    /// are passed over.
    pub fn parse(line: &str) -> Option<ReadyLine> {
        let line = line.trim_end();
        let named = line.strip_prefix(Self::PREFIX)?;
        let mut addrs = Vec::new();
        let mut metrics = None;
        let mut transport = None;
        for word in named.split(|c: char| c.is_whitespace() || c == ',') {
            match word {
                "udp" => transport = Some(Transport::Udp),
                "tcp" => transport = Some(Transport::Tcp),
                word => {
                    if let Some(url) = word.strip_prefix("http://") {
                        metrics = url.strip_suffix("/metrics").and_then(|a| a.parse().ok());
                    } else if let Ok(addr) = word.parse() {
                        addrs.push((transport.take(), addr));
                    }
                }
            }
        }
        (!addrs.is_empty()).then(|| ReadyLine {
            line: line.to_string(),
            addrs,
            metrics,
        })
    }

    /// The metrics endpoint (`metrics http://ADDR/metrics`), if served.
    pub fn metrics(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The line as printed.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Every address, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.iter().map(|(_, addr)| *addr).collect()
    }

    /// The first address.
    pub fn first(&self) -> SocketAddr {
        self.addrs[0].1
    }

    /// The UDP address: the one named `udp`, or a bare one.
    pub fn udp(&self) -> Option<SocketAddr> {
        self.find(|t| t != Some(Transport::Tcp))
    }

    /// The address named `tcp`.
    pub fn tcp(&self) -> Option<SocketAddr> {
        self.find(|t| t == Some(Transport::Tcp))
    }

    fn find(&self, wanted: impl Fn(Option<Transport>) -> bool) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(transport, _)| wanted(*transport))
            .map(|(_, addr)| *addr)
    }
}

/// Where a client on this machine reaches a server bound to `addr`: an
/// unspecified address (`0.0.0.0`, `[::]`) becomes loopback of its family.
pub fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_bare_address_is_udp() {
        let ready = ReadyLine::parse("The server is ready to receive on [::]:12000\n").unwrap();
        assert_eq!(ready.line(), "The server is ready to receive on [::]:12000");
        assert_eq!(ready.addrs(), [addr("[::]:12000")]);
        assert_eq!(ready.udp(), Some(addr("[::]:12000")));
        assert_eq!(ready.tcp(), None);
    }

    #[test]
    fn both_transports_are_told_apart() {
        let line = "The server is ready to receive on udp 127.0.0.1:4000, tcp 127.0.0.1:4001";
        let ready = ReadyLine::parse(line).unwrap();
        assert_eq!(
            ready.addrs(),
            [addr("127.0.0.1:4000"), addr("127.0.0.1:4001")]
        );
        assert_eq!(ready.first(), addr("127.0.0.1:4000"));
        assert_eq!(ready.udp(), Some(addr("127.0.0.1:4000")));
        assert_eq!(ready.tcp(), Some(addr("127.0.0.1:4001")));
        let tcp_only = ReadyLine::parse("The server is ready to receive on tcp [::1]:7").unwrap();
        assert_eq!(
            (tcp_only.udp(), tcp_only.tcp()),
            (None, Some(addr("[::1]:7")))
        );
    }

    #[test]
    fn the_metrics_endpoint_ends_the_list() {
        let line = "The server is ready to receive on udp 127.0.0.1:40123, tcp 127.0.0.1:40123, metrics http://127.0.0.1:40124/metrics";
        let ready = ReadyLine::parse(line).unwrap();
        assert_eq!(
            ready.addrs(),
            [addr("127.0.0.1:40123"), addr("127.0.0.1:40123")]
        );
        assert_eq!(ready.metrics(), Some(addr("127.0.0.1:40124")));
        let udp = ReadyLine::parse(
            "The server is ready to receive on udp [::1]:5, metrics http://[::1]:6/metrics",
        )
        .unwrap();
        assert_eq!(
            (udp.udp(), udp.metrics()),
            (Some(addr("[::1]:5")), Some(addr("[::1]:6")))
        );
        assert_eq!(
            ReadyLine::parse(&line[..line.len() - 30])
                .unwrap()
                .metrics(),
            None
        );
    }

    #[test]
    fn other_lines_are_not_ready_lines() {
        assert_eq!(ReadyLine::parse("The server is ready to receive"), None);
        assert_eq!(
            ReadyLine::parse("The server is ready to receive on nothing"),
            None
        );
        assert_eq!(ReadyLine::parse("listening on 127.0.0.1:5"), None);
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        assert_eq!(reachable(addr("0.0.0.0:5")), addr("127.0.0.1:5"));
        assert_eq!(reachable(addr("[::]:5")), addr("[::1]:5"));
        assert_eq!(reachable(addr("127.0.0.2:5")), addr("127.0.0.2:5"));
    }
}
