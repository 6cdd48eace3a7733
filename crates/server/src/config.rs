//! The command line and what it asks the server to do.

use std::net::IpAddr;

use upcase_cli::Verbosity;
use upcase_proto::DEFAULT_PORT;

/// `upcase-server [--bind ADDR] [--port PORT] [--threads N] [-v|-q]`
#[derive(Debug, clap::Parser)]
#[command(name = "upcase-server", version, about)]
pub struct Args {
    /// Address to receive on [default: all interfaces, IPv6 and IPv4, one
    /// dual-stack socket on ::, or 0.0.0.0 where IPv6 is off]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Port to receive on, the same for UDP and TCP; 0 lets the system choose one
    #[arg(short, long, value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Worker threads, each with its own socket on the same port (SO_REUSEPORT)
    /// [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(flatten)]
    pub udp: crate::udp_tuning::UdpArgs,
    #[command(flatten)]
    pub transport: crate::transport::TransportArgs,
    #[command(flatten)]
    pub policy: crate::policy::PolicyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl Args {
    pub fn into_config(self) -> Config {
        Config {
            bind: self.bind.map_or(Bind::DualStack, Bind::Addr),
            port: self.port,
            threads: self.threads.map_or_else(default_threads, usize::from),
            udp: self.udp.into_config(),
            transport: self.transport.into_config(),
            policy: self.policy.into_config(),
        }
    }
}

/// Where the server listens and how many threads answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub bind: Bind,
    /// 0 lets the system choose.
    pub port: u16,
    /// At least 1.
    pub threads: usize,
    /// Receive buffer size and busy-polling of the UDP sockets.
    pub udp: crate::udp_tuning::UdpConfig,
    /// UDP, TCP or both, and TCP's limits.
    pub transport: crate::transport::TransportConfig,
    /// Opt-in abuse limits (rate per source, reply/request ratio).
    pub policy: crate::policy::PolicyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: Bind::DualStack,
            port: DEFAULT_PORT,
            threads: default_threads(),
            udp: crate::udp_tuning::UdpConfig::default(),
            transport: crate::transport::TransportConfig::default(),
            policy: crate::policy::PolicyConfig::default(),
        }
    }
}

/// One worker per core this process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Which address the sockets bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Every interface, both families: `[::]` with IPV6_V6ONLY off, or
    /// `0.0.0.0` on a host without IPv6.
    DualStack,
    /// Exactly this address.
    Addr(IpAddr),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Args::try_parse_from(std::iter::once("upcase-server").chain(args.iter().copied()))
            .map(Args::into_config)
    }

    #[test]
    fn defaults_are_the_textbook_port_on_every_interface() {
        assert_eq!(parse(&[]).expect("no arguments"), Config::default());
        assert_eq!(Config::default().port, 12_000);
    }

    #[test]
    fn options_are_read() {
        let config = parse(&["--bind", "::1", "--port", "0", "--threads", "3"]).expect("valid");
        assert_eq!(
            config,
            Config {
                bind: Bind::Addr("::1".parse().expect("ip")),
                port: 0,
                threads: 3,
                ..Config::default()
            }
        );
        let config = parse(&["--bind", "127.0.0.1", "-p", "4000", "-v"]).expect("valid");
        assert_eq!(config.port, 4000);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--port", "70000"][..],
            &["--port", "-1"],
            &["--threads", "0"],
            &["--bind", "localhost:1"],
            &["--bind", "300.1.1.1"],
            &["--nope"],
            &["-v", "-q"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
