//! Tuning the bound UDP sockets for load: a receive buffer that absorbs
//! bursts, and UDP GRO (`--gro`) so a sender's GSO trains arrive (and leave)
//! as one buffer. (Busy-polling is the worker's way of receiving, not a
//! socket option.)

use std::net::UdpSocket;

use anyhow::Context;
use tracing::{info, warn};

use crate::config::UdpTuning;

/// Raises the receive buffer of every socket to what the configuration
/// asks (never lowers it: an inherited socket may come with a larger one,
/// which systemd's `ReceiveBuffer=` sets as root, past the cap the server
/// itself meets), logs what the kernel granted (warning when it is less
/// than asked), and turns UDP GRO on where the kernel has it, if asked.
pub(crate) fn tune(sockets: &[UdpSocket], config: &UdpTuning) -> anyhow::Result<()> {
    let mut reported = None;
    for socket in sockets {
        let current = upcase_udp::opts::recv_buffer(socket)
            .context("cannot read the receive buffer size (SO_RCVBUF)")?;
        // Linux reads back twice the usable size.
        let granted = if current / 2 >= config.recv_buffer {
            current
        } else {
            upcase_udp::opts::set_recv_buffer(socket, config.recv_buffer)
                .context("cannot set the receive buffer size (SO_RCVBUF)")?
        };
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
        let config = UdpTuning {
            recv_buffer: 64 << 10,
            ..UdpTuning::default()
        };
        tune(std::slice::from_ref(&socket), &config).expect("tune");
        let reported = upcase_udp::opts::recv_buffer(&socket).expect("read back");
        assert!(reported >= 2 * (64 << 10), "{reported}");
    }

    #[test]
    fn a_larger_buffer_is_never_lowered() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Within the default net.core.rmem_max, so no privilege is needed.
        let before = upcase_udp::opts::set_recv_buffer(&socket, 160 << 10).expect("set");
        assert!(before >= 2 * (160 << 10), "{before}");
        let config = UdpTuning {
            recv_buffer: 16 << 10,
            ..UdpTuning::default()
        };
        tune(std::slice::from_ref(&socket), &config).expect("tune");
        let after = upcase_udp::opts::recv_buffer(&socket).expect("read back");
        assert_eq!(after, before, "the socket's larger buffer was lowered");
    }

    #[test]
    fn gro_is_on_only_when_asked_for() {
        for gro in [true, false] {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let config = UdpTuning {
                gro,
                ..UdpTuning::default()
            };
            tune(std::slice::from_ref(&socket), &config).expect("tune");
            let on = upcase_udp::opts::gro_enabled(&socket).expect("read UDP_GRO back");
            assert_eq!(on, gro);
        }
    }
}
