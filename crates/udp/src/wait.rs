//! Waiting for any of several sockets to become readable (or writable).
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// A `ppoll` set over sockets borrowed for `'fd`, built once and reused.
pub struct Poller<'fd> {
    fds: Vec<libc::pollfd>,
    _sockets: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> Poller<'fd> {
    /// Watches `sockets` for incoming datagrams.
    pub fn new(sockets: impl IntoIterator<Item = BorrowedFd<'fd>>) -> Poller<'fd> {
        let fds = sockets
            .into_iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Poller {
            fds,
            _sockets: PhantomData,
        }
    }

    /// Waits until a socket is readable or `timeout` passes (to the
    /// nanosecond, unlike `poll`'s milliseconds); returns how many are
    /// readable, 0 on timeout or on a signal.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        // SAFETY: `fds` is a live array of exactly fds.len() pollfd entries whose
        // descriptors are borrowed for 'fd (so open); the timespec is a live
        // local; a null signal mask keeps the current one.
        let n = unsafe {
            libc::ppoll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                &timeout,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err);
        }
        Ok(n as usize)
    }

    /// Whether socket `i` (in the order given to [`Poller::new`]) was
    /// readable at the last wait.
    pub fn is_readable(&self, i: usize) -> bool {
        self.fds
            .get(i)
            .is_some_and(|p| p.revents & libc::POLLIN != 0)
    }

    /// Makes the next waits also wake when socket `i` can take more bytes
    /// (`on`), or stop doing so: a stream socket with bytes still to write.
    pub fn watch_writable(&mut self, i: usize, on: bool) {
        if let Some(p) = self.fds.get_mut(i) {
            p.events = if on {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            };
        }
    }

    /// Whether socket `i` was writable at the last wait.
    pub fn is_writable(&self, i: usize) -> bool {
        self.fds
            .get(i)
            .is_some_and(|p| p.revents & libc::POLLOUT != 0)
    }

    /// Whether socket `i` had an error or was hung up at the last wait:
    /// reported even when not asked for, and only a read or write tells which.
    pub fn is_broken(&self, i: usize) -> bool {
        self.fds
            .get(i)
            .is_some_and(|p| p.revents & (libc::POLLERR | libc::POLLHUP) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn writability_is_reported_only_when_watched() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(socket.local_addr().unwrap()).unwrap();
        let mut poller = Poller::new([socket.as_fd()]);
        assert_eq!(poller.wait(Duration::ZERO).unwrap(), 0, "nothing to read");
        poller.watch_writable(0, true);
        assert_eq!(poller.wait(Duration::ZERO).unwrap(), 1);
        assert!(poller.is_writable(0) && !poller.is_readable(0));
        assert!(!poller.is_broken(0));
        poller.watch_writable(0, false);
        socket.send(b"x").unwrap();
        assert_eq!(poller.wait(Duration::from_secs(5)).unwrap(), 1);
        assert!(poller.is_readable(0) && !poller.is_writable(0));
        assert!(!poller.is_writable(7), "no such socket");
    }
}
