//! A fake UDP server for client tests: a loopback socket in a thread that
//! answers each datagram as the test says (right, late, twice, wrongly, or
//! not at all) and records what it received.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
