//! `cargo xtask soak [--seconds N]`: floods the release server on loopback
//! from several sockets at once with every kind of datagram, then checks
//! that nothing went wrong and nothing vanished:
//! - every reply a sender got is the uppercase of a datagram it sent;
//! - the server still answers at the end, and stops within one second of a
//!   SIGTERM sent during the flood, with its summary;
//! - its counters add up: received = replied + dropped_too_large +
//!   dropped_rate_limited + dropped_ratio + send_errors;
//! - its resident memory stays under [`RSS_BOUND_MIB`] and does not grow:
//!   the peak of the second half of the run is no higher than the peak of
//!   the first half, plus a little allocator slack;
//! - warnings stay rate-limited however many bad datagrams arrive.
//!
//! Each datagram names its kind and a sequence number in an ASCII header
//! (`a17:...`), which uppercasing keeps readable (`A17:...`), so a sender
//! checks any reply, late or reordered, by rebuilding the request it answers.

use std::fs;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use upcase_e2e::{Memory, Process, Signal, Stopped, Summary, reachable};
use upcase_proto::{MAX_PAYLOAD_V4, uppercase};

use crate::workspace;

/// The bound on the server's resident memory, whatever the run's length:
/// its buffers are fixed (64 KiB per thread plus a reply scratch vector),
/// so a few MiB are expected and anything near this is a leak.
pub(crate) const RSS_BOUND_MIB: u64 = 64;

/// How much higher the second half's peak may be than the first half's:
/// allocator noise, not growth.
const RSS_SLACK_KIB: u64 = 1024;

/// Datagrams in flight per sender before it waits for a reply: enough to
/// keep the server busy, few enough not to overflow loopback buffers all
/// the time.
const WINDOW: usize = 32;

/// Hard cap per sender, so even a very long run is bounded in count.
const MAX_PER_SENDER: u64 = 500_000_000;

/// The one-second promise of SIGTERM during a flood.
const STOP_BOUND: Duration = Duration::from_secs(1);

/// How long starting or answering may take before the soak gives up.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the flood lasts
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub seconds: u64,
    /// Sender threads, each with its own socket
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub senders: u64,
}

/// The kinds of datagram in the mix, in the order each sender cycles
/// through them (short ones more often, like real traffic).
const MIX: &[Kind] = &[
    Kind::Ascii,
    Kind::Unicode,
    Kind::Invalid,
    Kind::Empty,
    Kind::Ascii,
    Kind::Expanding,
    Kind::Unicode,
    Kind::Largest,
    Kind::Ascii,
    Kind::TooLarge,
    Kind::Invalid,
    Kind::Ascii,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ascii,
    Unicode,
    Invalid,
    Empty,
    /// The largest IPv4 datagram, 65,507 bytes.
    Largest,
    /// U+0390 (2 bytes) uppercases to 6 bytes: a reply three times larger.
    Expanding,
    /// 15,000 × U+0390: 30,000 bytes whose reply (90,000) cannot be sent.
    TooLarge,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Ascii,
        Kind::Unicode,
        Kind::Invalid,
        Kind::Empty,
        Kind::Largest,
        Kind::Expanding,
        Kind::TooLarge,
    ];

    fn letter(self) -> u8 {
        match self {
            Kind::Ascii => b'a',
            Kind::Unicode => b'u',
            Kind::Invalid => b'i',
            Kind::Empty => b'e',
            Kind::Largest => b'l',
            Kind::Expanding => b'x',
            Kind::TooLarge => b't',
        }
    }

    fn of_letter(letter: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.letter() == letter)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Ascii => "ASCII",
            Kind::Unicode => "Unicode",
            Kind::Invalid => "invalid UTF-8",
            Kind::Empty => "empty",
            Kind::Largest => "largest (65507)",
            Kind::Expanding => "expanding (x3)",
            Kind::TooLarge => "reply too large",
        }
    }

    fn expects_reply(self) -> bool {
        self != Kind::TooLarge
    }
}

