//! Socket activation: started by systemd (or anything speaking its
//! `sd_listen_fds` protocol: `LISTEN_PID`, `LISTEN_FDS`, optionally
//! `LISTEN_FDNAMES`), the server serves the sockets it is given, from file
//! descriptor 3 on, instead of binding its own. Datagram sockets are
//! served as UDP, listening stream sockets as TCP, any number of each, told
//! apart by `SO_TYPE`. The sockets outlive the process: what arrives while
//! no server runs waits in their queues for the next.
//!
//! `--bind`, `--port` and `--transport` say where to listen, which the
//! socket unit says instead; given with inherited sockets they are refused
//! rather than silently ignored, since an operator who gives both expects
//! one of them to win.
//!
//! `unsafe` here: taking ownership of the descriptors the protocol hands
//! over, and on macOS asking whether a socket listens (socket2 has no
//! call for it there). (The server's other `unsafe` is Windows' console
//! handler, `signals/windows.rs`.)

#[cfg(unix)]
use std::net::SocketAddr;
use std::net::{TcpListener, UdpSocket};
#[cfg(unix)]
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(unix)]
use anyhow::Context;
#[cfg(unix)]
use socket2::{Socket, Type};
#[cfg(unix)]
use tracing::debug;

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
#[cfg(unix)]
const FIRST_FD: RawFd = 3;

/// The sockets a supervisor passed, by transport, in the order passed.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    pub(crate) udp: Vec<UdpSocket>,
    pub(crate) tcp: Vec<TcpListener>,
    /// `LISTEN_FDNAMES`, one per socket, for the log.
    // Filled only where the protocol exists: on Unix.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) names: Vec<String>,
}

