//! `upcase-client health`: the one-shot probe a load balancer's controller,
//! an orchestrator or a monitor runs against one server.
//!
//! It sends one probe message, unique to the run, and the server is healthy
//! only if the reply is exactly the probe's uppercase: a port that is
//! closed, a server that stays silent for every try, or one that answers
//! anything else (an echo, an ASCII-only uppercase, junk) is not. The probe
//! mixes cases and carries letters outside ASCII, two of them unusual
//! when uppercased (`ß` becomes two letters, `SS`; `ÿ` becomes `Ÿ`, in
//! another Unicode block), so a server that only echoes, or only knows
//! ASCII or one table, fails it. Over UDP it goes the session's way (the same socket per message, the
//! same retries and junk rule); with `--tcp`, one connection, the probe and
//! its newline, and the whole reply up to the server's end of the stream.
//!
//! Exit status: 0 healthy; [`EXIT_UNHEALTHY`] (1, as Docker's HEALTHCHECK
//! reads it) for any failed probe, with one `error: unhealthy: ...` line
//! saying why; 2 for a command line that cannot be run. Nothing is printed
//! on success unless `-v` asks.

use std::io::{self, Cursor};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use upcase_proto::uppercase;

use crate::args::Config;
use crate::resolve::{Resolver, server_addresses};
use crate::session::{Reply, Session};

/// Exit status of a probe that failed, whatever the reason.
pub const EXIT_UNHEALTHY: u8 = 1;

/// Most bytes of a wrong reply quoted in the error line.
const QUOTED: usize = 80;

/// A failed probe, and why: exit status [`EXIT_UNHEALTHY`].
#[derive(Debug)]
pub struct Unhealthy(anyhow::Error);

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unhealthy: {:#}", self.0)
    }
}

impl std::error::Error for Unhealthy {}

/// What a passed probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy {
    /// The address that answered.
    pub server: String,
    pub transport: &'static str,
    /// From the first send to the exact reply, retries included.
    pub elapsed: Duration,
}

impl std::fmt::Display for Healthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "healthy: {} answered the probe over {} in {:.1?}",
            self.server, self.transport, self.elapsed
        )
    }
}

/// The probe of this run: mixed case, letters outside ASCII, and the
/// process id and the time, so that no reply to an earlier probe (of this
/// or another prober) can pass for its answer.
pub fn probe_message() -> Vec<u8> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "upcase Health-Probe {}.{nanos}: Grüße, naïve ÿ",
        std::process::id()
    )
    .into_bytes()
}

/// Probes the server `config` names (its timeout and retries; the message
/// is the probe's own) over UDP, or over TCP with `tcp`.
pub fn probe(config: &Config, tcp: bool, resolver: &impl Resolver) -> Result<Healthy, Unhealthy> {
    let probe = probe_message();
    let started = Instant::now();
    let server = if tcp {
        probe_tcp(config, resolver, &probe)
    } else {
        probe_udp(config, resolver, &probe)
    }
    .map_err(Unhealthy)?;
    Ok(Healthy {
        server,
        transport: if tcp { "TCP" } else { "UDP" },
        elapsed: started.elapsed(),
    })
}

/// One probe datagram, retried as a session retries; the address that
/// answered it exactly.
fn probe_udp(config: &Config, resolver: &impl Resolver, probe: &[u8]) -> anyhow::Result<String> {
    let addrs = server_addresses(&config.server, config.port, resolver)?;
    let mut session = Session::new(config, addrs, io::sink());
    let (peer, reply) = session.ask(probe)?;
    match reply {
        Reply::Exact(_) => Ok(peer.to_string()),
        Reply::Differing => Err(wrong(&peer, session.reply_bytes(&reply))),
    }
}

/// The probe and its newline over one connection; the whole reply must be
/// their uppercase.
fn probe_tcp(config: &Config, resolver: &impl Resolver, probe: &[u8]) -> anyhow::Result<String> {
    let mut line = probe.to_vec();
    line.push(b'\n');
    let expected = uppercase(&line);
    let mut reply = Vec::new();
    crate::tcp::run(config, resolver, Cursor::new(line), &mut reply)?;
    let server = if config.server.contains(':') {
        format!("[{}]:{}", config.server, config.port)
    } else {
        format!("{}:{}", config.server, config.port)
    };
    if reply == expected {
        Ok(server)
    } else {
        Err(wrong(&server, &reply))
    }
}

/// A reply that is not the probe's uppercase, quoted (shortened, escaped).
fn wrong(server: &dyn std::fmt::Display, reply: &[u8]) -> anyhow::Error {
    let shown: String = reply
        .iter()
        .take(QUOTED)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    let more = if reply.len() > QUOTED { "..." } else { "" };
    anyhow::anyhow!(
        "{server} answered the probe with {} bytes that are not its uppercase: \"{shown}{more}\"",
        reply.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_unique_and_not_uppercased_by_ascii_rules() {
        let probe = probe_message();
        let text = String::from_utf8(probe.clone()).expect("UTF-8");
        assert!(text.starts_with(&format!("upcase Health-Probe {}.", std::process::id())));
        let upper = String::from_utf8(uppercase(&probe)).expect("UTF-8");
        assert!(upper.ends_with(": GRÜSSE, NAÏVE Ÿ"), "{upper}");
        assert_eq!(upper.chars().count(), text.chars().count() + 1, "ß is SS");
        assert_ne!(upper.to_ascii_uppercase(), text.to_ascii_uppercase());
        assert_ne!(probe_message(), probe, "unique per run");
    }

    #[test]
    fn a_wrong_reply_is_quoted_short_and_escaped() {
        let err = wrong(&"h:1", b"upcase\n\xff");
        assert_eq!(
            err.to_string(),
            "h:1 answered the probe with 8 bytes that are not its uppercase: \"upcase\\n\\xff\""
        );
        let err = wrong(&"h:1", &[b'a'; 100]);
        assert!(
            err.to_string()
                .ends_with(&format!("\"{}...\"", "a".repeat(80)))
        );
        let unhealthy = Unhealthy(anyhow::anyhow!("no server").context("probing h:1"));
        assert_eq!(unhealthy.to_string(), "unhealthy: probing h:1: no server");
    }
}
