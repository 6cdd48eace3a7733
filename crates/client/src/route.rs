//! Which server address to use: the first that answers, in resolver order.
//!
//! Until an address has answered, a sign that nobody is there (connection
//! refused, an unreachable network, or every try timing out) moves on to the
//! next address. Once one has answered, the client stays with it: a failure
//! then is the server's, and ends the session.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Why an address gave no answer.
#[derive(Debug)]
pub enum Miss {
    /// ICMP port unreachable: no socket on that port.
    Refused,
    /// The address cannot be reached from here (no route, no such family).
    Unreachable(std::io::Error),
    /// Every try timed out.
    Silent,
}

/// No reply from any address after every try: exit status 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoReply {
    pub addrs: Vec<SocketAddr>,
    pub tries: u32,
    pub timeout: Duration,
}

impl fmt::Display for NoReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tries = if self.tries == 1 { "try" } else { "tries" };
        let each = if self.addrs.len() > 1 { " each" } else { "" };
        write!(
            f,
            "no reply from {} after {} {tries}{each} (timeout {})",
            list(&self.addrs),
            self.tries,
            humantime::format_duration(self.timeout)
        )
    }
}

impl std::error::Error for NoReply {}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The addresses to try and what became of them.
#[derive(Debug)]
pub struct Route {
    addrs: Vec<SocketAddr>,
    current: usize,
    answered: bool,
    misses: Vec<(SocketAddr, Miss)>,
}

impl Route {
    /// A route over `addrs`, which must not be empty (resolution ensures it).
    pub fn new(addrs: Vec<SocketAddr>) -> Route {
        Route {
            addrs,
            current: 0,
            answered: false,
            misses: Vec::new(),
        }
    }

    /// The address in use.
    pub fn current(&self) -> Option<SocketAddr> {
        self.addrs.get(self.current).copied()
    }

    /// The current address answered: stay with it from now on.
    pub fn answered(&mut self) {
        self.answered = true;
    }

    /// The current address did not answer: the next one to try, or why the
    /// session fails.
    pub fn missed(
        &mut self,
        miss: Miss,
        tries: u32,
        timeout: Duration,
    ) -> Result<SocketAddr, anyhow::Error> {
        let addr = self
            .current()
            .ok_or_else(|| anyhow::anyhow!("no server address to try"))?;
        if self.answered {
            return Err(failure(vec![(addr, miss)], tries, timeout));
        }
        self.misses.push((addr, miss));
        self.current += 1;
        match self.current() {
            Some(next) => Ok(next),
            None => Err(failure(std::mem::take(&mut self.misses), tries, timeout)),
        }
    }
}

/// One error for every address missed: a [`NoReply`] if any address stayed
/// silent (a server may be there, losing datagrams), else why none could be
/// reached.
fn failure(misses: Vec<(SocketAddr, Miss)>, tries: u32, timeout: Duration) -> anyhow::Error {
    let silent: Vec<SocketAddr> = misses
        .iter()
        .filter(|(_, miss)| matches!(miss, Miss::Silent))
        .map(|(addr, _)| *addr)
        .collect();
    if !silent.is_empty() {
        return NoReply {
            addrs: silent,
            tries,
            timeout,
        }
        .into();
    }
    if misses.iter().all(|(_, miss)| matches!(miss, Miss::Refused)) {
        let addrs: Vec<SocketAddr> = misses.iter().map(|(addr, _)| *addr).collect();
        return anyhow::anyhow!("no server at {} (connection refused)", list(&addrs));
    }
    let reasons: Vec<String> = misses
        .iter()
        .map(|(addr, miss)| match miss {
            Miss::Refused => format!("{addr} (connection refused)"),
            Miss::Unreachable(e) => format!("{addr} ({e})"),
            Miss::Silent => format!("{addr} (no reply)"),
        })
        .collect();
    anyhow::anyhow!("cannot reach {}", reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(100);

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn route() -> Route {
        Route::new(vec![
            addr("[::1]:5"),
            addr("127.0.0.1:5"),
            addr("127.0.0.2:5"),
        ])
    }

    #[test]
    fn misses_move_on_in_order() {
        let mut r = route();
        assert_eq!(r.current(), Some(addr("[::1]:5")));
        assert_eq!(
            r.missed(Miss::Refused, 3, T).expect("next"),
            addr("127.0.0.1:5")
        );
        assert_eq!(
            r.missed(Miss::Silent, 3, T).expect("next"),
            addr("127.0.0.2:5")
        );
        assert_eq!(r.current(), Some(addr("127.0.0.2:5")));
    }

    #[test]
    fn an_answer_ends_the_search() {
        let mut r = route();
        r.missed(Miss::Refused, 3, T).expect("next");
        r.answered();
        let err = r.missed(Miss::Refused, 3, T).expect_err("stays");
        assert_eq!(
            err.to_string(),
            "no server at 127.0.0.1:5 (connection refused)"
        );
        let mut r = route();
        r.answered();
        let err = r.missed(Miss::Silent, 3, T).expect_err("stays");
        assert_eq!(
            err.downcast_ref::<NoReply>().expect("typed").to_string(),
            "no reply from [::1]:5 after 3 tries (timeout 100ms)"
        );
    }

    #[test]
    fn all_refused_says_no_server() {
        let mut r = Route::new(vec![addr("127.0.0.1:5")]);
        let err = r.missed(Miss::Refused, 3, T).expect_err("last");
        assert_eq!(
            err.to_string(),
            "no server at 127.0.0.1:5 (connection refused)"
        );
        assert!(err.downcast_ref::<NoReply>().is_none());
    }

    #[test]
    fn any_silent_address_makes_it_no_reply() {
        let mut r = route();
        r.missed(Miss::Silent, 1, T).expect("next");
        r.missed(Miss::Refused, 1, T).expect("next");
        let err = r.missed(Miss::Silent, 1, T).expect_err("last");
        assert_eq!(
            err.to_string(),
            "no reply from [::1]:5, 127.0.0.2:5 after 1 try each (timeout 100ms)"
        );
        assert!(err.downcast_ref::<NoReply>().is_some());
    }

    #[test]
    fn mixed_failures_give_each_reason() {
        let mut r = Route::new(vec![addr("[::1]:5"), addr("127.0.0.1:5")]);
        let unreachable = std::io::Error::from(std::io::ErrorKind::NetworkUnreachable);
        r.missed(Miss::Unreachable(unreachable), 3, T)
            .expect("next");
        let err = r.missed(Miss::Refused, 3, T).expect_err("last");
        assert_eq!(
            err.to_string(),
            "cannot reach [::1]:5 (network unreachable), 127.0.0.1:5 (connection refused)"
        );
    }
}