/// The datagram of `kind` with sequence number `seq`.
fn request(kind: Kind, seq: u64) -> Vec<u8> {
    if kind == Kind::Empty {
        return Vec::new();
    }
    let mut out = format!("{}{seq}:", char::from(kind.letter())).into_bytes();
    match kind {
        Kind::Ascii => {
            out.extend_from_slice(format!("soak test line {seq}, nothing lost").as_bytes())
        }
        Kind::Unicode => out.extend_from_slice("straße ﬁ 안녕 🙂 é ǰ".as_bytes()),
        Kind::Invalid => out.extend_from_slice(b"ab\xff\xfe cd \xed\xa0\x80 \xc3"),
        Kind::Largest => out.resize(MAX_PAYLOAD_V4, b'z'),
        Kind::Expanding => out.extend_from_slice("\u{390}".repeat(1_000).as_bytes()),
        Kind::TooLarge => out.extend_from_slice("\u{390}".repeat(15_000).as_bytes()),
        Kind::Empty => {}
    }
    out
}

/// Whether `reply` is the server's answer to a datagram this sender sent
/// (sequence numbers below `sent`), and of which kind.
fn check_reply(reply: &[u8], sent: u64) -> Result<Kind, String> {
    if reply.is_empty() {
        return Ok(Kind::Empty);
    }
    let header_end = reply
        .iter()
        .position(|&b| b == b':')
        .filter(|&at| at <= 21)
        .ok_or_else(|| format!("a {}-byte reply without a header", reply.len()))?;
    let kind = Kind::of_letter(reply[0].to_ascii_lowercase())
        .ok_or_else(|| format!("a reply of unknown kind {:?}", char::from(reply[0])))?;
    let seq: u64 = std::str::from_utf8(&reply[1..header_end])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| "a reply with a broken sequence number".to_string())?;
    if seq >= sent {
        return Err(format!("a reply to {seq}, never sent"));
    }
    if !kind.expects_reply() {
        return Err(format!("a reply to {seq}, which is too large to send"));
    }
    let expected = uppercase(&request(kind, seq));
    if reply != expected {
        return Err(format!("the reply to {} #{seq} is wrong", kind.name()));
    }
    Ok(kind)
}

/// What one sender did.
#[derive(Debug, Default, Clone)]
struct Sent {
    sent: u64,
    sent_by_kind: [u64; Kind::ALL.len()],
    replies: u64,
    wrong: Vec<String>,
    lost_windows: u64,
}

/// Sends the mix as fast as replies come back, until `stop`.
fn sender(server: SocketAddr, stop: &AtomicBool) -> anyhow::Result<Sent> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind a sender socket")?;
    socket
        .connect(server)
        .context("cannot connect a sender socket")?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .context("cannot set a timeout")?;
    let mut buf = vec![0u8; 65_536];
    let mut stats = Sent::default();
    let mut outstanding = 0usize;
    while !stop.load(Ordering::Relaxed) && stats.sent < MAX_PER_SENDER {
        while outstanding < WINDOW {
            let kind = MIX[(stats.sent % MIX.len() as u64) as usize];
            match socket.send(&request(kind, stats.sent)) {
                Ok(_) => {}
                // The server is gone (stopped by the soak) or the buffer
                // is full for a moment: neither is the sender's failure.
                Err(e) if is_passing(&e) => break,
                Err(e) => return Err(e).context("cannot send"),
            }
            stats.sent_by_kind[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)] += 1;
            stats.sent += 1;
            if kind.expects_reply() {
                outstanding += 1;
            }
        }
        match socket.recv(&mut buf) {
            Ok(len) => {
                stats.replies += 1;
                outstanding = outstanding.saturating_sub(1);
                if let Err(wrong) = check_reply(&buf[..len], stats.sent)
                    && stats.wrong.len() < 10
                {
                    stats.wrong.push(wrong);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // What is still out was lost (loopback buffers overflow
                // under a flood, as UDP allows): start a new window.
                stats.lost_windows += 1;
                outstanding = 0;
            }
            Err(e) if is_passing(&e) => outstanding = 0,
            Err(e) => return Err(e).context("cannot receive"),
        }
    }
    Ok(stats)
}

