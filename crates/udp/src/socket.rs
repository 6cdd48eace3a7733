//! The sockets this crate works on: anything that lends its system handle,
//! a file descriptor on Unix (`AsFd`), a `SOCKET` on Windows (`AsSocket`):
//! `std::net::UdpSocket`, `std::net::TcpStream`, `socket2::Socket`, ...
//!
//! One trait for both, so that callers write the same code everywhere.

use socket2::SockRef;

/// A socket whose system handle this crate may borrow: on Unix any
/// `AsFd`, on Windows any `AsSocket` (implemented for all of them).
#[cfg(unix)]
pub trait OsSocket: std::os::fd::AsFd {}

#[cfg(unix)]
impl<T: std::os::fd::AsFd + ?Sized> OsSocket for T {}

/// A socket whose system handle this crate may borrow: on Unix any
/// `AsFd`, on Windows any `AsSocket` (implemented for all of them).
#[cfg(windows)]
pub trait OsSocket: std::os::windows::io::AsSocket {}

#[cfg(windows)]
impl<T: std::os::windows::io::AsSocket + ?Sized> OsSocket for T {}

/// The raw handle the system calls take.
#[cfg(unix)]
pub(crate) type RawSocket = std::os::fd::RawFd;

/// The raw handle the system calls take.
#[cfg(windows)]
pub(crate) type RawSocket = windows_sys::Win32::Networking::WinSock::SOCKET;

/// `socket`'s raw handle, valid for as long as `socket` is borrowed.
#[cfg(unix)]
pub(crate) fn raw(socket: &(impl OsSocket + ?Sized)) -> RawSocket {
    use std::os::fd::AsRawFd;
    socket.as_fd().as_raw_fd()
}

/// `socket`'s raw handle, valid for as long as `socket` is borrowed.
#[cfg(windows)]
pub(crate) fn raw(socket: &(impl OsSocket + ?Sized)) -> RawSocket {
    use std::os::windows::io::AsRawSocket;
    // A SOCKET is pointer-sized; std keeps it as a u64 on every Windows.
    socket.as_socket().as_raw_socket() as RawSocket
}

/// socket2's view of `socket`, for what socket2 already does well.
pub(crate) fn sock_ref(socket: &impl OsSocket) -> SockRef<'_> {
    SockRef::from(socket)
}
