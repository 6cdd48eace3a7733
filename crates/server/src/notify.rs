//! Telling a supervisor how the server is doing, by systemd's `sd_notify`
//! protocol: with `NOTIFY_SOCKET` set (a unit with `Type=notify`), one
//! datagram per state change to that Unix socket: `READY=1` once every
//! socket is bound (after the ready line), `STOPPING=1` when a stop begins,
//! and `WATCHDOG=1` every half `WATCHDOG_USEC` when the unit asks for a
//! watchdog (`WatchdogSec=`), unless `WATCHDOG_PID` names another process.
//!
//! A notification that cannot be sent is logged and the server goes on:
//! serving matters more than being heard. The protocol is a few lines of
//! std (a `UnixDatagram`); an abstract socket (`@name`) is Linux's.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tracing::{debug, warn};

/// Where notifications go; does nothing when the server was not started
/// with `NOTIFY_SOCKET`. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Notifier {
    link: Option<Arc<Link>>,
}

#[derive(Debug)]
struct Link {
    #[cfg(unix)]
    socket: std::os::unix::net::UnixDatagram,
    #[cfg(unix)]
    to: std::os::unix::net::SocketAddr,
    /// `NOTIFY_SOCKET` as given, for messages.
    named: String,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for; one that does nothing, with a
    /// warning, when the variable names no usable socket.
    pub(crate) fn from_env() -> Notifier {
        let Some(named) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let named = named.to_string_lossy().into_owned();
        match Link::open(&named) {
            Ok(link) => Notifier {
                link: Some(Arc::new(link)),
            },
            Err(err) => {
                warn!("NOTIFY_SOCKET={named}: cannot notify it: {err}");
                Notifier::default()
            }
        }
    }

    /// Sends `state` (`READY=1`, say; several lines allowed).
    pub(crate) fn notify(&self, state: &str) {
        let Some(link) = &self.link else { return };
        match link.send(state.as_bytes()) {
            Ok(()) => debug!("told {}: {}", link.named, state.replace('\n', " ")),
            Err(err) => warn!("cannot notify {}: {err}", link.named),
        }
    }

    /// Starts sending `WATCHDOG=1` every half of `WATCHDOG_USEC`, when the
    /// supervisor asks for it, on a thread of its own for as long as the
    /// process runs.
    pub(crate) fn start_watchdog(&self) -> anyhow::Result<()> {
        if self.link.is_none() {
            return Ok(());
        }
        let asked = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let Some(every) = asked else {
            return Ok(());
        };
        let notifier = self.clone();
        thread::Builder::new()
            .name("watchdog".to_string())
            .spawn(move || {
                loop {
                    notifier.notify("WATCHDOG=1");
                    thread::sleep(every);
                }
            })
            .map_err(|err| anyhow::Error::new(err).context("cannot start the watchdog thread"))?;
        debug!(
            "watchdog: WATCHDOG=1 every {}",
            humantime::format_duration(every)
        );
        Ok(())
    }
}

/// How often to beat: half the `WATCHDOG_USEC` asked for (as systemd
/// advises), when it is a positive number and `WATCHDOG_PID`, if set, is
/// `pid`.
fn watchdog_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&us| us > 0)?;
    if watchdog_pid.is_some_and(|named| named.trim().parse::<u32>().ok() != Some(pid)) {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(unix)]
impl Link {
    fn open(named: &str) -> std::io::Result<Link> {
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let to = match named.strip_prefix('@') {
            Some(abstract_name) => abstract_address(abstract_name.as_bytes())?,
            None => SocketAddr::from_pathname(named)?,
        };
        Ok(Link {
            socket: UnixDatagram::unbound()?,
            to,
            named: named.to_string(),
        })
    }

    fn send(&self, message: &[u8]) -> std::io::Result<()> {
        self.socket.send_to_addr(message, &self.to).map(drop)
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn abstract_address(_: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets are Linux's",
    ))
}

#[cfg(not(unix))]
impl Link {
    fn open(_: &str) -> std::io::Result<Link> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "sd_notify needs Unix sockets",
        ))
    }

    fn send(&self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_beats_at_half_the_interval_for_its_own_pid_only() {
        let half = Some(Duration::from_millis(500));
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_path_socket_receives_each_state() {
        let dir = std::env::temp_dir().join(format!("upcase-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier {
            link: Some(Arc::new(
                Link::open(path.to_str().expect("utf-8")).expect("open"),
            )),
        };
        notifier.notify("READY=1\nSTATUS=serving");
        let mut buf = [0; 64];
        let n = listener.recv(&mut buf).expect("received");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_is_reached_by_its_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("upcase-notify-test-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let listener = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind");
        let link = Link::open(&format!("@{name}")).expect("open");
        link.send(b"STOPPING=1").expect("send");
        let mut buf = [0; 16];
        let n = listener.recv(&mut buf).expect("received");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let none = Notifier::default();
        none.notify("READY=1");
        none.start_watchdog().expect("no watchdog without a socket");
    }
}
