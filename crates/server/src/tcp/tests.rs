//! The TCP service on loopback listeners with ephemeral ports, driven by
//! plain blocking std clients.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use upcase_e2e::tcp::{
    Written, closed_by_server, exchange, read_exactly, read_to_end, write_until_stalled,
};
use upcase_e2e::{PATIENCE, wait_until};
use upcase_proto::uppercase;

use super::connection::{self, Connection, READ_BUFFER_LEN, READS_PER_TURN, Step};
use super::event_loop::{OUT_OF_RESOURCES, is_resource_exhaustion};
use super::*;
use crate::binding::listen_tcp;

/// A service in a thread, stopped when dropped.
struct Service {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    live: Arc<TcpLive>,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    /// On one thread: the current-thread runtime (the e2e tests run the
    /// server's default, a multi-thread one per core).
    fn start(limits: TcpLimits) -> Service {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), limits, 1)
    }

    fn start_on(addr: SocketAddr, limits: TcpLimits, threads: usize) -> Service {
        let listener = listen_tcp(addr).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(TcpLive::default());
        let thread = {
            let (stop, live) = (Arc::clone(&stop), Arc::clone(&live));
            thread::spawn(move || serve_tcp(vec![listener], limits, threads, None, &stop, &live))
        };
        Service {
            addr,
            stop,
            live,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        upcase_e2e::tcp::connect(self.addr)
    }

    fn counters(&self) -> TcpCounters {
        self.live.snapshot()
    }

    /// Sets the stop flag and waits for the service to return.
    fn stop(mut self) -> (TcpCounters, Duration) {
        let started = Instant::now();
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("running");
        thread.join().expect("no panic").expect("served");
        (self.live.snapshot(), started.elapsed())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_stream_comes_back_uppercased_piece_by_piece() {
    let service = Service::start(TcpLimits::default());
    let mut stream = service.connect();
    stream.write_all(b"hello world\n").expect("send");
    assert_eq!(read_exactly(&mut stream, 12), b"HELLO WORLD\n");
    let second = "straße ﬁ 안녕 ΐ\n";
    stream.write_all(second.as_bytes()).expect("send");
    let expected = uppercase(second.as_bytes());
    assert_eq!(read_exactly(&mut stream, expected.len()), expected);
    let last = b"no newline \xff\xfe end";
    stream.write_all(last).expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut stream), b"NO NEWLINE \xff\xfe END");
    drop(stream);
    wait_until("the connection is done", || {
        service.counters().bytes_out > 0
    });
    let (counters, _) = service.stop();
    assert_eq!(counters.accepted, 1);
    assert_eq!(counters.bytes_in, (12 + second.len() + last.len()) as u64);
    assert_eq!(
        counters.bytes_out,
        (12 + expected.len() + last.len()) as u64
    );
    assert_eq!(counters.errors, 0);
    assert_eq!(counters.timed_out, 0);
}

#[test]
fn an_empty_stream_gets_an_empty_reply() {
    let service = Service::start(TcpLimits::default());
    let mut stream = service.connect();
    stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut stream), b"");
}

#[test]
fn a_character_split_across_writes_is_uppercased_whole() {
    let service = Service::start(TcpLimits::default());
    let mut stream = service.connect();
    stream.write_all(b"caf\xc3").expect("send");
    assert_eq!(read_exactly(&mut stream, 3), b"CAF");
    // The first half of `é` is held back: nothing more comes until the rest.
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let early = stream.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the held byte came back on its own: {early:?} {byte:?}"
    );
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(b"\xa9!").expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut stream), "É!".as_bytes());
}

#[test]
fn an_unfinished_character_at_the_end_passes_through() {
    let service = Service::start(TcpLimits::default());
    let mut stream = service.connect();
    stream.write_all(b"x\xe2\x82").expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut stream), b"X\xe2\x82");
}

/// Several reads' worth, different for every connection, longer once
/// uppercased (`ΐ`, 2 bytes, becomes 6).
fn stream_of(client: usize) -> Vec<u8> {
    (0..600)
        .flat_map(|line| format!("client {client} line {line}: straße é ΐ\n").into_bytes())
        .collect()
}

#[test]
fn two_hundred_connections_at_once_each_get_their_own_stream() {
    // On one thread and on a work-stealing pool alike.
    for threads in [1, 2] {
        two_hundred_connections_on(threads);
    }
}

