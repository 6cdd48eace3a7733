//! The upcase server: answers each UDP datagram with its uppercase, sent
//! back to the address it came from, and each TCP stream likewise.
//!
//! [`run`] is the whole program after its command line ([`Args`]) is
//! parsed: bind, print the ready line, serve until a stop signal, log a
//! summary. The modules, each importing only those listed before it:
//! - `config`: what the server is asked to do, as plain data (a leaf);
//!   `cli`: the command line that fills it in;
//! - `counters`, `live`, `warn_limit`: what a worker counts, where others
//!   read it, how often it warns;
//! - `policy`: the abuse limits in force;
//! - `tuning`, `binding`: the sockets, bound and tuned, before serving;
//! - `worker`: the UDP worker and each datagram's path through it;
//!   `tcp`: the TCP service;
//! - `serving`: their threads, the stop, the totals; `ready`: the ready line;
//! - `signals`: stop and report requests from outside, per platform;
//!   `control`: what the server does with them.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod binding;
mod cli;
mod config;
mod control;
mod counters;
mod live;
mod policy;
mod ready;
mod serving;
mod signals;
mod tcp;
mod tuning;
mod warn_limit;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tracing::info;

pub use cli::Args;

use crate::binding::Bound;
use crate::serving::Service;
use crate::signals::Events;

/// Runs the server until a stop signal (SIGINT, SIGTERM or SIGHUP; see
/// `control` for a second and a third); `Ok` after the stop, `Err` when it
/// cannot start (an address that cannot be bound, say) or a socket fails.
/// SIGUSR1 logs the counters so far.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.into_config();
    // Before binding, so a signal right after the ready line is a clean stop.
    let events = Events::install()?;
    let service = Service::new(Bound::bind(&config)?, &config)?;
    let stop = Arc::new(AtomicBool::new(false));
    control::watch(events, Arc::clone(&stop), service.live())?;
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
