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
/// itself meets), logs what the system granted (warning when it is less
/// than asked), and turns UDP GRO on where the kernel and the I/O path have
/// it, if asked.
pub(crate) fn tune(sockets: &[UdpSocket], config: &UdpTuning) -> anyhow::Result<()> {
    let mut reported = None;
    for socket in sockets {
        let current = upcase_udp::opts::recv_buffer(socket)
            .context("cannot read the receive buffer size (SO_RCVBUF)")?;
        let granted = if usable(current, READS_DOUBLED) >= config.recv_buffer {
            current
        } else {
            upcase_udp::opts::set_recv_buffer(socket, config.recv_buffer)
                .context("cannot set the receive buffer size (SO_RCVBUF)")?
        };
        reported.get_or_insert(granted);
    }
    if let Some(reported) = reported {
        match recv_buffer_note(config.recv_buffer, reported, READS_DOUBLED) {
            Ok(note) => info!("{note}"),
            Err(note) => warn!("{note}"),
        }
    }
    for socket in sockets.iter().filter(|_| config.gro) {
        // Through the path: the portable one must never have GRO on.
        if let Err(err) = config.io.enable_gro(socket) {
            // Only throughput is lost: trains then arrive as single datagrams.
            info!("UDP GRO is not available ({err}); GSO trains are answered datagram by datagram");
            break;
        }
    }
    Ok(())
}

/// Linux reads SO_RCVBUF back as twice the usable size (it counts its
/// bookkeeping); other systems read back what they granted.
const READS_DOUBLED: bool = cfg!(target_os = "linux");

/// The usable bytes of a buffer that SO_RCVBUF reads as `reported`.
fn usable(reported: usize, doubled: bool) -> usize {
    if doubled { reported / 2 } else { reported }
}

/// What to say about the receive buffer: `Ok` for the info line, `Err` for
/// a warning that it is smaller than asked. `reported` is what SO_RCVBUF
/// reads back, `doubled` on Linux.
fn recv_buffer_note(asked: usize, reported: usize, doubled: bool) -> Result<String, String> {
    let granted = usable(reported, doubled);
    match (granted < asked, doubled) {
        (true, true) => Err(format!(
            "receive buffer of {granted} bytes per socket, less than the {asked} asked for: \
             the kernel caps it at net.core.rmem_max (raise it with \
             `sysctl -w net.core.rmem_max={asked}`), or bursts may be dropped"
        )),
        (true, false) => Err(format!(
            "receive buffer of {granted} bytes per socket, less than the {asked} asked for: \
             the system refused more (its limit is kern.ipc.maxsockbuf on macOS and FreeBSD), \
             or bursts may be dropped"
        )),
        (false, true) => Ok(format!(
            "receive buffer of {granted} bytes per socket granted ({asked} asked for; \
             SO_RCVBUF reads {reported}, the kernel's doubled figure)"
        )),
        (false, false) => Ok(format!(
            "receive buffer of {granted} bytes per socket granted ({asked} asked for)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upcase_udp::Io;

    #[test]
    fn a_buffer_below_the_request_is_a_warning_naming_the_limit() {
        let ok = recv_buffer_note(4 << 20, 8 << 20, true).expect("granted in full");
        assert!(ok.starts_with("receive buffer of 4194304 bytes"), "{ok}");
        let short = recv_buffer_note(4 << 20, 425_984, true).expect_err("capped");
        assert!(short.contains("212992 bytes"), "{short}");
        assert!(short.contains("net.core.rmem_max=4194304"), "{short}");
        // Elsewhere the figure read back is the figure granted.
        let ok = recv_buffer_note(4 << 20, 4 << 20, false).expect("granted in full");
        assert_eq!(
            ok,
            "receive buffer of 4194304 bytes per socket granted (4194304 asked for)"
        );
        let short = recv_buffer_note(4 << 20, 2 << 20, false).expect_err("refused");
        assert!(short.contains("2097152 bytes"), "{short}");
        assert!(short.contains("kern.ipc.maxsockbuf"), "{short}");
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
        assert!(usable(reported, READS_DOUBLED) >= 64 << 10, "{reported}");
    }

    #[test]
    fn a_larger_buffer_is_never_lowered() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Within the default net.core.rmem_max, so no privilege is needed.
        let before = upcase_udp::opts::set_recv_buffer(&socket, 160 << 10).expect("set");
        assert!(usable(before, READS_DOUBLED) >= 160 << 10, "{before}");
        let config = UdpTuning {
            recv_buffer: 16 << 10,
            ..UdpTuning::default()
        };
        tune(std::slice::from_ref(&socket), &config).expect("tune");
        let after = upcase_udp::opts::recv_buffer(&socket).expect("read back");
        assert_eq!(after, before, "the socket's larger buffer was lowered");
    }

    #[test]
    fn gro_is_on_only_when_asked_for_on_the_batched_path() {
        for io in Io::ALL.into_iter().filter(|io| io.is_available()) {
            for gro in [true, false] {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                let config = UdpTuning {
                    gro,
                    io,
                    ..UdpTuning::default()
                };
                tune(std::slice::from_ref(&socket), &config).expect("tune");
                let on = upcase_udp::opts::gro_enabled(&socket).expect("read UDP_GRO back");
                assert_eq!(on, gro && io == Io::Batched, "{io}, --gro {gro}");
            }
        }
    }
}
