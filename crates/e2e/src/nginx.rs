//! nginx as the balancer: Debian's nginx with its `stream` module
//! (`libnginx-mod-stream`), from a config the kit writes, started as a
//! plain process in the balancer host (never the system service), its pid
//! file and logs in a directory of its own.
//!
//! Passive health is all it has: a backend that fails `max_fails` sessions
//! (its port refuses, or it stays silent past `proxy_timeout`) gets no new
//! ones for `fail_timeout`. With `proxy_responses 1` a UDP session ends at
//! its one reply; `proxy_timeout` must be shorter than a client's retry
//! timeout, else a client's retry lands in the session still open to the
//! dead backend (each datagram restarts that timer) and is lost with it.
//! `proxy_half_close on` lets a TCP client end its sending side and still
//! get its reply (without it nginx closes both ways at once).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::network::{BACKENDS, Network, PORT, VIP, backend_addr};
use crate::process::Process;
use crate::{PATIENCE, find_tool};

/// Where Debian's `libnginx-mod-stream` puts the module.
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// nginx's passive health and UDP session settings.
#[derive(Clone, Copy, Debug)]
pub struct NginxSettings {
    /// A UDP session without its reply for this long ends, and counts as a
    /// failure of its backend.
    pub proxy_timeout: Duration,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// `proxy_protocol on` for both services: each session starts with a
    /// PROXY v1 line naming the client (the backends must accept it).
    pub proxy_protocol: bool,
}

/// nginx running in the balancer host, stopped when dropped.
pub struct NginxBalancer {
    process: Process,
    dir: PathBuf,
}

/// The configuration for `backends`, listening on `vip`, files in `dir`.
pub fn config(
    settings: NginxSettings,
    vip: SocketAddr,
    backends: &[SocketAddr],
    dir: &Path,
) -> String {
    let servers: String = backends
        .iter()
        .map(|addr| {
            format!(
                "        server {addr} max_fails={} fail_timeout={}s;\n",
                settings.max_fails,
                // nginx reads it in whole seconds ("ms" is refused there).
                settings.fail_timeout.as_secs().max(1)
            )
        })
        .collect();
    let proxy_protocol = if settings.proxy_protocol {
        "\n        proxy_protocol on;"
    } else {
        ""
    };
    format!(
        "load_module {STREAM_MODULE};
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{
    worker_connections 1024;
}}
stream {{
    upstream upcase {{
        # The workers share the health state.
        zone upcase 64k;
{servers}    }}
    server {{
        listen {vip} udp reuseport;
        proxy_pass upcase;
        proxy_responses 1;
        proxy_timeout {timeout}ms;{proxy_protocol}
    }}
    server {{
        listen {vip} reuseport;
        proxy_pass upcase;
        proxy_connect_timeout 1s;
        proxy_timeout 30s;
        proxy_half_close on;{proxy_protocol}
    }}
}}
",
        dir = dir.display(),
        timeout = settings.proxy_timeout.as_millis(),
    )
}

impl NginxBalancer {
    /// Writes the config for the network's backends and starts nginx in the
    /// balancer host; returns once its worker runs (its sockets are bound
    /// before).
    pub fn start(network: &Network, settings: NginxSettings) -> anyhow::Result<NginxBalancer> {
        find_tool("nginx", "nginx")?;
        anyhow::ensure!(
            Path::new(STREAM_MODULE).exists(),
            "{STREAM_MODULE} is needed for this test: install the Debian package libnginx-mod-stream (apt-get install libnginx-mod-stream)"
        );
        let dir = std::env::temp_dir().join(format!("{}-nginx", network.balancer.name()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let started = Self::start_in(network, settings, &dir);
        if started.is_err() {
            // Nothing runs there: the directory goes with the failure.
            let _ = std::fs::remove_dir_all(&dir);
        }
        started.map(|process| NginxBalancer { process, dir })
    }

    fn start_in(network: &Network, settings: NginxSettings, dir: &Path) -> anyhow::Result<Process> {
        let backends: Vec<SocketAddr> = (0..BACKENDS).map(backend_addr).collect();
        let conf = dir.join("nginx.conf");
        let vip = SocketAddr::from((VIP, PORT));
        std::fs::write(&conf, config(settings, vip, &backends, dir))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let mut command = network.balancer.command("nginx");
        // -e: the error log before the config is read, not /var/log's.
        command
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c"])
            .arg(&conf);
        let mut process = Process::spawn(&mut command).label("nginx").start()?;
        process.wait_for_stderr_line(PATIENCE, "start worker process", 1)?;
        Ok(process)
    }

    /// What nginx has logged so far (its passive health at work).
    pub fn log(&self) -> String {
        self.process.stderr()
    }
}

impl Drop for NginxBalancer {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown, workers included; the process
        // itself is killed by its own drop if it lingers.
        let _ = self.process.signal(crate::signal::Signal::SIGTERM);
        let _ = self.process.wait_within(Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: NginxSettings = NginxSettings {
        proxy_timeout: Duration::from_millis(200),
        max_fails: 2,
        fail_timeout: Duration::from_millis(10_500),
        proxy_protocol: false,
    };

    #[test]
    fn the_config_has_both_services_and_passive_health() {
        let vip = SocketAddr::from((VIP, PORT));
        let conf = config(SETTINGS, vip, &[backend_addr(0)], Path::new("/d"));
        for line in [
            "server 10.77.10.2:12000 max_fails=2 fail_timeout=10s;",
            "listen 10.77.100.100:12000 udp reuseport;",
            "proxy_responses 1;",
            "proxy_timeout 200ms;",
            "listen 10.77.100.100:12000 reuseport;",
            "pid /d/nginx.pid;",
        ] {
            assert!(conf.contains(line), "{line:?} not in\n{conf}");
        }
        assert!(!conf.contains("proxy_protocol"), "{conf}");
        let proxied = NginxSettings {
            proxy_protocol: true,
            ..SETTINGS
        };
        let conf = config(proxied, vip, &[backend_addr(0)], Path::new("/d"));
        assert_eq!(conf.matches("proxy_protocol on;").count(), 2, "{conf}");
    }
}