fn two_hundred_connections_on(threads: usize) {
    const CLIENTS: usize = 200;
    let service = Service::start_on(
        "127.0.0.1:0".parse().expect("addr"),
        TcpLimits::default(),
        threads,
    );
    let all_connected = Barrier::new(CLIENTS);
    thread::scope(|scope| {
        for i in 0..CLIENTS {
            let (service, all_connected) = (&service, &all_connected);
            scope.spawn(move || {
                let mut stream = service.connect();
                all_connected.wait();
                let sent = stream_of(i);
                let got = exchange(&mut stream, &sent);
                assert!(got == uppercase(&sent), "client {i} got another stream");
            });
        }
    });
    let sent: u64 = (0..CLIENTS).map(|i| stream_of(i).len() as u64).sum();
    let expected: u64 = (0..CLIENTS)
        .map(|i| uppercase(&stream_of(i)).len() as u64)
        .sum();
    assert_ne!(sent, expected, "the streams change length when uppercased");
    wait_until("every connection is done", || {
        let c = service.counters();
        c.accepted == CLIENTS as u64 && c.bytes_in == sent && c.bytes_out == expected
    });
    let (counters, _) = service.stop();
    assert_eq!(counters.refused_over_limit, 0);
    assert_eq!(counters.errors, 0);
}

#[test]
fn a_client_that_never_reads_cannot_make_the_server_buffer() {
    const CAP: usize = 512 << 20;
    let idle_timeout = Duration::from_millis(1500);
    let service = Service::start(TcpLimits {
        idle_timeout,
        ..TcpLimits::default()
    });
    let mut stream = service.connect();
    // Sends until the kernel's buffers are full and the server stops reading.
    let Written {
        bytes: written,
        stalled,
    } = write_until_stalled(&mut stream, Duration::from_millis(300), CAP);
    assert!(
        stalled,
        "the server took {written} bytes without any being read"
    );
    let held = |c: TcpCounters| c.bytes_in - c.bytes_out;
    let at_stall = service.counters();
    assert!(at_stall.bytes_in <= written as u64);
    assert!(
        held(at_stall) <= READ_BUFFER_LEN as u64,
        "server holds {} bytes",
        held(at_stall)
    );
    // Stuck, the connection reads no more, and its stuck write times out.
    wait_until("the stuck connection times out", || {
        service.counters().timed_out == 1
    });
    let (counters, _) = service.stop();
    assert_eq!(counters.bytes_in, at_stall.bytes_in, "read on while stuck");
    assert!(held(counters) <= READ_BUFFER_LEN as u64);
}

#[test]
fn an_idle_connection_is_closed_and_counted() {
    let service = Service::start(TcpLimits {
        idle_timeout: Duration::from_millis(200),
        ..TcpLimits::default()
    });
    let mut stream = service.connect();
    stream.write_all(b"one").expect("send");
    assert_eq!(read_exactly(&mut stream, 3), b"ONE");
    assert!(closed_by_server(&mut stream));
    wait_until("the timeout is counted", || {
        service.counters().timed_out == 1
    });
    assert_eq!(service.counters().errors, 0);
}

#[test]
fn connections_over_the_limit_are_reset_and_counted() {
    let service = Service::start(TcpLimits {
        max_connections: 2,
        ..TcpLimits::default()
    });
    let mut first = service.connect();
    let mut second = service.connect();
    for stream in [&mut first, &mut second] {
        stream.write_all(b"x").expect("send");
        assert_eq!(
            read_exactly(stream, 1),
            b"X",
            "served while under the limit"
        );
    }
    let mut third = service.connect();
    assert!(closed_by_server(&mut third), "a third connection is closed");
    assert_eq!(service.counters().refused_over_limit, 1);
    // The two served connections are unaffected; once one ends, there is room again.
    first.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut first), b"");
    second.write_all(b"y").expect("send");
    assert_eq!(read_exactly(&mut second, 1), b"Y");
    wait_until("the first connection is done", || {
        let mut probe = service.connect();
        probe.write_all(b"z").expect("send");
        let mut byte = [0u8; 1];
        matches!(probe.read(&mut byte), Ok(1)) && byte == *b"Z"
    });
    let (counters, _) = service.stop();
    assert!(counters.refused_over_limit >= 1);
    // first, second, and the probe that got in
    assert!(counters.accepted >= 3);
}

#[test]
fn stop_lets_running_connections_finish_then_closes_the_rest() {
    let grace = Duration::from_millis(600);
    let service = Service::start(TcpLimits {
        grace,
        ..TcpLimits::default()
    });
    let mut finishing = service.connect();
    let mut lingering = service.connect();
    for stream in [&mut finishing, &mut lingering] {
        stream.write_all(b"a").expect("send");
        assert_eq!(read_exactly(stream, 1), b"A");
    }
    let addr = service.addr;
    service.stop.store(true, Ordering::Relaxed);
    // The listener closes: new connections are refused.
    wait_until("the listener is closed", || {
        TcpStream::connect(addr).is_err()
    });
    // A connection still running finishes within the grace period.
    finishing.write_all(b"bye").expect("send");
    finishing.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut finishing), b"BYE");
    // One that stays open is closed when the grace period is over.
    assert!(closed_by_server(&mut lingering));
    let (counters, _) = service.stop();
    // The probes that found the listener still open were accepted too, and
    // ended at once.
    assert!(counters.accepted >= 2);
    assert_eq!(counters.closed_at_stop, 1);
}