impl Inherited {
    /// Every address served, for the log: `udp 127.0.0.1:5 (name)`.
    pub(crate) fn describe(&self) -> String {
        let udp = self.udp.iter().map(|s| ("udp", s.local_addr()));
        let tcp = self.tcp.iter().map(|l| ("tcp", l.local_addr()));
        udp.chain(tcp)
            .map(|(transport, addr)| match addr {
                Ok(addr) => format!("{transport} {addr}"),
                Err(_) => transport.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The sockets passed to this process, if any: `None` without `LISTEN_FDS`,
/// or when `LISTEN_PID` names another process (a parent's variables
/// inherited by mistake). Takes the `LISTEN_*` variables out of the
/// environment where that is safe (see [`unset_variables`]), and marks the
/// descriptors close-on-exec, so that no child inherits them.
#[cfg(unix)]
pub(crate) fn take() -> anyhow::Result<Option<Inherited>> {
    let Some(count) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    let pid = std::env::var("LISTEN_PID").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    unset_variables();
    let ours = pid
        .as_deref()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        debug!("LISTEN_FDS is set for another process (LISTEN_PID={pid:?}): binding as usual");
        return Ok(None);
    }
    let count = count.to_string_lossy();
    let count: RawFd = count
        .trim()
        .parse()
        .ok()
        .filter(|&n| (1..=1024).contains(&n))
        .with_context(|| {
            format!("LISTEN_FDS={count:?} is not a count of sockets from 1 to 1024")
        })?;
    // Taken once: a second take would own the same descriptors twice.
    static TAKEN: AtomicBool = AtomicBool::new(false);
    anyhow::ensure!(
        !TAKEN.swap(true, Ordering::SeqCst),
        "the inherited sockets were already taken"
    );
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut inherited = Inherited::default();
    for fd in FIRST_FD..FIRST_FD + count {
        let name = names.get((fd - FIRST_FD) as usize).map(String::as_str);
        let owned = own(fd)
            .with_context(|| format!("LISTEN_FDS={count} but descriptor {fd} is not open"))?;
        classify(Socket::from(owned), fd, name, &mut inherited)?;
    }
    inherited.names = names;
    Ok(Some(inherited))
}

/// Off Unix there is no such protocol.
#[cfg(not(unix))]
pub(crate) fn take() -> anyhow::Result<Option<Inherited>> {
    Ok(None)
}

/// Sorts one inherited socket into UDP or TCP, or refuses it.
#[cfg(unix)]
fn classify(
    socket: Socket,
    fd: RawFd,
    name: Option<&str>,
    into: &mut Inherited,
) -> anyhow::Result<()> {
    let what = match name {
        Some(name) => format!("inherited socket {fd} ({name})"),
        None => format!("inherited socket {fd}"),
    };
    socket
        .set_cloexec(true)
        .with_context(|| format!("cannot mark {what} close-on-exec"))?;
    let local: Option<SocketAddr> = socket.local_addr().ok().and_then(|addr| addr.as_socket());
    let Some(local) = local else {
        anyhow::bail!("{what} is not an IPv4 or IPv6 socket: upcase serves UDP and TCP only");
    };
    let kind = socket
        .r#type()
        .with_context(|| format!("cannot read the type of {what}"))?;
    if kind == Type::DGRAM {
        debug!("{what}: UDP on {local}");
        into.udp.push(socket.into());
    } else if kind == Type::STREAM {
        let listening =
            listens(&socket).with_context(|| format!("cannot tell whether {what} listens"))?;
        anyhow::ensure!(
            listening,
            "{what} is a TCP socket that does not listen (a unit with Accept=yes? upcase wants Accept=no)"
        );
        debug!("{what}: TCP on {local}");
        into.tcp.push(socket.into());
    } else {
        anyhow::bail!("{what} on {local} is neither a datagram nor a stream socket");
    }
    Ok(())
}

/// Whether a stream socket listens (SO_ACCEPTCONN): socket2 asks where it
/// knows the option (Linux, FreeBSD, ...), and macOS, which has it too, is
/// asked here.
#[cfg(unix)]
fn listens(socket: &Socket) -> std::io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    return socket.is_listener();
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    #[allow(unsafe_code)]
    {
        use std::os::fd::AsRawFd;
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes to `value`, a live
        // c_int whose exact size `len` gives; the socket is borrowed, so
        // open for the call.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        if rc == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(value != 0)
    }
}

/// Takes ownership of descriptor `fd`, if it is open.
#[cfg(unix)]
#[allow(unsafe_code)]
fn own(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags, and is
    // sound for any integer (an unused one gives EBADF, and then we stop).
    // The descriptors from FIRST_FD to FIRST_FD + LISTEN_FDS are handed to
    // this process by the protocol, checked to be ours by LISTEN_PID, and
    // owned by no other code in it: nothing else in the server opens or
    // uses descriptors by number, `take` runs once (TAKEN), and each
    // descriptor is taken once here, so the `OwnedFd` is their only owner.
    unsafe {
        if libc::fcntl(fd, libc::F_GETFD) == -1 {
            return None;
        }
        Some(OwnedFd::from_raw_fd(fd))
    }
}

/// Takes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` out of the
/// environment, as `sd_listen_fds(1)` does, so a child never sees them.
/// Changing the environment is only sound while no other thread can read
/// it, so this is done only when the process has a single thread, as at
/// the start of `upcase-server`; otherwise they stay (harmless: a child's
/// pid is not `LISTEN_PID`, and the descriptors are close-on-exec).
#[cfg(unix)]
fn unset_variables() {
    if thread_count() != Some(1) {
        debug!("not the only thread: the LISTEN_* variables stay in the environment");
        return;
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: this process has one thread (checked just above, and only
        // this thread could start another), so no other thread reads or
        // writes the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(name);
        }
    }
}

/// How many threads this process has, where the system says (Linux).
#[cfg(unix)]
fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(Iterator::count)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_told_apart_by_type_and_unusable_ones_refused() {
        let mut into = Inherited::default();
        let udp = Socket::from(UdpSocket::bind("127.0.0.1:0").expect("udp"));
        classify(udp, 3, Some("dgram"), &mut into).expect("udp");
        let tcp = Socket::from(TcpListener::bind("127.0.0.1:0").expect("tcp"));
        classify(tcp, 4, None, &mut into).expect("tcp");
        assert_eq!((into.udp.len(), into.tcp.len()), (1, 1));
        assert!(
            into.describe().starts_with("udp 127.0.0.1:"),
            "{}",
            into.describe()
        );
        assert!(
            into.describe().contains(", tcp 127.0.0.1:"),
            "{}",
            into.describe()
        );

        let unlistened = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).expect("tcp");
        unlistened
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        let err = classify(unlistened, 5, Some("web"), &mut into).expect_err("not listening");
        assert!(
            err.to_string()
                .starts_with("inherited socket 5 (web) is a TCP socket that does not listen"),
            "{err}"
        );
        let (unix, _other) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        let err =
            classify(Socket::from(OwnedFd::from(unix)), 6, None, &mut into).expect_err("not IP");
        assert!(
            err.to_string().contains("is not an IPv4 or IPv6 socket"),
            "{err}"
        );
    }
}