fn is_passing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    ) || is_no_buffer_space(e)
}

/// ENOBUFS (WSAENOBUFS on Windows): the system's send queue was full for a
/// moment, which a flood must expect.
fn is_no_buffer_space(e: &io::Error) -> bool {
    #[cfg(unix)]
    const NO_BUFFER_SPACE: i32 = libc::ENOBUFS;
    #[cfg(windows)]
    const NO_BUFFER_SPACE: i32 = 10055;
    e.raw_os_error() == Some(NO_BUFFER_SPACE)
}

/// Starts the server on an ephemeral loopback port, its output in `logs`;
/// returns it with the address its ready line names.
fn start_server(
    program: &Path,
    threads: u16,
    logs: &Path,
) -> anyhow::Result<(Process, SocketAddr)> {
    let mut command = Command::new(program);
    command
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--transport",
            "udp",
            "--threads",
        ])
        .arg(threads.to_string());
    let mut server = Process::spawn(&mut command)
        .label("server")
        .logs_in(logs)
        .start()?;
    let addr = reachable(server.wait_ready(PATIENCE)?.first());
    Ok((server, addr))
}

/// SIGTERM; the server after its exit, or an error if it takes longer than
/// [`PATIENCE`] or fails.
fn terminate(server: Process) -> anyhow::Result<Stopped> {
    let stopped = server
        .stop_with(Signal::SIGTERM, PATIENCE)
        .context("the server")?;
    ensure!(
        stopped.status.success(),
        "the server exited with {}; its stderr:\n{}",
        stopped.status,
        stopped.stderr
    );
    Ok(stopped)
}

/// Datagrams the kernel dropped for the server's sockets (receive buffer
/// full), from the `drops` column of /proc/PID/net/udp.
fn kernel_drops(pid: u32, port: u16) -> Option<u64> {
    let table = fs::read_to_string(format!("/proc/{pid}/net/udp")).ok()?;
    let local = format!(":{port:04X}");
    let drops = table
        .lines()
        .skip(1)
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|addr| addr.ends_with(&local))
        })
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    Some(drops)
}

/// RSS samples taken during the run: (time since start, KiB).
struct Samples(Vec<(Duration, u64)>);

impl Samples {
    /// Peak of the first and second half of the run.
    fn halves(&self, run: Duration) -> (u64, u64) {
        let half = run / 2;
        let peak = |first: bool| {
            self.0
                .iter()
                .filter(|(t, _)| (*t < half) == first)
                .map(|(_, kib)| *kib)
                .max()
                .unwrap_or(0)
        };
        (peak(true), peak(false))
    }
}

