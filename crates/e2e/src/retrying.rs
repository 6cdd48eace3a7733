//! A paced load of retrying UDP clients, as real clients of a service
//! behave across a restart: each sends one request at a time, waits for its
//! reply, sends it again after a timeout, and counts whether it was
//! answered at the first try, after a retry, or not at all. Bounded: a
//! fixed number of requests, each tried a fixed number of times.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use upcase_proto::uppercase;

/// How the load runs.
#[derive(Clone, Copy, Debug)]
pub struct RetryingLoad {
    /// Client sockets, each on a thread of its own.
    pub clients: usize,
    /// Requests each client sends, one after the other.
    pub requests: usize,
    /// The pause after each answered request.
    pub pace: Duration,
    /// How long a try waits for its reply.
    pub timeout: Duration,
    /// Tries per request, the first one included.
    pub tries: u32,
}

/// What the load saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOutcome {
    pub requests: u64,
    pub answered_first_try: u64,
    pub answered_after_retry: u64,
    pub unanswered: u64,
    /// Datagrams sent, retries included.
    pub datagrams_sent: u64,
}

impl std::ops::AddAssign for LoadOutcome {
    fn add_assign(&mut self, other: LoadOutcome) {
        self.requests += other.requests;
        self.answered_first_try += other.answered_first_try;
        self.answered_after_retry += other.answered_after_retry;
        self.unanswered += other.unanswered;
        self.datagrams_sent += other.datagrams_sent;
    }
}

/// A load under way.
pub struct RunningLoad {
    answered: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<LoadOutcome>>,
}

impl RetryingLoad {
    /// Starts the clients against `server`, each on a socket of its own on
    /// loopback.
    pub fn start(self, server: SocketAddr) -> RunningLoad {
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let sockets = (0..self.clients)
            .map(|_| UdpSocket::bind(local).expect("client socket"))
            .collect();
        self.start_on(server, sockets)
    }

    /// Starts one client on each of `sockets`, made elsewhere (inside a
    /// network namespace, say, where they stay): as many clients as
    /// sockets, whatever `clients` says.
    pub fn start_on(self, server: SocketAddr, sockets: Vec<UdpSocket>) -> RunningLoad {
        let answered = Arc::new(AtomicU64::new(0));
        let threads = sockets
            .into_iter()
            .enumerate()
            .map(|(client, socket)| {
                let answered = Arc::clone(&answered);
                thread::spawn(move || self.run_client(client, socket, server, &answered))
            })
            .collect();
        RunningLoad { answered, threads }
    }

    fn run_client(
        self,
        client: usize,
        socket: UdpSocket,
        server: SocketAddr,
        answered: &AtomicU64,
    ) -> LoadOutcome {
        socket.connect(server).expect("connect");
        let mut outcome = LoadOutcome::default();
        let mut buf = vec![0u8; 2048];
        for request in 0..self.requests {
            let question = format!("client {client} request {request} of the retrying load");
            let expected = uppercase(question.as_bytes());
            outcome.requests += 1;
            let mut answered_on = None;
            'tries: for attempt in 1..=self.tries {
                // A refused send (no server bound, with a socket not held)
                // is a try that gets no answer.
                let _ = socket.send(question.as_bytes());
                outcome.datagrams_sent += 1;
                let deadline = Instant::now() + self.timeout;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    socket.set_read_timeout(Some(left)).expect("timeout");
                    match socket.recv(&mut buf) {
                        // A late reply to an earlier try of an earlier
                        // request is passed over.
                        Ok(n) if buf[..n] == expected[..] => {
                            answered_on = Some(attempt);
                            break 'tries;
                        }
                        Ok(_) => {}
                        Err(err)
                            if matches!(
                                err.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            break;
                        }
                        // A refusal (ICMP port unreachable: no server there
                        // just now) ends nothing: a client waits out its
                        // timeout before it tries again, so that tries
                        // measure time, not how fast refusals come back.
                        Err(_) => {}
                    }
                }
            }
            match answered_on {
                Some(1) => outcome.answered_first_try += 1,
                Some(_) => outcome.answered_after_retry += 1,
                None => outcome.unanswered += 1,
            }
            answered.fetch_add(1, Ordering::Relaxed);
            thread::sleep(self.pace);
        }
        outcome
    }
}

impl RunningLoad {
    /// Requests settled so far (answered or given up), over every client.
    pub fn settled(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits for every client to finish and adds up what they saw.
    pub fn finish(self) -> LoadOutcome {
        let mut total = LoadOutcome::default();
        for thread in self.threads {
            total += thread.join().expect("a load client panicked");
        }
        total
    }
}