#[test]
fn the_stop_flag_is_seen_without_any_traffic() {
    let service = Service::start(TcpLimits::default());
    let (counters, took) = service.stop();
    assert_eq!(counters, TcpCounters::default());
    assert!(took < PATIENCE);
}

#[test]
fn a_dual_stack_listener_takes_ipv4_and_ipv6() {
    let listener = match listen_tcp("[::]:0".parse().expect("addr")) {
        Ok(listener) => listener,
        // A machine without IPv6 cannot have a dual-stack socket.
        Err(_) if std::net::TcpListener::bind("[::1]:0").is_err() => return,
        Err(err) => panic!("{err}"),
    };
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let service = Service::start_on(
        format!("[::]:{port}").parse().expect("addr"),
        TcpLimits::default(),
        1,
    );
    for host in ["127.0.0.1", "[::1]"] {
        let mut stream = TcpStream::connect(format!("{host}:{port}")).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.write_all(b"dual").expect("send");
        stream.shutdown(Shutdown::Write).expect("shutdown");
        assert_eq!(read_to_end(&mut stream), b"DUAL", "over {host}");
    }
    drop(service);
}

#[test]
fn the_summary_fields_name_every_counter() {
    let counters = TcpCounters {
        accepted: 1,
        refused_over_limit: 2,
        timed_out: 3,
        bytes_in: 4,
        bytes_out: 5,
        errors: 6,
        closed_at_stop: 7,
        open: 8,
        ..TcpCounters::default()
    };
    assert_eq!(
        counters.summary_fields(),
        " tcp_accepted=1 tcp_refused=2 tcp_timed_out=3 tcp_bytes_in=4 tcp_bytes_out=5 tcp_errors=6 tcp_closed_at_stop=7"
    );
}

#[test]
fn only_a_shortage_pauses_the_accept_loop() {
    for code in OUT_OF_RESOURCES {
        assert!(
            is_resource_exhaustion(&io::Error::from_raw_os_error(code)),
            "code {code}"
        );
    }
    assert!(is_resource_exhaustion(&io::ErrorKind::OutOfMemory.into()));
    assert!(!is_resource_exhaustion(
        &io::ErrorKind::ConnectionAborted.into()
    ));
}

#[test]
fn a_flooding_connection_leaves_turns_to_a_pinging_one() {
    // One loop, so the two connections share it. The flood only stops once
    // the ping is answered, or at the cap, which a loop that served the
    // flood to its end first would reach.
    const CAP: usize = 1 << 30;
    let service = Service::start(TcpLimits::default());
    let mut flood = service.connect();
    let mut replies = flood.try_clone().expect("clone");
    let mut ping = service.connect();
    let answered = AtomicBool::new(false);
    thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let chunk = vec![b'f'; 64 * 1024];
            let mut sent = 0;
            while !answered.load(Ordering::Relaxed) && sent < CAP {
                flood.write_all(&chunk).expect("flood");
                sent += chunk.len();
            }
            flood.shutdown(Shutdown::Write).expect("shutdown");
            sent
        });
        let reader = scope.spawn(move || {
            let got = read_to_end(&mut replies);
            (got.len(), got.iter().all(|&b| b == b'F'))
        });
        wait_until("the flood flows", || {
            service.counters().bytes_out > 4 * READ_BUFFER_LEN as u64
        });
        ping.write_all(b"ping\n").expect("send");
        assert_eq!(read_exactly(&mut ping, 5), b"PING\n");
        answered.store(true, Ordering::Relaxed);
        let sent = writer.join().expect("writer");
        let (got, all_upper) = reader.join().expect("reader");
        assert!(sent < CAP, "the ping waited for the whole flood");
        assert_eq!(got, sent, "the flood came back whole");
        assert!(all_upper);
    });
}

#[test]
fn the_connection_limit_holds_over_all_threads() {
    let service = Service::start_on(
        "127.0.0.1:0".parse().expect("addr"),
        TcpLimits {
            max_connections: 2,
            ..TcpLimits::default()
        },
        4,
    );
    let mut served: Vec<TcpStream> = (0..2).map(|_| service.connect()).collect();
    for stream in &mut served {
        stream.write_all(b"x").expect("send");
        assert_eq!(read_exactly(stream, 1), b"X", "served under the limit");
    }
    // Each lands on whichever of the 4 loops accepts it first: a limit
    // counted per loop would let most of them in.
    for _ in 0..8 {
        let mut over = service.connect();
        assert!(closed_by_server(&mut over), "a connection over the limit");
    }
    assert_eq!(service.counters().refused_over_limit, 8);
    assert_eq!(service.counters().open, 2);
    drop(served);
    wait_until("the served connections are closed", || {
        service.counters().open == 0
    });
    let mut again = service.connect();
    assert_eq!(exchange(&mut again, b"room"), b"ROOM");
}

