//! A test playing systemd's side of `sd_notify`: a Unix datagram socket
//! whose path goes in the server's `NOTIFY_SOCKET`, and what it received.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The socket, in a directory of its own that goes with it.
pub struct NotifySocket {
    socket: UnixDatagram,
    dir: PathBuf,
    path: PathBuf,
}

impl NotifySocket {
    /// A fresh socket; `tag` keeps parallel tests apart.
    pub fn new(tag: &str) -> NotifySocket {
        let dir = std::env::temp_dir().join(format!("upcase-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("notify directory");
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket { socket, dir, path }
    }

    /// What `NOTIFY_SOCKET` must say.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next notification within `limit`, if one comes.
    pub fn next_within(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = vec![0; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits, within `limit`, for a notification with the line `state`
    /// (`READY=1`), and returns it with the ones received before it.
    pub fn wait_for(&self, state: &str, limit: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.next_within(left) else {
                panic!("no {state} within {limit:?}; received before: {before:?}");
            };
            if message.lines().any(|line| line == state) {
                return (message, before);
            }
            before.push(message);
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
