//! The ready line: the one line the server prints on stdout, once every
//! socket is bound and its memory claimed, which scripts and tests wait for
//! before they send.

use std::io::Write;
use std::net::SocketAddr;

use tracing::warn;

/// `The server is ready to receive on udp A, tcp B` when both are served,
/// `... on tcp B` for TCP alone, and for UDP alone the foundation's line
/// `... on A`, which scripts already parse. Inherited sockets may add more
/// addresses of a transport (`udp A, udp B, tcp C`). With metrics, the list
/// ends in `metrics http://M/metrics`, and every address is named by its
/// transport: a bare address only ever stands alone.
pub(crate) fn ready_line(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
    metrics: Option<SocketAddr>,
) -> String {
    let named = match (udp, tcp, metrics) {
        ([only], [], None) => only.to_string(),
        _ => udp
            .iter()
            .map(|a| format!("udp {a}"))
            .chain(tcp.iter().map(|a| format!("tcp {a}")))
            .chain(metrics.map(|a| format!("metrics http://{a}/metrics")))
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("The server is ready to receive on {named}")
}

/// Prints the ready line and flushes it at once.
pub(crate) fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // Serving matters more than being heard: a closed stdout is only logged.
    if let Err(err) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        warn!("cannot print the ready line: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("addr")
    }

    #[test]
    fn the_ready_line_names_the_bound_address() {
        assert_eq!(
            ready_line(&[addr("[::]:12000")], &[], None),
            "The server is ready to receive on [::]:12000"
        );
        assert_eq!(
            ready_line(&[addr("127.0.0.1:40123")], &[], None),
            "The server is ready to receive on 127.0.0.1:40123"
        );
    }

    #[test]
    fn the_ready_line_names_every_socket_and_ends_in_an_address() {
        let a = addr("[::]:12000");
        assert_eq!(
            ready_line(&[a], &[a], None),
            "The server is ready to receive on udp [::]:12000, tcp [::]:12000"
        );
        assert_eq!(
            ready_line(&[], &[addr("127.0.0.1:5")], None),
            "The server is ready to receive on tcp 127.0.0.1:5"
        );
        assert_eq!(
            ready_line(&[a, addr("127.0.0.1:6")], &[addr("127.0.0.1:7")], None),
            "The server is ready to receive on udp [::]:12000, udp 127.0.0.1:6, tcp 127.0.0.1:7"
        );
    }

    #[test]
    fn metrics_end_the_list_and_name_every_transport() {
        let (udp, tcp, m) = (
            addr("127.0.0.1:40123"),
            addr("127.0.0.1:40123"),
            addr("127.0.0.1:40124"),
        );
        assert_eq!(
            ready_line(&[udp], &[tcp], Some(m)),
            "The server is ready to receive on udp 127.0.0.1:40123, tcp 127.0.0.1:40123, metrics http://127.0.0.1:40124/metrics"
        );
        assert_eq!(
            ready_line(&[udp], &[], Some(addr("[::1]:9"))),
            "The server is ready to receive on udp 127.0.0.1:40123, metrics http://[::1]:9/metrics"
        );
    }
}
