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
        proxy_timeout {timeout}ms;
    }}
    server {{
        listen {vip} reuseport;
        proxy_pass upcase;
        proxy_connect_timeout 1s;
        proxy_timeout 30s;
        proxy_half_close on;
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
        let backends: Vec<SocketAddr> = (0..BACKENDS).map(backend_addr).collect();
        let conf = dir.join("nginx.conf");
        let vip = SocketAddr::from((VIP, PORT));
        std::fs::write(&conf, config(settings, vip, &backends, &dir))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let mut command = network.balancer.command("nginx");
        // -e: the error log before the config is read, not /var/log's.
        command
            .arg("-p")
            .arg(&dir)
            .args(["-e", "stderr", "-c"])
            .arg(&conf);
        let mut process = Process::spawn(&mut command).label("nginx").start()?;
        process.wait_for_stderr_line(PATIENCE, "start worker process", 1)?;
        Ok(NginxBalancer { process, dir })
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
        let _ = self.process.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.process.wait_within(Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
