//! What a child writes on stdout or stderr, read by a thread as it comes
//! (so the child never blocks on a full pipe) and kept for the caller to
//! read or wait on, during the run and after it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

/// What a child wrote on one of its outputs, read by a thread as it comes,
/// and copied to a log file when there is one.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<(Mutex<Captured>, Condvar)>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    /// The child closed it (or it could not be read any more).
    ended: bool,
}

impl Capture {
    pub(crate) fn start(mut from: impl Read + Send + 'static, mut log: Option<File>) -> Capture {
        let capture = Capture::default();
        let filling = capture.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                // The log is a copy for later: a failure to write it must
                // not stop the reading, or the child would block.
                if log
                    .as_mut()
                    .is_some_and(|f| f.write_all(&buf[..n]).is_err())
                {
                    log = None;
                }
                filling.update(|c| c.bytes.extend_from_slice(&buf[..n]));
            }
            filling.update(|c| c.ended = true);
        });
        capture
    }

    /// An output that is closed from the start.
    pub(crate) fn ended() -> Capture {
        let capture = Capture::default();
        capture.update(|c| c.ended = true);
        capture
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // The data stays whole whatever panicked while holding the lock.
        self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Captured)) {
        change(&mut self.lock());
        self.0.1.notify_all();
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.lock().ended
    }

    /// Waits until `check` accepts what was captured, the output ends, or
    /// `deadline` passes; `check`'s answer at the last look.
    pub(crate) fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let mut captured = self.lock();
        loop {
            if let Some(found) = check(&captured.bytes) {
                return Some(found);
            }
            let now = Instant::now();
            if captured.ended || now >= deadline {
                return None;
            }
            captured = self
                .0
                .1
                .wait_timeout(captured, deadline - now)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
    }

    /// Waits until the output ends or `deadline` passes.
    pub(crate) fn wait_ended(&self, deadline: Instant) {
        let _ = self.wait_for(deadline, |_| None::<()>);
    }
}