pub(crate) fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let target = workspace::target_dir()?;
    println!("==> building the release server");
    let status = workspace::cargo()
        .args(["build", "--release", "-p", "upcase-server"])
        .status()
        .context("cannot run cargo")?;
    ensure!(status.success(), "cargo build failed ({status})");
    let logs = target.join("soak");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let threads = 2;
    let (mut server, addr) = start_server(
        &target.join("release").join("upcase-server"),
        threads,
        &logs,
    )?;
    let pid = server.pid();
    let run_for = Duration::from_secs(args.seconds);
    println!(
        "==> flooding {addr} (--threads {threads}) from {} sockets for {} s",
        args.senders, args.seconds
    );

    let stop_senders = AtomicBool::new(false);
    let stop_sampler = AtomicBool::new(false);
    let last_drops = AtomicU64::new(0);
    let started = Instant::now();
    let outcome = thread::scope(|s| -> anyhow::Result<_> {
        let senders: Vec<_> = (0..args.senders)
            .map(|_| s.spawn(|| sender(addr, &stop_senders)))
            .collect();
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            while !stop_sampler.load(Ordering::Relaxed) {
                if let Ok(Some(memory)) = Memory::of(pid) {
                    samples.push((started.elapsed(), memory.vm_rss_kib));
                }
                if let Some(drops) = kernel_drops(pid, addr.port()) {
                    last_drops.store(drops, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(50));
            }
            Samples(samples)
        });
        while started.elapsed() < run_for {
            thread::sleep(Duration::from_millis(20));
        }
        let run_time = started.elapsed();
        stop_sampler.store(true, Ordering::Relaxed);
        let samples = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
        // Still flooding: the server must answer a newcomer and then stop on
        // SIGTERM in time.
        let probed = server.wait_answering(addr, "still there, straße?".as_bytes(), PATIENCE);
        let drops = last_drops.load(Ordering::Relaxed);
        let terminated = terminate(server);
        stop_senders.store(true, Ordering::Relaxed);
        let mut sent = Vec::new();
        for handle in senders {
            sent.push(
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a sender panicked"))??,
            );
        }
        probed.context("after the flood")?;
        Ok((run_time, samples, sent, drops, terminated?))
    })?;
    let (run_time, samples, sent, drops, stopped) = outcome;
    report_and_check(args, run_time, &samples, &sent, drops, &stopped, threads)
}

