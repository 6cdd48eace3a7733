//! The kernel as the balancer, the way kube-proxy's nftables mode does it:
//! a DNAT of the virtual address to a backend picked by `numgen random`,
//! decided once per flow and then kept by conntrack, with the client's
//! address left as it is. And the controller a real deployment runs beside
//! it (kube-proxy's endpoint sync), which the test plays: it probes each
//! backend with `upcase-client health`, keeps in the map only those that
//! pass and are not being drained, and deletes the conntrack entries of
//! those that failed. Without that delete, a UDP client whose flow went to
//! a dead backend keeps going there: every retry refreshes the stale entry,
//! so it never expires (the known way Kubernetes blackholes UDP traffic).

use std::net::{IpAddr, SocketAddr};

use crate::find_tool;
use crate::netns::run;
use crate::network::{BACKENDS, Network, PORT, VIP, backend_addr};
use crate::process::Process;

/// The table, and the one rule that jumps to the service.
fn ruleset() -> String {
    format!(
        "table ip upcase {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {VIP} meta l4proto {{ tcp, udp }} th dport {PORT} jump service
    }}
    chain service {{
    }}
}}
"
    )
}

/// The service chain's rule for `backends`: one of them at random for each
/// new flow; none at all when there is none, so the virtual address (the
/// balancer's own) refuses, as a service without endpoints does.
fn service_rule(backends: &[SocketAddr]) -> String {
    let mut update = String::from("flush chain ip upcase service\n");
    if !backends.is_empty() {
        let map: Vec<String> = backends
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{i} : {}", addr.ip()))
            .collect();
        update += &format!(
            "add rule ip upcase service dnat to numgen random mod {} map {{ {} }}\n",
            backends.len(),
            map.join(", ")
        );
    }
    update
}

/// What one pass of the controller did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Backends taken out of the map (their probe failed).
    pub removed: Vec<usize>,
    /// Backends put back (their probe passed again).
    pub added: Vec<usize>,
    /// Conntrack entries deleted, of backends whose probe failed.
    pub conntrack_deleted: u64,
}

/// The nftables balancer and its controller.
#[derive(Debug)]
pub struct NftBalancer {
    in_map: [bool; BACKENDS],
    withdrawn: [bool; BACKENDS],
    /// A failed backend's entries are deleted once, until it passes again.
    cleaned: [bool; BACKENDS],
    /// Whether the controller deletes a failed backend's conntrack entries
    /// (false only to show what goes wrong without it).
    pub delete_conntrack: bool,
}

impl NftBalancer {
    /// Loads the ruleset into the balancer host, every backend in the map.
    pub fn install(network: &Network) -> anyhow::Result<NftBalancer> {
        find_tool("nft", "nftables")?;
        find_tool("conntrack", "conntrack")?;
        nft(network, &ruleset())?;
        let balancer = NftBalancer {
            in_map: [true; BACKENDS],
            withdrawn: [false; BACKENDS],
            cleaned: [false; BACKENDS],
            delete_conntrack: true,
        };
        balancer.apply(network)?;
        Ok(balancer)
    }

    /// The backends in the map.
    pub fn in_map(&self) -> Vec<usize> {
        (0..BACKENDS).filter(|&i| self.in_map[i]).collect()
    }

    fn apply(&self, network: &Network) -> anyhow::Result<()> {
        let backends: Vec<SocketAddr> = self.in_map().into_iter().map(backend_addr).collect();
        nft(network, &service_rule(&backends))
    }

    /// Takes `index` out of the map for new flows, before it is stopped:
    /// its flows go on to it while it drains (a terminating endpoint).
    pub fn withdraw(&mut self, network: &Network, index: usize) -> anyhow::Result<()> {
        self.withdrawn[index] = true;
        self.in_map[index] = false;
        self.apply(network)
    }

    /// Lets a withdrawn backend back in once its probe passes.
    pub fn readmit(&mut self, index: usize) {
        self.withdrawn[index] = false;
    }

