//! From `--server HOST` to the addresses to try, in order.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::bail;

/// Turns a host name into addresses. The system resolver in the program;
/// tests pass their own so that no query ever leaves the machine.
pub trait Resolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver (getaddrinfo: /etc/hosts, DNS, ... as configured),
/// which also orders the addresses by the system's preference.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

impl<F> Resolver for F
where
    F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
{
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self(host, port)
    }
}

/// The addresses of `host`, in the order to try them, without repeats.
///
/// An IP address (IPv6 with or without brackets) is used as it is, without
/// asking the resolver; a name goes to the resolver.
pub fn server_addresses(
    host: &str,
    port: u16,
    resolver: &impl Resolver,
) -> anyhow::Result<Vec<SocketAddr>> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.is_empty() {
        bail!("cannot resolve an empty host name");
    }
    let found = match resolver.resolve(host, port) {
        Ok(found) => found,
        Err(e) => bail!("cannot resolve {host}: {e}"),
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(found.len());
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        bail!("cannot resolve {host}: no address found");
    }
    Ok(addrs)
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn no_dns(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        panic!("the resolver must not be asked about an address literal")
    }

    #[test]
    fn literals_skip_the_resolver() {
        assert_eq!(
            server_addresses("127.0.0.1", 7, &no_dns).expect("ok"),
            [addr("127.0.0.1:7")]
        );
        assert_eq!(
            server_addresses("::1", 7, &no_dns).expect("ok"),
            [addr("[::1]:7")]
        );
        assert_eq!(
            server_addresses("[::1]", 7, &no_dns).expect("ok"),
            [addr("[::1]:7")]
        );
    }

    #[test]
    fn names_keep_the_resolver_order_without_repeats() {
        let resolver = |host: &str, port: u16| {
            assert_eq!((host, port), ("server.test", 9));
            Ok(vec![
                addr("[::1]:9"),
                addr("127.0.0.1:9"),
                addr("[::1]:9"),
                addr("127.0.0.2:9"),
            ])
        };
        assert_eq!(
            server_addresses("server.test", 9, &resolver).expect("ok"),
            [addr("[::1]:9"), addr("127.0.0.1:9"), addr("127.0.0.2:9")]
        );
    }

    #[test]
    fn resolution_failures_name_the_host() {
        let failing = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> {
            Err(io::Error::other("Name or service not known"))
        };
        let err = server_addresses("nowhere.invalid", 1, &failing).expect_err("fails");
        assert_eq!(
            format!("{err:#}"),
            "cannot resolve nowhere.invalid: Name or service not known"
        );
        let empty = |_: &str, _: u16| Ok(Vec::new());
        let err = server_addresses("empty.test", 1, &empty).expect_err("fails");
        assert_eq!(
            format!("{err:#}"),
            "cannot resolve empty.test: no address found"
        );
        assert!(server_addresses("", 1, &empty).is_err());
    }
}
