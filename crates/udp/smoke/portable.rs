//! A smoke test of the portable path on the system it runs on, for systems
//! the test suite cannot run on here (Windows, under Wine: `cargo xtask
//! cross --wine` builds and runs it; `cargo run -p upcase-udp --features
//! smoke` runs it here). On loopback: a batch of datagrams of
//! any size and back, in place; a datagram cut by a small slot; waiting and
//! not waiting on an empty socket; a GSO train sent as its datagrams; the
//! poller; a reply to a closed port that must not fail the next receive;
//! a busy port refused to a second socket. Prints each check, then
//! `portable path: all N checks passed`, or the first failure and exits 1.

use std::error::Error;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use upcase_udp::{
    DEFAULT_BATCH, Io, Poller, RecvBatch, RecvErrorClass, SendBatch, classify_recv_error, opts,
};

type Outcome<T> = Result<T, Box<dyn Error>>;

/// A received datagram: its bytes, its sender, whether it was cut.
type Received = (Vec<u8>, Option<SocketAddr>, bool);

fn main() -> ExitCode {
    match run() {
        Ok(checks) => {
            println!("portable path: all {checks} checks passed");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Passes when `ok`, else fails with `what`.
fn check(checks: &mut usize, ok: bool, what: &str) -> Outcome<()> {
    if !ok {
        return Err(format!("check failed: {what}").into());
    }
    *checks += 1;
    println!("ok: {what}");
    Ok(())
}

fn bound() -> Outcome<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    opts::set_recv_buffer(&socket, 1 << 20)?;
    opts::ignore_port_unreachable(&socket)?;
    Ok(socket)
}

/// Receives until `count` datagrams came: their bytes and senders.
fn receive(socket: &UdpSocket, batch: &mut RecvBatch, count: usize) -> Outcome<Vec<Received>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < count {
        if Instant::now() > deadline {
            return Err(format!("only {} of {count} datagrams came", got.len()).into());
        }
        batch.recv(socket)?;
        got.extend(
            batch
                .iter()
                .map(|d| (d.bytes.to_vec(), d.meta.peer, d.meta.truncated)),
        );
    }
    Ok(got)
}

fn run() -> Outcome<usize> {
    let io = Io::Portable;
    let mut checks = 0;
    let (server, client) = (bound()?, bound()?);
    let (server_addr, client_addr) = (server.local_addr()?, client.local_addr()?);

    let sizes = [0, 1, 1_500, 65_507];
    let requests: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![b'a'; n]).collect();
    let mut send = SendBatch::with_io(DEFAULT_BATCH, io);
    let mut queue = send.queue(&client);
    for request in &requests {
        queue.push(Some(server_addr), request, None)?;
    }
    let report = queue.finish()?;
    check(
        &mut checks,
        report.sent == 4,
        "a batch of 0, 1, 1500 and 65507 bytes is sent",
    )?;

    let mut recv = RecvBatch::with_io(DEFAULT_BATCH, 65_536, io);
    let got = receive(&server, &mut recv, 4)?;
    let lens: Vec<usize> = got.iter().map(|(b, _, _)| b.len()).collect();
    let from_client = got
        .iter()
        .all(|(_, peer, cut)| *peer == Some(client_addr) && !cut);
    check(
        &mut checks,
        lens == sizes && from_client,
        "it arrives whole, with its sender",
    )?;

    let mut replies = SendBatch::with_io(DEFAULT_BATCH, io);
    let mut queue = replies.queue(&server);
    for datagram in recv.iter_mut() {
        datagram.bytes.make_ascii_uppercase();
        let reply: &[u8] = datagram.bytes;
        queue.push(datagram.meta.peer, reply, None)?;
    }
    check(
        &mut checks,
        queue.finish()?.sent == 4,
        "replies go out from the slots",
    )?;
    let got = receive(&client, &mut recv, 4)?;
    let upper = got.iter().all(|(b, _, _)| b.iter().all(|&c| c == b'A'));
    check(&mut checks, upper, "and come back uppercased")?;

    let mut small = RecvBatch::with_io(4, 16, io);
    client.send_to(&[b'x'; 100], server_addr)?;
    let got = receive(&server, &mut small, 1)?;
    let (len, cut) = (got[0].0.len(), got[0].2);
    check(
        &mut checks,
        len == 16 && cut && got[0].0 == [b'x'; 16],
        &format!("a datagram longer than its slot is marked cut (got {len} bytes, cut: {cut})"),
    )?;

    check(
        &mut checks,
        small.try_recv(&server)? == 0,
        "try_recv on an empty socket does not wait",
    )?;
    server.set_read_timeout(Some(Duration::from_millis(50)))?;
    let idle = small.recv(&server).err();
    let idle_class = idle.as_ref().map(classify_recv_error);
    check(
        &mut checks,
        idle_class == Some(RecvErrorClass::Idle),
        "recv times out as idle",
    )?;
    server.set_read_timeout(Some(Duration::from_secs(5)))?;

    let train: Vec<u8> = (0..250u8).collect();
    let mut queue = send.queue(&client);
    queue.push(Some(server_addr), &train, Some(100))?;
    check(
        &mut checks,
        queue.finish()?.sent == 1,
        "a GSO train counts as one message",
    )?;
    let got = receive(&server, &mut recv, 3)?;
    let lens: Vec<usize> = got.iter().map(|(b, _, _)| b.len()).collect();
    check(
        &mut checks,
        lens == [100, 100, 50],
        "and arrives as its datagrams",
    )?;

    let mut poller = Poller::new([&server, &client]);
    check(
        &mut checks,
        poller.wait(Duration::ZERO)? == 0,
        "the poller sees nothing to read",
    )?;
    client.send_to(b"wake", server_addr)?;
    let woke = poller.wait(Duration::from_secs(5))? == 1 && poller.is_readable(0);
    check(
        &mut checks,
        woke && !poller.is_readable(1),
        "and wakes for the readable socket",
    )?;
    receive(&server, &mut recv, 1)?;

    let closed = bound()?.local_addr()?; // dropped: nobody listens there
    server.send_to(b"to nobody", closed)?;
    client.send_to(b"after", server_addr)?;
    let got = receive(&server, &mut recv, 1)?;
    check(
        &mut checks,
        got[0].0 == b"after",
        "a reply to a closed port fails no receive",
    )?;

    let first = exclusive()?;
    first.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    let taken = first.local_addr()?;
    let second = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    second.set_reuse_address(true)?;
    let refused = second.bind(&taken).is_err();
    check(
        &mut checks,
        refused,
        "a port held exclusively refuses a second socket",
    )?;

    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    let transient = classify_recv_error(&reset) == RecvErrorClass::Transient;
    check(&mut checks, transient, "a connection reset is transient")?;
    Ok(checks)
}

fn exclusive() -> Outcome<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    opts::set_exclusive_address_use(&socket)?;
    Ok(socket)
}
