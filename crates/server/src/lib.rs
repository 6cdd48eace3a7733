//! The upcase UDP server: answers each datagram with its uppercase, sent
//! back to the address it came from.
//!
//! [`run`] is the whole program after its command line is parsed: bind,
//! print the ready line, serve until SIGINT or SIGTERM, log a summary.
//! [`Server`] is the same without the signals and the printing, for tests
//! and for programs that embed it.

pub mod config;
pub mod counters;
pub mod policy;
pub mod server;
pub mod shutdown;
pub mod socket;
pub mod tcp;
pub mod transport;
pub mod udp_tuning;
pub mod warn_limit;
pub mod worker;

use std::io::Write;
use std::net::SocketAddr;

use tracing::{info, warn};

pub use config::{Args, Bind, Config};
pub use counters::Counters;
pub use server::Server;

/// Runs the server until SIGINT or SIGTERM; `Ok` after a signal, `Err` when
/// it cannot start (an address that cannot be bound, say) or a socket fails.
pub fn run(config: Config) -> anyhow::Result<()> {
    // Before binding, so a signal right after the ready line is a clean stop.
    let stop = shutdown::on_signals()?;
    let bound = transport::Bound::bind(&config)?;
    if let Some(addr) = bound.udp_addr() {
        info!(
            "receiving on {addr} with {} worker thread{}",
            config.threads,
            if config.threads == 1 { "" } else { "s" }
        );
    }
    if let Some(limits) = config.policy.describe() {
        info!("abuse limits: {limits}");
    }
    announce_ready(&bound.ready_line());
    let (totals, tcp) = bound.serve(config.transport.tcp, &stop)?;
    if totals.recv_errors > 0 {
        info!("receive errors carried on after: {}", totals.recv_errors);
    }
    info!("summary: {totals}{}", transport::tcp_summary(tcp));
    Ok(())
}

/// The one line the server ever prints on stdout, which scripts and tests
/// wait for before they send.
pub fn ready_line(addr: SocketAddr) -> String {
    format!("The server is ready to receive on {addr}")
}

fn announce_ready(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // Serving matters more than being heard: a closed stdout is only logged.
    if let Err(err) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        warn!("cannot print the ready line: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_names_the_bound_address() {
        assert_eq!(
            ready_line("[::]:12000".parse().expect("addr")),
            "The server is ready to receive on [::]:12000"
        );
        assert_eq!(
            ready_line("127.0.0.1:40123".parse().expect("addr")),
            "The server is ready to receive on 127.0.0.1:40123"
        );
    }
}
