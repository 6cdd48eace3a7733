//! The upcase server: answers each UDP datagram with its uppercase, sent
//! back to the address it came from, and each TCP stream likewise.
//!
//! [`run`] is the whole program after its command line ([`Args`]) is
//! parsed: bind, print the ready line, serve until a stop signal, log a
//! summary. The modules, each importing only those listed before it:
//! - `config`: what the server is asked to do, as plain data (a leaf);
//!   `cli`: the command line that fills it in;
//! - `batch_sizes`, `counters`, `live`, `warn_limit`: what a worker counts, where others
//!   read it, how often it warns;
//! - `policy`: the abuse limits in force; `sessions`, `proxy`: the UDP
//!   proxy sessions and the rule that reads a listed proxy's PROXY header
//!   (`--proxy-protocol-from`; the parsing is proto's);
//! - `tuning`, `binding`: the sockets, bound and tuned, before serving;
//!   `activation`: or inherited from a supervisor (systemd's LISTEN_FDS);
//! - `worker`: the UDP worker and each datagram's path through it;
//!   `tcp`: the TCP service;
//! - `serving`: their threads, the stop, the totals; `report`: the totals
//!   as a log event; `exposition` and `metrics`: the totals over HTTP in the
//!   Prometheus format; `ready`: the ready line; `notify`: readiness and
//!   the watchdog for systemd;
//! - `signals`: stop and report requests from outside, per platform;
//!   `control`: what the server does with them.
// The exceptions: `activation`, which takes the inherited sockets, and
// `signals/windows.rs`, which installs the console's control handler.
#![deny(unsafe_code)]

mod activation;
mod batch_sizes;
mod binding;
mod cli;
mod config;
mod control;
mod counters;
mod exposition;
mod live;
mod metrics;
mod notify;
mod policy;
mod proxy;
mod ready;
mod report;
mod serving;
mod sessions;
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
use crate::metrics::MetricsEndpoint;
use crate::notify::Notifier;
use crate::serving::{Service, Sockets};
use crate::signals::Events;

/// Runs the server until a stop signal (SIGINT, SIGTERM or SIGHUP; on
/// Windows Ctrl-C, Ctrl-Break or the console's close; see `control` for a
/// second and a third); `Ok` after the stop, `Err` when it cannot start (an
/// address that cannot be bound, say) or a socket fails. SIGUSR1 logs the
/// counters so far.
///
/// Started with sockets (`LISTEN_FDS`), it serves them instead of binding;
/// with `NOTIFY_SOCKET`, it tells the supervisor when it is ready and when
/// it stops; with `--metrics`, it serves the counters over HTTP.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.into_config();
    // First, while the process has one thread (see `activation`).
    let inherited = activation::take()?;
    // Before binding, so a signal right after the ready line is a clean stop.
    let events = Events::install()?;
    let sockets = match inherited {
        Some(inherited) => {
            let given = config.given.names();
            anyhow::ensure!(
                given.is_empty(),
                "{} cannot be used with inherited sockets (LISTEN_FDS): the socket unit says where to listen; leave {} out of the command line and the environment",
                given.join(", "),
                if given.len() == 1 { "it" } else { "them" }
            );
            info!(
                "serving the sockets passed by the supervisor: {}",
                inherited.describe()
            );
            Sockets::inherited(inherited, config.threads, &config)?
        }
        None => Bound::bind(&config)?.into(),
    };
    let service = Service::new(sockets, &config)?;
    let metrics = config.metrics.map(MetricsEndpoint::bind).transpose()?;
    let metrics_addr = metrics.as_ref().map(MetricsEndpoint::addr);
    let notifier = Notifier::from_env();
    let stop = Arc::new(AtomicBool::new(false));
    control::watch(events, Arc::clone(&stop), service.live(), notifier.clone())?;
    if let Some(metrics) = metrics {
        metrics.serve(service.live())?;
    }
    let line = ready::ready_line(service.udp_addrs(), service.tcp_addrs(), metrics_addr);
    ready::announce(&line);
    notifier.notify(&format!("READY=1\nSTATUS={line}"));
    notifier.start_watchdog()?;
    let totals = service.serve(&stop)?;
    if totals.udp.recv_errors > 0 {
        info!(
            "receive errors carried on after: {}",
            totals.udp.recv_errors
        );
    }
    report::log_totals("summary:", &totals);
    Ok(())
}