fn report_and_check(
    args: &SoakArgs,
    run_time: Duration,
    samples: &Samples,
    sent: &[Sent],
    kernel_drops: u64,
    stopped: &Stopped,
    threads: u16,
) -> anyhow::Result<()> {
    let log = &stopped.stderr;
    let stop_time = stopped.elapsed;
    let udp = Summary::from_log(log)?.udp;
    let (received, replied, accounted) = (udp.received, udp.replied, udp.accounted_for());
    let total_sent: u64 = sent.iter().map(|s| s.sent).sum();
    let total_replies: u64 = sent.iter().map(|s| s.replies).sum();
    let wrong: Vec<&String> = sent.iter().flat_map(|s| &s.wrong).collect();
    let (first_half, second_half) = samples.halves(run_time);
    let peak = first_half.max(second_half);
    let warnings = log.lines().filter(|l| l.contains("WARN")).count() as u64;
    // Per thread 5 a second, plus the end-of-run note of each.
    let warning_bound = u64::from(threads) * (5 * (run_time.as_secs() + 2) + 1);

    println!(
        "\nsoak: {} s, {} senders, server --threads {threads}",
        args.seconds, args.senders
    );
    println!("  {:<36} {:>14}", "datagrams sent", total_sent);
    for (i, kind) in Kind::ALL.iter().enumerate() {
        let n: u64 = sent.iter().map(|s| s.sent_by_kind[i]).sum();
        println!("    {:<34} {:>14}", kind.name(), n);
    }
    println!(
        "  {:<36} {:>14}",
        "replies received (all checked)", total_replies
    );
    println!("  {:<36} {:>14}", "server: received", received);
    println!("  {:<36} {:>14}", "server: replied", replied);
    for (key, value) in [
        ("dropped_too_large", udp.dropped_too_large),
        ("dropped_rate_limited", udp.dropped_rate_limited),
        ("dropped_ratio", udp.dropped_ratio),
        ("send_errors", udp.send_errors),
    ] {
        println!("  {:<36} {:>14}", format!("server: {key}"), value);
    }
    println!(
        "  {:<36} {:>14}",
        "kernel drops (receive buffer full)", kernel_drops
    );
    println!("  {:<36} {:>14}", "warning lines logged", warnings);
    // Memory is read from /proc: Linux's (see upcase_e2e::Memory).
    let memory_measured = cfg!(target_os = "linux");
    if memory_measured {
        println!(
            "  {:<36} {:>10.1} MiB (first half {:.1}, second half {:.1}; bound {RSS_BOUND_MIB} MiB)",
            "peak RSS",
            peak as f64 / 1024.0,
            first_half as f64 / 1024.0,
            second_half as f64 / 1024.0
        );
    } else {
        println!("  {:<36} {:>14}", "peak RSS", "not measured");
    }
    println!(
        "  {:<36} {:>10.3} s",
        "stop after SIGTERM during the flood",
        stop_time.as_secs_f64()
    );

    ensure!(wrong.is_empty(), "wrong replies: {wrong:?}");
    ensure!(
        received == accounted,
        "the counters do not add up: received={received}, but replied + dropped + send_errors = {accounted} ({udp:?})"
    );
    ensure!(
        received <= total_sent + 64,
        "the server received {received} datagrams, more than were sent ({total_sent})"
    );
    ensure!(
        total_replies <= replied + 64,
        "the senders got more replies ({total_replies}) than the server sent ({replied})"
    );
    ensure!(
        received > 0 && replied > 0,
        "the server answered nothing: {udp:?}"
    );
    if memory_measured {
        ensure!(samples.0.len() >= 2, "too few memory samples");
        ensure!(
            peak < RSS_BOUND_MIB * 1024,
            "peak RSS {peak} KiB is over {RSS_BOUND_MIB} MiB"
        );
        ensure!(
            second_half <= first_half + RSS_SLACK_KIB,
            "RSS grew: first-half peak {first_half} KiB, second-half peak {second_half} KiB"
        );
    }
    ensure!(
        stop_time <= STOP_BOUND,
        "SIGTERM took {:.3} s to stop the server",
        stop_time.as_secs_f64()
    );
    ensure!(
        warnings <= warning_bound,
        "{warnings} warning lines, over {warning_bound}: not rate-limited"
    );
    println!("==> soak passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use upcase_proto::uppercased_len;

    #[test]
    fn every_kind_is_what_it_says() {
        assert_eq!(request(Kind::Largest, 123).len(), MAX_PAYLOAD_V4);
        assert!(request(Kind::Empty, 9).is_empty());
        let too_large = request(Kind::TooLarge, 5);
        assert!(too_large.len() <= MAX_PAYLOAD_V4);
        assert!(uppercased_len(&too_large) > MAX_PAYLOAD_V4);
        let expanding = request(Kind::Expanding, 5);
        assert!(uppercased_len(&expanding) > 2 * expanding.len());
        assert!(uppercased_len(&expanding) <= MAX_PAYLOAD_V4);
        assert!(std::str::from_utf8(&request(Kind::Invalid, 1)).is_err());
        assert!(!request(Kind::Unicode, 1).is_ascii());
    }

    #[test]
    fn replies_are_checked_against_what_was_sent() {
        for kind in Kind::ALL.into_iter().filter(|k| k.expects_reply()) {
            let reply = uppercase(&request(kind, 41));
            assert_eq!(check_reply(&reply, 42), Ok(kind));
            if kind != Kind::Empty {
                assert!(check_reply(&reply, 41).is_err(), "41 was never sent");
            }
        }
        let mut wrong = uppercase(&request(Kind::Ascii, 3));
        wrong.push(b'!');
        assert!(check_reply(&wrong, 10).is_err());
        assert!(
            check_reply(&request(Kind::Ascii, 3), 10).is_err(),
            "not uppercased"
        );
        assert!(
            check_reply(b"T3:\xce", 10).is_err(),
            "too large is never answered"
        );
        assert!(check_reply(b"garbage", 10).is_err());
    }

    #[test]
    fn halves_are_split_by_time() {
        let s = Samples(vec![
            (Duration::from_secs(1), 100),
            (Duration::from_secs(2), 300),
            (Duration::from_secs(6), 200),
            (Duration::from_secs(9), 250),
        ]);
        assert_eq!(s.halves(Duration::from_secs(10)), (300, 250));
    }
}
