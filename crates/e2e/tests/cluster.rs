//! Issue 14's deployments, in network namespaces this test builds (it
//! needs root, as CI has; without it, it says so on stderr and passes
//! without running): upcase behind nftables and behind nginx, the client's
//! own address through nftables, and why the controller deletes conntrack
//! entries. The checks live in the kit (`upcase_e2e::cluster`), shared with
//! `cargo xtask cluster`, which prints the same reports.

use upcase_e2e::cluster::{self, Kind};
use upcase_e2e::netns;
use upcase_e2e::network::Binaries;

/// The binaries, or `None` (said on stderr) where namespaces cannot be made.
fn namespaces() -> Option<Binaries> {
    if let Some(why) = netns::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(Binaries::built())
}

fn behind(kind: Kind) {
    let Some(bins) = namespaces() else { return };
    let report = cluster::run(kind, &bins).unwrap_or_else(|err| panic!("{err:#}"));
    println!("{report}");
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{report}\n{}",
        report.nginx_log
    );
}

#[test]
fn behind_nftables_the_load_spreads_and_no_request_is_lost() {
    behind(Kind::Nftables);
}

#[test]
fn behind_nginx_the_load_spreads_and_no_request_is_lost() {
    behind(Kind::Nginx);
}

#[test]
fn stale_conntrack_entries_blackhole_a_dead_backends_clients() {
    let Some(bins) = namespaces() else { return };
    let report = cluster::stale_conntrack(&bins).unwrap_or_else(|err| panic!("{err:#}"));
    println!("{report}");
    let failures = report.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}

#[test]
fn the_rate_limit_sees_each_client_through_nftables() {
    let Some(bins) = namespaces() else { return };
    let report = cluster::rate_limit(&bins).unwrap_or_else(|err| panic!("{err:#}"));
    println!("{report}");
    let failures = report.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}