/// A socket that hands out `input` in reads of at most `read_len` bytes,
/// then WouldBlock (or the end of stream, once `closed`), and takes at
/// most `room` bytes of output before WouldBlock.
#[derive(Default)]
struct Scripted {
    input: std::collections::VecDeque<u8>,
    read_len: usize,
    closed: bool,
    reads: usize,
    output: Vec<u8>,
    room: usize,
    shut: std::cell::Cell<bool>,
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.input.is_empty() && !self.closed {
            return Err(ErrorKind::WouldBlock.into());
        }
        let len = buf.len().min(self.read_len).min(self.input.len());
        for (to, from) in buf.iter_mut().zip(self.input.drain(..len)) {
            *to = from;
        }
        Ok(len)
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(self.room);
        if len == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.room -= len;
        self.output.extend_from_slice(&buf[..len]);
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl connection::Socket for Scripted {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shut.set(true);
        Ok(())
    }

    fn set_nodelay(&self) -> io::Result<()> {
        Ok(())
    }
}

fn scripted(input: &[u8], read_len: usize, room: usize) -> Connection<Scripted> {
    let socket = Scripted {
        input: input.iter().copied().collect(),
        read_len,
        room,
        ..Scripted::default()
    };
    let peer = "127.0.0.1:9".parse().expect("addr");
    Connection::new(socket, peer, None, Instant::now())
}

#[test]
fn a_connection_yields_after_its_full_buffers_per_turn() {
    let input = vec![b'a'; (READS_PER_TURN + 2) * READ_BUFFER_LEN];
    let mut connection = scripted(&input, usize::MAX, usize::MAX);
    let live = TcpLive::default();
    let step = connection.on_ready(Instant::now(), false, &live);
    assert!(matches!(step, Step::Yield), "it read on past its turn");
    let turn = (READS_PER_TURN * READ_BUFFER_LEN) as u64;
    assert_eq!(live.snapshot().bytes_in, turn);
    assert_eq!(
        live.snapshot().bytes_out,
        turn,
        "each read answered at once"
    );
    // The next turn takes the rest, and waits for more.
    let step = connection.on_ready(Instant::now(), false, &live);
    assert!(matches!(step, Step::Wait));
    assert_eq!(connection.stream().output, uppercase(&input));
}

#[test]
fn a_full_socket_stops_the_reading_until_it_takes_the_rest() {
    let input = vec![b'b'; 3 * READ_BUFFER_LEN];
    let mut connection = scripted(&input, usize::MAX, 100);
    let live = TcpLive::default();
    assert!(matches!(
        connection.on_ready(Instant::now(), false, &live),
        Step::Wait
    ));
    assert_eq!(live.snapshot().bytes_in, READ_BUFFER_LEN as u64, "read on");
    assert_eq!(live.snapshot().bytes_out, 100);
    // Still full: a readable event reads nothing more.
    connection.on_ready(Instant::now(), false, &live);
    assert_eq!(live.snapshot().bytes_in, READ_BUFFER_LEN as u64);
    connection.stream().room = usize::MAX;
    connection.stream().closed = true;
    let step = connection.on_ready(Instant::now(), false, &live);
    assert!(matches!(step, Step::Ended(connection::Ended::Done)));
    assert_eq!(connection.stream().output, uppercase(&input));
    assert!(connection.stream().shut.get(), "its end of stream sent");
}

#[test]
fn a_short_read_ends_the_turn_only_until_the_client_has_shut_down() {
    let mut connection = scripted(b"one two", 3, usize::MAX);
    let live = TcpLive::default();
    assert!(matches!(
        connection.on_ready(Instant::now(), false, &live),
        Step::Wait
    ));
    let reads = connection.stream().reads;
    if cfg!(target_os = "linux") {
        // A short read empties the queue on Linux: no read to WouldBlock.
        assert_eq!((reads, &connection.stream().output[..]), (1, &b"ONE"[..]));
    }
    // Once the client has shut down, a turn reads to the end of stream.
    connection.stream().closed = true;
    let step = connection.on_ready(Instant::now(), true, &live);
    assert!(matches!(step, Step::Ended(connection::Ended::Done)));
    assert_eq!(connection.stream().output, b"ONE TWO");
}
