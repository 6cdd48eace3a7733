//! The small value parsers every command line of the project shares, so a
//! duration or a `HOST[:PORT]` means the same in the server, the client and
//! the bench.

use std::time::Duration;

/// A duration in humantime syntax (`250ms`, `2s`, `1m`) that is more than
/// zero: a zero timeout or run would end before anything could happen.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(duration)
}

/// A duration in humantime syntax, zero allowed (a warm-up of none, say).
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// A host as a user names a server, with the port it may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    /// The port written after the host, if any (never 0).
    pub port: Option<u16>,
}

impl HostPort {
    /// `localhost`, without a port: the server a command line reaches when
    /// it names none.
    pub fn localhost() -> HostPort {
        HostPort {
            host: "localhost".to_string(),
            port: None,
        }
    }

    /// The port named here, else the one given apart, else `default`;
    /// `Err` when both name a port and they differ.
    pub fn port_or(&self, given: Option<u16>, default: u16) -> Result<u16, String> {
        match (self.port, given) {
            (Some(named), Some(given)) if named != given => Err(format!(
                "--server names port {named} and --port says {given}: give one"
            )),
            (named, given) => Ok(named.or(given).unwrap_or(default)),
        }
    }
}

/// `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT`; a bare IPv6 address (two
/// colons or more) is a host without a port.
pub fn host_port(text: &str) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} opens a [ it does not close"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{text:?} has {after:?} after the ], not :PORT")),
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?} names no host"));
    }
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{port:?} in {text:?} is not a port (1-65535)"))
        })
        .transpose()?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(positive_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(positive_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            positive_duration("0s").expect_err("zero"),
            "must be more than zero"
        );
        assert!(positive_duration("soon").is_err());
        assert!(positive_duration("30").is_err(), "a unit is required");
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn hosts_may_carry_their_port() {
        let at = |host: &str, port| {
            Ok(HostPort {
                host: host.to_string(),
                port,
            })
        };
        assert_eq!(host_port("example.com:7"), at("example.com", Some(7)));
        assert_eq!(host_port("127.0.0.1:8"), at("127.0.0.1", Some(8)));
        assert_eq!(host_port("[::1]:9"), at("::1", Some(9)));
        assert_eq!(host_port("[::1]"), at("::1", None));
        assert_eq!(host_port("::1"), at("::1", None));
        assert_eq!(host_port("fe80::1:2"), at("fe80::1:2", None));
        assert_eq!(host_port("localhost"), at("localhost", None));
        for bad in [
            "h:0", "h:65536", "h:", ":5", "[::1", "[::1]5", "[]:5", "h:x", "",
        ] {
            assert!(host_port(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn two_ports_must_agree() {
        let named = host_port("h:5").expect("valid");
        assert_eq!(named.port_or(None, 12_000), Ok(5));
        assert_eq!(named.port_or(Some(5), 12_000), Ok(5));
        assert_eq!(
            named.port_or(Some(6), 12_000),
            Err("--server names port 5 and --port says 6: give one".to_string())
        );
        let bare = host_port("h").expect("valid");
        assert_eq!(bare.port_or(Some(6), 12_000), Ok(6));
        assert_eq!(bare.port_or(None, 12_000), Ok(12_000));
    }
}
