//! Waiting for any of several sockets to become readable (or writable):
//! `ppoll` on Linux and FreeBSD (to the nanosecond), `poll` on macOS and
//! `WSAPoll` on Windows (to the millisecond, rounded up so that a short
//! wait never turns into a busy loop).
#![allow(unsafe_code)] // Socket system calls: see ARCHITECTURE.md, "Where unsafe lives".

use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use crate::socket::{OsSocket, raw};

#[cfg(unix)]
use libc::{POLLERR, POLLHUP, POLLIN, POLLOUT, pollfd as PollFd};
#[cfg(windows)]
use windows_sys::Win32::Networking::WinSock::{
    POLLERR, POLLHUP, POLLIN, POLLOUT, WSAPOLLFD as PollFd,
};

/// A poll set over sockets borrowed for `'s`, built once and reused.
pub struct Poller<'s> {
    fds: Vec<PollFd>,
    _sockets: PhantomData<&'s ()>,
}

impl<'s> Poller<'s> {
    /// Watches `sockets` for incoming datagrams (or bytes). Windows'
    /// `WSAPoll` refuses an empty set: give it at least one socket.
    pub fn new<S: OsSocket + ?Sized + 's>(sockets: impl IntoIterator<Item = &'s S>) -> Poller<'s> {
        let fds = sockets
            .into_iter()
            .map(|socket| PollFd {
                fd: raw(socket),
                events: POLLIN,
                revents: 0,
            })
            .collect();
        Poller {
            fds,
            _sockets: PhantomData,
        }
    }

    /// Waits until a socket is readable or `timeout` passes; returns how
    /// many are readable, 0 on timeout or on a signal.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        poll(&mut self.fds, timeout)
    }

    /// Whether socket `i` (in the order given to [`Poller::new`]) was
    /// readable at the last wait.
    pub fn is_readable(&self, i: usize) -> bool {
        self.fds.get(i).is_some_and(|p| p.revents & POLLIN != 0)
    }

    /// Makes the next waits also wake when socket `i` can take more bytes
    /// (`on`), or stop doing so: a stream socket with bytes still to write.
    pub fn watch_writable(&mut self, i: usize, on: bool) {
        if let Some(p) = self.fds.get_mut(i) {
            p.events = if on { POLLIN | POLLOUT } else { POLLIN };
        }
    }

    /// Whether socket `i` was writable at the last wait.
    pub fn is_writable(&self, i: usize) -> bool {
        self.fds.get(i).is_some_and(|p| p.revents & POLLOUT != 0)
    }

    /// Whether socket `i` had an error or was hung up at the last wait:
    /// reported even when not asked for, and only a read or write tells which.
    pub fn is_broken(&self, i: usize) -> bool {
        self.fds
            .get(i)
            .is_some_and(|p| p.revents & (POLLERR | POLLHUP) != 0)
    }
}

/// Whether a datagram (or an error) waits on `socket` now, without waiting:
/// what a non-waiting receive asks first on Windows, which has no
/// `MSG_DONTWAIT`.
#[cfg(windows)]
pub(crate) fn readable_now(socket: &impl OsSocket) -> io::Result<bool> {
    let mut fds = [PollFd {
        fd: raw(socket),
        events: POLLIN,
        revents: 0,
    }];
    poll(&mut fds, Duration::ZERO)?;
    Ok(fds[0].revents & (POLLIN | POLLERR | POLLHUP) != 0)
}

/// `timeout` in whole milliseconds, rounded up, for the calls that take no
/// finer unit (compiled everywhere, so that its test runs everywhere).
#[cfg_attr(any(target_os = "linux", target_os = "freebsd"), allow(dead_code))]
fn millis_rounded_up(timeout: Duration) -> i32 {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    i32::try_from(millis).unwrap_or(i32::MAX)
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: `fds` is a live array of exactly fds.len() pollfd entries whose
    // descriptors are borrowed by the caller (so open); the timespec is a
    // live local; a null signal mask keeps the current one.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &timeout,
            std::ptr::null(),
        )
    };
    unix_result(n)
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "freebsd"))))]
fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    // SAFETY: `fds` is a live array of exactly fds.len() pollfd entries whose
    // descriptors are borrowed by the caller (so open).
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            millis_rounded_up(timeout),
        )
    };
    unix_result(n)
}

/// A poll's return: how many sockets are ready, 0 for a signal.
#[cfg(unix)]
fn unix_result(n: libc::c_int) -> io::Result<usize> {
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n as usize)
}

#[cfg(windows)]
fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    use windows_sys::Win32::Networking::WinSock::{WSAGetLastError, WSAPoll};
    let count = u32::try_from(fds.len()).unwrap_or(u32::MAX);
    // SAFETY: `fds` is a live array of at least `count` WSAPOLLFD entries
    // whose sockets are borrowed by the caller (so open).
    let n = unsafe { WSAPoll(fds.as_mut_ptr(), count, millis_rounded_up(timeout)) };
    if n < 0 {
        // SAFETY: WSAGetLastError has no preconditions.
        return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn writability_is_reported_only_when_watched() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(socket.local_addr().unwrap()).unwrap();
        let mut poller = Poller::new([&socket]);
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

    #[test]
    fn millisecond_timeouts_round_up() {
        assert_eq!(millis_rounded_up(Duration::ZERO), 0);
        assert_eq!(millis_rounded_up(Duration::from_nanos(1)), 1);
        assert_eq!(millis_rounded_up(Duration::from_micros(1500)), 2);
        assert_eq!(millis_rounded_up(Duration::MAX), i32::MAX);
    }
}
