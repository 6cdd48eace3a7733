//! Whether a UDP or TCP server answers: a printed line says a process
//! started, only an answer says it serves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use upcase_proto::uppercase;

use crate::process::Process;

impl Process {
    /// Sends `question` to `addr` until the answer comes back, its
    /// uppercase; fails if the answer is anything else, if this process
    /// (the server) exits first, or after `limit`.
    pub fn wait_answering(
        &mut self,
        addr: SocketAddr,
        question: &[u8],
        limit: Duration,
    ) -> anyhow::Result<()> {
        let local = if addr.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let socket = UdpSocket::bind(local).context("cannot bind the probe socket")?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .context("cannot set the probe's timeout")?;
        let expected = uppercase(question);
        let mut buf = vec![0u8; expected.len() + 1];
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited ({status}) before answering on {addr}; stderr: {}",
                    self.label(),
                    self.stderr_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer a probe datagram on {addr} within {limit:?}; stderr: {}",
                    self.label(),
                    self.stderr_tail()
                );
            }
            // Errors (a refused port before the bind) just mean: not yet.
            let _ = socket.send_to(question, addr);
            let answer_by = Instant::now() + Duration::from_millis(100);
            while Instant::now() < answer_by {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == addr => {
                        if buf[..n] == expected {
                            return Ok(());
                        }
                        bail!(
                            "{} answered the probe wrongly: {:?}",
                            self.label(),
                            String::from_utf8_lossy(&buf[..n])
                        );
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
}

impl Process {
    /// Sends `line` (ending in a newline) on a TCP connection to `addr` and
    /// waits for its uppercase; fails if the answer is anything else, if
    /// this process (the server) has exited, or after `limit`.
    pub fn wait_answering_tcp(
        &mut self,
        addr: SocketAddr,
        line: &[u8],
        limit: Duration,
    ) -> anyhow::Result<()> {
        if let Some(status) = self.exited() {
            bail!(
                "{} exited ({status}) before answering on TCP {addr}; stderr: {}",
                self.label(),
                self.stderr_tail()
            );
        }
        let mut stream = TcpStream::connect_timeout(&addr, limit)
            .with_context(|| format!("cannot connect to {} on {addr}", self.label()))?;
        stream
            .set_read_timeout(Some(limit))
            .and_then(|()| stream.set_write_timeout(Some(limit)))
            .context("cannot set the probe's timeouts")?;
        stream
            .write_all(line)
            .with_context(|| format!("cannot send a probe line to {addr}"))?;
        let expected = uppercase(line);
        let mut got = vec![0u8; expected.len()];
        stream
            .read_exact(&mut got)
            .with_context(|| format!("{} did not answer a probe line on {addr}", self.label()))?;
        if got != expected {
            bail!(
                "{} answered the probe line wrongly: {:?}",
                self.label(),
                String::from_utf8_lossy(&got)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_server_gone_fails_clearly() {
        let mut gone = Process::spawn(&mut Command::new("true"))
            .label("gone")
            .start()
            .unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let err = gone
            .wait_answering(addr, b"anyone?", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("gone exited"), "{err}");
        let err = gone
            .wait_answering_tcp(addr, b"anyone?\n", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("gone exited"), "{err}");
    }

    #[test]
    fn a_tcp_echo_is_a_wrong_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = [0u8; 6];
            conn.read_exact(&mut line).unwrap();
            conn.write_all(&line).unwrap();
        });
        let mut server = Process::spawn(Command::new("sleep").arg("30"))
            .label("echo")
            .start()
            .unwrap();
        let err = server
            .wait_answering_tcp(addr, b"hello\n", Duration::from_secs(20))
            .unwrap_err();
        assert!(
            err.to_string().contains("answered the probe line wrongly"),
            "{err}"
        );
        echo.join().unwrap();
    }
}
