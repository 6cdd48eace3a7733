//! What an error on a UDP socket means, decided the same way on every
//! system.
//!
//! `io::Error::raw_os_error` is an `errno` on Unix but a WinSock code on
//! Windows (`WSAECONNRESET` is 10054 there, while `libc::ECONNRESET` is the
//! C runtime's 108), so matching it against libc's constants compiles on
//! Windows and is wrong there. Each system gets its own table of codes here,
//! written as plain numbers for Windows so that its table is tested on every
//! system, and the classification goes by `io::ErrorKind` first, which std
//! decodes per system.

use std::io;

/// What a failed receive means for the loop that called it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvErrorClass {
    /// The receive timeout, or a signal: nothing went wrong, look at the
    /// stop flag and receive again.
    Idle,
    /// Something passing or caused by one peer (an ICMP error reported on
    /// the socket, such as Windows' `WSAECONNRESET` after a reply to a
    /// closed port; a moment without buffers): count it and carry on.
    Transient,
    /// The socket itself is unusable: receiving again would spin.
    Fatal,
}

/// Classifies an error from [`crate::RecvBatch::recv`] or `try_recv` (or
/// any receive on a UDP socket) by this system's rules.
pub fn classify_recv_error(err: &io::Error) -> RecvErrorClass {
    classify(err, &THIS_SYSTEM)
}

/// Whether an error on a connected UDP socket says that no program has the
/// peer's port (an ICMP port unreachable came back): `ECONNREFUSED` on Unix,
/// `WSAECONNRESET` on Windows (which Unix never reports for UDP). A
/// client's "no server there", not a failure of its own.
pub fn is_port_unreachable(err: &io::Error) -> bool {
    port_unreachable(err, cfg!(windows))
}

fn port_unreachable(err: &io::Error, windows: bool) -> bool {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => true,
        io::ErrorKind::ConnectionReset => windows,
        _ => false,
    }
}

/// Whether a send error says the socket itself is unusable (not a socket,
/// closed, a bad pointer), as opposed to one message or the network failing
/// (refused, no buffers, too long, wrong family, ...).
pub(crate) fn is_broken_socket(err: &io::Error) -> bool {
    err.raw_os_error()
        .is_some_and(|code| THIS_SYSTEM.broken.contains(&code))
}

/// One system's error codes, by what they mean.
struct Codes {
    /// A timeout or an interruption.
    idle: &'static [i32],
    /// One peer's trouble or a passing shortage.
    transient: &'static [i32],
    /// The socket (or the socket library) is unusable.
    broken: &'static [i32],
}

fn classify(err: &io::Error, codes: &Codes) -> RecvErrorClass {
    use io::ErrorKind as K;
    let code = err.raw_os_error();
    let has = |table: &[i32]| code.is_some_and(|c| table.contains(&c));
    match err.kind() {
        K::WouldBlock | K::TimedOut | K::Interrupted => RecvErrorClass::Idle,
        _ if has(codes.idle) => RecvErrorClass::Idle,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::OutOfMemory => RecvErrorClass::Transient,
        _ if has(codes.transient) => RecvErrorClass::Transient,
        _ => RecvErrorClass::Fatal,
    }
}

#[cfg(unix)]
const THIS_SYSTEM: Codes = UNIX;

#[cfg(windows)]
const THIS_SYSTEM: Codes = WINDOWS;

/// This Unix's `errno` values (libc knows each system's numbers).
#[cfg(unix)]
const UNIX: Codes = Codes {
    idle: &[
        libc::EAGAIN,
        libc::EWOULDBLOCK,
        libc::ETIMEDOUT,
        libc::EINTR,
    ],
    transient: &[
        libc::ECONNREFUSED,
        libc::ECONNRESET,
        libc::EHOSTUNREACH,
        libc::EHOSTDOWN,
        libc::ENETUNREACH,
        libc::ENETDOWN,
        libc::ENOBUFS,
        libc::ENOMEM,
        libc::EMSGSIZE,
        libc::EPROTO,
    ],
    broken: &[libc::EBADF, libc::ENOTSOCK, libc::EFAULT],
};

