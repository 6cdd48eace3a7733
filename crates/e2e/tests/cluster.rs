//! Issue 14's deployments, in network namespaces this test builds (it
//! needs root, as CI has; without it, it says so on stderr and passes
//! without running): upcase behind nftables and behind nginx, the client's
//! own address through nftables and through nginx's PROXY protocol, and why the controller deletes conntrack
//! entries. The checks live in the kit (`upcase_e2e::cluster`), shared with
//! `cargo xtask cluster`, which prints the same reports.
//!
//! Network namespaces are Linux's: elsewhere these tests are not built.

#![cfg(target_os = "linux")]

use std::fmt::Display;

use upcase_e2e::cluster::{self, Checked, Kind};
use upcase_e2e::netns;
use upcase_e2e::network::Binaries;

/// Runs `check` in namespaces of its own, prints its report and fails on
/// any bar it missed; says so on stderr and returns where namespaces cannot
/// be made.
fn check<R: Checked + Display>(check: impl FnOnce(&Binaries) -> anyhow::Result<R>) {
    if let Some(why) = netns::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let report = check(&Binaries::built()).unwrap_or_else(|err| panic!("{err:#}"));
    println!("{report}");
    let failures = report.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}

#[test]
fn behind_nftables_the_load_spreads_and_no_request_is_lost() {
    check(|bins| cluster::run(Kind::Nftables, bins));
}

#[test]
fn behind_nginx_the_load_spreads_and_no_request_is_lost() {
    check(|bins| cluster::run(Kind::Nginx, bins));
}

#[test]
fn stale_conntrack_entries_blackhole_a_dead_backends_clients() {
    check(cluster::stale_conntrack);
}

#[test]
fn the_rate_limit_sees_each_client_through_nftables() {
    check(|bins| cluster::rate_limit(Kind::Nftables, bins));
}

#[test]
fn the_rate_limit_sees_each_client_through_nginx_by_the_proxy_protocol() {
    check(|bins| cluster::rate_limit(Kind::Nginx, bins));
}
