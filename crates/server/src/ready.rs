//! The ready line: the one line the server prints on stdout, once every
//! socket is bound and its memory claimed, which scripts and tests wait for
//! before they send.

use std::io::Write;
use std::net::SocketAddr;

use tracing::warn;

/// `The server is ready to receive on udp A, tcp B` when both are served,
/// `... on tcp B` for TCP alone, and for UDP alone the foundation's line
/// `... on A`, which scripts already parse. Every form ends in an address.
pub(crate) fn ready_line(udp: Option<SocketAddr>, tcp: Option<SocketAddr>) -> String {
    let named = match (udp, tcp) {
        (Some(udp), None) => udp.to_string(),
        (udp, tcp) => udp
            .map(|a| format!("udp {a}"))
            .into_iter()
            .chain(tcp.map(|a| format!("tcp {a}")))
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
            ready_line(Some(addr("[::]:12000")), None),
            "The server is ready to receive on [::]:12000"
        );
        assert_eq!(
            ready_line(Some(addr("127.0.0.1:40123")), None),
            "The server is ready to receive on 127.0.0.1:40123"
        );
    }

    #[test]
    fn the_ready_line_names_every_socket_and_ends_in_an_address() {
        let a = addr("[::]:12000");
        assert_eq!(
            ready_line(Some(a), Some(a)),
            "The server is ready to receive on udp [::]:12000, tcp [::]:12000"
        );
        assert_eq!(
            ready_line(None, Some(addr("127.0.0.1:5"))),
            "The server is ready to receive on tcp 127.0.0.1:5"
        );
        assert_eq!(
            ready_line(Some(a), None),
            "The server is ready to receive on [::]:12000"
        );
    }
}
