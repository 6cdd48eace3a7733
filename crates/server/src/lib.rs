//! The upcase server: answers each UDP datagram with its uppercase, sent
//! back to the address it came from, and each TCP stream likewise.
//!
//! [`run`] is the whole program after its command line ([`Args`]) is
//! parsed: bind, print the ready line, serve until a stop signal, log a
//! summary. The modules, each importing only those listed before it:
//! - `config`: what the server is asked to do, as plain data (a leaf);
//!   `cli`: the command line that fills it in;
//! - `counters`, `warn_limit`: what a worker counts, and how often it warns;
//! - `policy`: the abuse limits in force;
//! - `tuning`, `binding`: the sockets, bound and tuned, before serving;
//! - `worker`: the UDP worker and each datagram's path through it;
//!   `tcp`: the TCP service;
//! - `serving`: their threads, the stop, the totals; `ready`: the ready line;
//! - `shutdown`: the signals that stop the server.
#![warn(unreachable_pub)]

mod binding;
mod cli;
mod config;
mod counters;
mod policy;
mod ready;
mod serving;
mod shutdown;
mod tcp;
mod tuning;
mod warn_limit;
mod worker;

use tracing::info;

pub use cli::Args;

use crate::binding::Bound;
use crate::serving::Service;

/// Runs the server until SIGINT or SIGTERM; `Ok` after a signal, `Err` when
/// it cannot start (an address that cannot be bound, say) or a socket fails.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.into_config();
    // Before binding, so a signal right after the ready line is a clean stop.
    let stop = shutdown::on_signals()?;
    let service = Service::new(Bound::bind(&config)?, &config)?;
    ready::announce(&ready::ready_line(service.udp_addr(), service.tcp_addr()));
    let totals = service.serve(&stop)?;
    if totals.udp.recv_errors > 0 {
        info!(
            "receive errors carried on after: {}",
            totals.udp.recv_errors
        );
    }
    info!("summary: {totals}");
    Ok(())
}