/// WinSock's codes, as `raw_os_error` gives them on Windows (winerror.h).
mod winsock {
    pub(super) const WSA_NOT_ENOUGH_MEMORY: i32 = 8;
    pub(super) const WSAEINTR: i32 = 10004;
    pub(super) const WSAEBADF: i32 = 10009;
    pub(super) const WSAEFAULT: i32 = 10014;
    pub(super) const WSAEWOULDBLOCK: i32 = 10035;
    pub(super) const WSAENOTSOCK: i32 = 10038;
    pub(super) const WSAEMSGSIZE: i32 = 10040;
    pub(super) const WSAENETDOWN: i32 = 10050;
    pub(super) const WSAENETUNREACH: i32 = 10051;
    pub(super) const WSAENETRESET: i32 = 10052;
    pub(super) const WSAECONNRESET: i32 = 10054;
    pub(super) const WSAENOBUFS: i32 = 10055;
    pub(super) const WSAETIMEDOUT: i32 = 10060;
    pub(super) const WSAECONNREFUSED: i32 = 10061;
    pub(super) const WSAEHOSTDOWN: i32 = 10064;
    pub(super) const WSAEHOSTUNREACH: i32 = 10065;
    pub(super) const WSANOTINITIALISED: i32 = 10093;
}

// The numbers above are windows-sys's, checked where it exists.
#[cfg(windows)]
const _: () = {
    use windows_sys::Win32::Networking::WinSock as ws;
    assert!(
        winsock::WSA_NOT_ENOUGH_MEMORY == ws::WSA_NOT_ENOUGH_MEMORY
            && winsock::WSAEINTR == ws::WSAEINTR
            && winsock::WSAEBADF == ws::WSAEBADF
            && winsock::WSAEFAULT == ws::WSAEFAULT
            && winsock::WSAEWOULDBLOCK == ws::WSAEWOULDBLOCK
            && winsock::WSAENOTSOCK == ws::WSAENOTSOCK
            && winsock::WSAEMSGSIZE == ws::WSAEMSGSIZE
            && winsock::WSAENETDOWN == ws::WSAENETDOWN
            && winsock::WSAENETUNREACH == ws::WSAENETUNREACH
            && winsock::WSAENETRESET == ws::WSAENETRESET
            && winsock::WSAECONNRESET == ws::WSAECONNRESET
            && winsock::WSAENOBUFS == ws::WSAENOBUFS
            && winsock::WSAETIMEDOUT == ws::WSAETIMEDOUT
            && winsock::WSAECONNREFUSED == ws::WSAECONNREFUSED
            && winsock::WSAEHOSTDOWN == ws::WSAEHOSTDOWN
            && winsock::WSAEHOSTUNREACH == ws::WSAEHOSTUNREACH
            && winsock::WSANOTINITIALISED == ws::WSANOTINITIALISED
    );
};

/// Windows' WinSock codes. `WSAECONNRESET` on a UDP socket is the ICMP port
/// unreachable a reply to a closed port brought back, and `WSAENETRESET`
/// an ICMP time exceeded (unless `opts::ignore_port_unreachable` turned
/// both off): one peer's trouble, never the socket's.
#[cfg_attr(not(windows), allow(dead_code))]
const WINDOWS: Codes = {
    use winsock::*;
    Codes {
        idle: &[WSAEWOULDBLOCK, WSAETIMEDOUT, WSAEINTR],
        transient: &[
            WSAECONNRESET,
            WSAECONNREFUSED,
            WSAENETRESET,
            WSAEHOSTUNREACH,
            WSAEHOSTDOWN,
            WSAENETUNREACH,
            WSAENETDOWN,
            WSAENOBUFS,
            WSAEMSGSIZE,
            WSA_NOT_ENOUGH_MEMORY,
        ],
        broken: &[WSAEBADF, WSAENOTSOCK, WSAEFAULT, WSANOTINITIALISED],
    }
};

