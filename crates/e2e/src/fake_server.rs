//! Fake servers for client tests, each a loopback socket in a thread,
//! stopped when dropped: [`FakeServer`] answers each datagram as the test
//! says (right, late, twice, wrongly, or not at all) and records what it
//! received; [`Flooder`] answers once and then floods; [`FakeTcpServer`]
//! serves one TCP connection as the test says.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use upcase_proto::{RECV_BUFFER_LEN, uppercase};

/// What a fake server does with the n-th datagram it receives (from 0),
/// from the given peer: the datagrams to send back, in order.
pub type Answer = Box<dyn FnMut(usize, &[u8], SocketAddr) -> Vec<Vec<u8>> + Send>;

/// A fake server in a thread, stopped when dropped. Records every datagram
/// it receives, and signals after each reply it sends.
pub struct FakeServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    sent: mpsc::Receiver<()>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    /// A fake server on `127.0.0.1` with a system-chosen port.
    pub fn start(
        answer: impl FnMut(usize, &[u8], SocketAddr) -> Vec<Vec<u8>> + Send + 'static,
    ) -> FakeServer {
        Self::try_start("127.0.0.1:0", Box::new(answer)).expect("bind 127.0.0.1")
    }

    /// A fake server on `bind`, or the error binding it.
    pub fn try_start(bind: &str, mut answer: Answer) -> io::Result<FakeServer> {
        let socket = UdpSocket::bind(bind)?;
        // Wakes up now and then to see whether the test is over.
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let addr = socket.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = mpsc::channel();
        let (sent_tx, sent) = mpsc::channel();
        let log = Arc::clone(&received);
        let thread = thread::spawn(move || {
            let mut buf = vec![0; RECV_BUFFER_LEN];
            while stopped.try_recv() == Err(mpsc::TryRecvError::Empty) {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let n = {
                    let mut log = log.lock().expect("lock");
                    log.push(buf[..len].to_vec());
                    log.len() - 1
                };
                for reply in answer(n, &buf[..len], peer) {
                    socket.send_to(&reply, peer).expect("fake server reply");
                    let _ = sent_tx.send(());
                }
            }
        });
        Ok(FakeServer {
            addr,
            received,
            sent,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The port, as a command-line argument.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Waits until the server has sent one more reply; false if none was
    /// sent within `limit`.
    pub fn wait_sent(&self, limit: Duration) -> bool {
        self.sent.recv_timeout(limit).is_ok()
    }

    /// Everything received, once the server is stopped. The client is done
    /// when tests call this, and loopback delivers a datagram within the
    /// sender's send call, so whatever it sent is here or waiting in the
    /// socket; stopping the thread first reads the rest.
    pub fn received(mut self) -> Vec<Vec<u8>> {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("fake server thread");
        }
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An answer: the uppercase of the request, as the real server sends.
pub fn uppercasing(_: usize, request: &[u8], _: SocketAddr) -> Vec<Vec<u8>> {
    vec![uppercase(request)]
}

/// An answer: nothing, ever.
pub fn silent(_: usize, _: &[u8], _: SocketAddr) -> Vec<Vec<u8>> {
    Vec::new()
}

/// A fake UDP server that answers the first datagram with its uppercase and
/// then sends `flood` to its sender from several threads, as fast as they
/// can, until stopped or until its time limit runs out.
pub struct Flooder {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    ran_out: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What a [`Flooder`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flooded {
    /// Datagrams of the flood sent.
    pub sent: u64,
    /// The flood lasted its whole time limit: whoever it flooded was still
    /// there when it ended.
    pub ran_out: bool,
}

impl Flooder {
    /// A flooder on `127.0.0.1` that floods from `threads` threads for at
    /// most `limit`.
    pub fn start(flood: Vec<u8>, threads: usize, limit: Duration) -> Flooder {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        // Wakes up now and then to see whether the test is over.
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let ran_out = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let shared = (Arc::clone(&stop), Arc::clone(&ran_out), Arc::clone(&sent));
        let thread = thread::spawn(move || {
            let (stop, ran_out, sent) = shared;
            let mut buf = vec![0; RECV_BUFFER_LEN];
            let peer = loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok((len, peer)) = socket.recv_from(&mut buf) {
                    socket
                        .send_to(&uppercase(&buf[..len]), peer)
                        .expect("first reply");
                    break peer;
                }
            };
            let deadline = Instant::now() + limit;
            thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        while !stop.load(Ordering::Relaxed) {
                            if Instant::now() > deadline {
                                ran_out.store(true, Ordering::Relaxed);
                                return;
                            }
                            // The client's buffer being full is its problem.
                            if socket.send_to(&flood, peer).is_ok() {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
        });
        Flooder {
            addr,
            stop,
            ran_out,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops the flood and says what it did.
    pub fn stop(mut self) -> Flooded {
        self.halt();
        Flooded {
            sent: self.sent.load(Ordering::Relaxed),
            ran_out: self.ran_out.load(Ordering::Relaxed),
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A fake TCP server in a thread that serves one connection with the
/// test's function, its reads bounded so a hung client fails the test.
pub struct FakeTcpServer {
    pub addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeTcpServer {
    /// Listens on `127.0.0.1` and serves the first connection with `serve`.
    pub fn start(serve: impl FnOnce(TcpStream) + Send + 'static) -> FakeTcpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let thread = thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                // Bounds the test if the client hangs: it fails, never waits.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                serve(stream);
            }
        });
        FakeTcpServer {
            addr,
            thread: Some(thread),
        }
    }
}

impl FakeTcpServer {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for the connection to be served; a panic in `serve` (a failed
    /// assertion about what the client sent) fails the test here.
    pub fn finish(mut self) {
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for FakeTcpServer {
    fn drop(&mut self) {
        // Ends a wait for a client that never came.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
