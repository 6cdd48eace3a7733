//! The bound sockets and the threads that serve them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use anyhow::Context;

use crate::config::Config;
use crate::counters::Counters;
use crate::socket;
use crate::worker::Worker;

/// A server whose sockets are bound and whose workers hold their buffers,
/// not yet serving.
pub struct Server {
    workers: Vec<Worker>,
    local_addr: SocketAddr,
    policy: std::sync::Arc<crate::policy::Policy>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds one socket per thread and builds each thread's worker, buffers
    /// and all, so that once this returns (and the ready line is printed)
    /// the server's memory is claimed; an error names the address and the
    /// cause.
    pub fn bind(config: &Config) -> anyhow::Result<Server> {
        anyhow::ensure!(config.threads >= 1, "the server needs at least one thread");
        let sockets = socket::bind_all(config.bind, config.port, config.threads)?;
        crate::udp_tuning::tune(&sockets, &config.udp)?;
        let local_addr = sockets[0]
            .local_addr()
            .context("cannot read the bound address")?;
        let policy = std::sync::Arc::new(crate::policy::Policy::new(config.policy));
        let workers = sockets
            .into_iter()
            .map(|socket| Worker::new(socket, std::sync::Arc::clone(&policy), config.udp.busy_poll))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Server {
            workers,
            local_addr,
            policy,
        })
    }

    /// The address every socket is bound to (the port the system chose, for
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `stop` is set, then returns the counts of all threads
    /// added up. A worker that fails sets `stop` too, so the others end and
    /// its error is returned.
    pub fn serve(self, stop: &AtomicBool) -> anyhow::Result<Counters> {
        let Server {
            workers, policy, ..
        } = self;
        let served = thread::scope(|scope| {
            let mut handles = Vec::with_capacity(workers.len());
            let mut failure = None;
            for (index, worker) in workers.into_iter().enumerate() {
                let spawned = thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn_scoped(scope, move || {
                        let result = worker.run(stop);
                        if result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        result
                    });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(err) => {
                        stop.store(true, Ordering::Relaxed);
                        failure =
                            Some(anyhow::Error::new(err).context("cannot start a worker thread"));
                        break;
                    }
                }
            }
            let mut total = Counters::default();
            for handle in handles {
                match handle.join() {
                    Ok(Ok(counters)) => total += counters,
                    Ok(Err(err)) => {
                        failure.get_or_insert(err);
                    }
                    Err(_) => {
                        failure.get_or_insert(anyhow::anyhow!("a worker thread panicked"));
                    }
                }
            }
            failure.map_or(Ok(total), Err)
        });
        if let Some(table) = policy.table_summary() {
            tracing::info!("{table}");
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Bind;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    #[test]
    fn threads_serve_one_port_and_their_counts_add_up() {
        let config = Config {
            bind: Bind::Addr(Ipv4Addr::LOCALHOST.into()),
            port: 0,
            threads: 2,
            ..Config::default()
        };
        let server = Server::bind(&config).expect("bind");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let stop = AtomicBool::new(false);
        let clients = 8;
        let total = thread::scope(|s| {
            let serving = s.spawn(|| server.serve(&stop));
            for i in 0..clients {
                let client = UdpSocket::bind("127.0.0.1:0").expect("client");
                client
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let request = format!("client {i}");
                client.send_to(request.as_bytes(), addr).expect("send");
                let mut buf = [0; 64];
                let n = client.recv(&mut buf).expect("reply");
                assert_eq!(&buf[..n], request.to_uppercase().as_bytes());
            }
            stop.store(true, Ordering::Relaxed);
            serving.join().expect("no panic")
        })
        .expect("clean stop");
        assert_eq!(total.received, clients);
        assert_eq!(total.replied, clients);
    }

    #[test]
    fn zero_threads_is_an_error_not_a_panic() {
        let config = Config {
            bind: Bind::Addr(Ipv4Addr::LOCALHOST.into()),
            port: 0,
            threads: 0,
            ..Config::default()
        };
        assert!(Server::bind(&config).is_err());
    }
}
