//! How the UDP sockets are tuned for load: a receive buffer that absorbs
//! bursts, UDP GRO (`--gro`) so a sender's GSO trains arrive (and leave) as
//! one buffer, and busy-polling for latency.

use std::net::UdpSocket;

use anyhow::Context;
use tracing::{info, warn};

/// Enough for a burst of several thousand small datagrams.
pub const DEFAULT_RECV_BUFFER: u32 = 4 << 20;

#[derive(Clone, Debug, clap::Args)]
pub struct UdpArgs {
    /// Receive buffer of each UDP socket in bytes (SO_RCVBUF), so that a burst
    /// is queued rather than dropped; the kernel caps it at net.core.rmem_max
    /// unless the server has CAP_NET_ADMIN
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RECV_BUFFER,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    pub recv_buffer: u32,
    /// Spin on the socket instead of sleeping between datagrams: lower
    /// latency, at the cost of a whole core per worker thread
    #[arg(long)]
    pub busy_poll: bool,
    /// Turn UDP GRO on: a sender's GSO train arrives as one buffer and an
    /// all-ASCII train is answered with one GSO send, but every ordinary
    /// datagram then costs the kernel a few percent more
    #[arg(long)]
    pub gro: bool,
}

impl UdpArgs {
    pub fn into_config(self) -> UdpConfig {
        UdpConfig {
            recv_buffer: usize::try_from(self.recv_buffer).unwrap_or(usize::MAX),
            busy_poll: self.busy_poll,
            gro: self.gro,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// Bytes asked for with SO_RCVBUF.
    pub recv_buffer: usize,
    /// Workers spin on non-blocking receives instead of sleeping.
    pub busy_poll: bool,
    /// UDP GRO is asked for.
    pub gro: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            recv_buffer: DEFAULT_RECV_BUFFER as usize,
            busy_poll: false,
            gro: false,
        }
    }
}

/// Sets the receive buffer of every socket, logs what the kernel granted
/// (warning when it is less than asked), and turns UDP GRO on where the
/// kernel has it, if the configuration asks for it.
pub fn tune(sockets: &[UdpSocket], config: &UdpConfig) -> anyhow::Result<()> {
    let mut reported = None;
    for socket in sockets {
        let granted = upcase_udp::opts::set_recv_buffer(socket, config.recv_buffer)
            .context("cannot set the receive buffer size (SO_RCVBUF)")?;
        reported.get_or_insert(granted);
    }
    if let Some(reported) = reported {
        match recv_buffer_note(config.recv_buffer, reported) {
            Ok(note) => info!("{note}"),
            Err(note) => warn!("{note}"),
        }
    }
    for socket in sockets.iter().filter(|_| config.gro) {
        if let Err(err) = upcase_udp::enable_gro(socket) {
            // Only throughput is lost: trains then arrive as single datagrams.
            info!("UDP GRO is not available ({err}); GSO trains are answered datagram by datagram");
            break;
        }
    }
    Ok(())
}

/// What to say about the receive buffer: `Ok` for the info line, `Err` for
/// a warning that it is smaller than asked. `reported` is what SO_RCVBUF
/// reads back, which Linux doubles to count its bookkeeping.
fn recv_buffer_note(asked: usize, reported: usize) -> Result<String, String> {
    let granted = reported / 2;
    if granted < asked {
        Err(format!(
            "receive buffer of {granted} bytes per socket, less than the {asked} asked for: \
             the kernel caps it at net.core.rmem_max (raise it with \
             `sysctl -w net.core.rmem_max={asked}`), or bursts may be dropped"
        ))
    } else {
        Ok(format!(
            "receive buffer of {granted} bytes per socket granted ({asked} asked for; \
             SO_RCVBUF reads {reported}, the kernel's doubled figure)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_below_the_request_is_a_warning_naming_rmem_max() {
        let ok = recv_buffer_note(4 << 20, 8 << 20).expect("granted in full");
        assert!(ok.starts_with("receive buffer of 4194304 bytes"), "{ok}");
        let short = recv_buffer_note(4 << 20, 425_984).expect_err("capped");
        assert!(short.contains("212992 bytes"), "{short}");
        assert!(short.contains("net.core.rmem_max=4194304"), "{short}");
    }

    #[test]
    fn the_buffer_asked_for_is_granted_on_a_socket() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let config = UdpConfig {
            recv_buffer: 64 << 10,
            ..UdpConfig::default()
        };
        tune(std::slice::from_ref(&socket), &config).expect("tune");
        let reported = upcase_udp::opts::recv_buffer(&socket).expect("read back");
        assert!(reported >= 2 * (64 << 10), "{reported}");
    }

    #[test]
    fn gro_is_on_only_when_asked_for() {
        for gro in [true, false] {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let config = UdpConfig {
                gro,
                ..UdpConfig::default()
            };
            tune(std::slice::from_ref(&socket), &config).expect("tune");
            let on = upcase_udp::opts::gro_enabled(&socket).expect("read UDP_GRO back");
            assert_eq!(on, gro);
        }
    }
}