    /// One pass of the controller: probes every backend from the balancer
    /// host; the map becomes those that passed and are not withdrawn, in one
    /// atomic update; a backend that failed has its UDP conntrack entries
    /// deleted, so its clients' next datagrams are new flows.
    pub fn reconcile(&mut self, network: &Network) -> anyhow::Result<Reconciled> {
        let mut done = Reconciled::default();
        let mut changed = false;
        for index in 0..BACKENDS {
            let healthy = network.healthy(index)?;
            let wanted = healthy && !self.withdrawn[index];
            if wanted != self.in_map[index] {
                self.in_map[index] = wanted;
                changed = true;
                if wanted {
                    done.added.push(index);
                } else {
                    done.removed.push(index);
                }
            }
            if healthy {
                self.cleaned[index] = false;
            }
            if !healthy && self.delete_conntrack && !self.cleaned[index] {
                // After the map update, so no new flow reaches it meanwhile.
                if changed {
                    self.apply(network)?;
                    changed = false;
                }
                done.conntrack_deleted += delete_conntrack(network, backend_addr(index).ip())?;
                self.cleaned[index] = true;
            }
        }
        if changed {
            self.apply(network)?;
        }
        Ok(done)
    }

    /// Deletes backend `index`'s UDP conntrack entries now (the step the
    /// controller skips when `delete_conntrack` is off).
    pub fn delete_conntrack_of(&self, network: &Network, index: usize) -> anyhow::Result<u64> {
        delete_conntrack(network, backend_addr(index).ip())
    }

    /// Live UDP flows the balancer sends to `index`.
    pub fn flows_to(&self, network: &Network, index: usize) -> anyhow::Result<u64> {
        let ip = backend_addr(index).ip().to_string();
        let out = run(network.balancer.command("conntrack").args([
            "-L",
            "-p",
            "udp",
            "--reply-src",
            &ip,
        ]))?;
        Ok(entries(&String::from_utf8_lossy(&out.stderr), "shown"))
    }
}

/// `nft -f -` in the balancer host, with `script` as its input.
fn nft(network: &Network, script: &str) -> anyhow::Result<()> {
    let mut command = network.balancer.command("nft");
    command.args(["-f", "-"]);
    let out = Process::spawn(&mut command)
        .label("nft")
        .input(script.as_bytes())
        .start()
        .and_then(|process| process.finish(crate::PATIENCE))?;
    anyhow::ensure!(
        out.status.success(),
        "nft refused {script:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    Ok(())
}

/// `conntrack -D -p udp --reply-src IP` in the balancer host: the entries
/// of flows DNATed to that backend; how many went.
fn delete_conntrack(network: &Network, ip: IpAddr) -> anyhow::Result<u64> {
    let mut command = network.balancer.command("conntrack");
    command.args(["-D", "-p", "udp", "--reply-src", &ip.to_string()]);
    let out = Process::spawn(&mut command)
        .label("conntrack")
        .start()
        .and_then(|process| process.finish(crate::PATIENCE))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit status 1 when there was nothing to delete.
    let deleted = entries(&stderr, "deleted");
    if !out.status.success() && deleted != 0 {
        anyhow::bail!("conntrack -D failed ({}): {stderr}", out.status);
    }
    Ok(deleted)
}

/// N in conntrack's `N flow entries have been <verb>.`
fn entries(stderr: &str, verb: &str) -> u64 {
    stderr
        .lines()
        .find(|line| line.ends_with(&format!("have been {verb}.")))
        .and_then(|line| line.split("): ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_follows_the_backends() {
        let two = [backend_addr(0), backend_addr(2)];
        assert_eq!(
            service_rule(&two),
            "flush chain ip upcase service\n\
             add rule ip upcase service dnat to numgen random mod 2 map { 0 : 10.77.10.2, 1 : 10.77.12.2 }\n"
        );
        assert_eq!(service_rule(&[]), "flush chain ip upcase service\n");
        assert!(ruleset().contains(
            "ip daddr 10.77.100.100 meta l4proto { tcp, udp } th dport 12000 jump service"
        ));
    }

    #[test]
    fn conntrack_counts_are_read() {
        let out = "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n";
        assert_eq!(entries(out, "deleted"), 3);
        assert_eq!(entries(out, "shown"), 0);
        assert_eq!(entries("garbage", "deleted"), 0);
    }
}