#[cfg(test)]
mod tests {
    use super::*;
    use RecvErrorClass::{Fatal, Idle, Transient};

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    /// Windows' table, read from its raw codes alone: on any other system
    /// std does not know these numbers, so no `ErrorKind` helps.
    #[test]
    fn winsock_codes_are_classified_by_windows_rules() {
        use winsock::*;
        let expected = [
            (WSAEWOULDBLOCK, Idle),
            (WSAETIMEDOUT, Idle),
            (WSAEINTR, Idle),
            (WSAECONNRESET, Transient),
            (WSAECONNREFUSED, Transient),
            (WSAENETRESET, Transient),
            (WSAEHOSTUNREACH, Transient),
            (WSAEHOSTDOWN, Transient),
            (WSAENETUNREACH, Transient),
            (WSAENETDOWN, Transient),
            (WSAENOBUFS, Transient),
            (WSAEMSGSIZE, Transient),
            (WSA_NOT_ENOUGH_MEMORY, Transient),
            (WSAENOTSOCK, Fatal),
            (WSAEBADF, Fatal),
            (WSAEFAULT, Fatal),
            (WSANOTINITIALISED, Fatal),
            (10022, Fatal), // WSAEINVAL: not bound
        ];
        for (code, class) in expected {
            assert_eq!(classify(&os(code), &WINDOWS), class, "WinSock code {code}");
        }
        // libc's ECONNRESET is not what Windows reports: no Windows rule
        // may take a C runtime errno for a WinSock code.
        assert!(!WINDOWS.transient.iter().any(|&c| c < 10_000 && c != 8));
    }

    #[test]
    fn kinds_decide_without_a_code_on_every_system() {
        for codes in [&THIS_SYSTEM, &WINDOWS] {
            let kind = |k: io::ErrorKind| classify(&io::Error::from(k), codes);
            assert_eq!(kind(io::ErrorKind::WouldBlock), Idle);
            assert_eq!(kind(io::ErrorKind::TimedOut), Idle);
            assert_eq!(kind(io::ErrorKind::Interrupted), Idle);
            assert_eq!(kind(io::ErrorKind::ConnectionReset), Transient);
            assert_eq!(kind(io::ErrorKind::ConnectionRefused), Transient);
            assert_eq!(kind(io::ErrorKind::HostUnreachable), Transient);
            assert_eq!(kind(io::ErrorKind::InvalidInput), Fatal);
            assert_eq!(kind(io::ErrorKind::Other), Fatal);
        }
    }

    #[test]
    fn a_closed_port_is_refused_on_unix_and_reset_on_windows() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        for windows in [false, true] {
            assert!(port_unreachable(&refused, windows));
            assert!(!port_unreachable(&io::ErrorKind::TimedOut.into(), windows));
        }
        assert!(!port_unreachable(&reset, false));
        assert!(port_unreachable(&reset, true));
        assert_eq!(is_port_unreachable(&reset), cfg!(windows));
    }

    #[cfg(unix)]
    #[test]
    fn errno_values_are_classified_by_this_systems_rules() {
        let expected = [
            (libc::EAGAIN, Idle),
            (libc::EINTR, Idle),
            (libc::ETIMEDOUT, Idle),
            (libc::ECONNREFUSED, Transient),
            (libc::ECONNRESET, Transient),
            (libc::EHOSTDOWN, Transient),
            (libc::ENOBUFS, Transient),
            (libc::EMSGSIZE, Transient),
            (libc::EPROTO, Transient),
            (libc::EBADF, Fatal),
            (libc::ENOTSOCK, Fatal),
            (libc::EINVAL, Fatal),
        ];
        for (code, class) in expected {
            assert_eq!(classify_recv_error(&os(code)), class, "errno {code}");
        }
        assert!(is_broken_socket(&os(libc::EBADF)));
        assert!(is_broken_socket(&os(libc::ENOTSOCK)));
        assert!(!is_broken_socket(&os(libc::ECONNREFUSED)));
        assert!(!is_broken_socket(&os(libc::EMSGSIZE)));
    }
}
