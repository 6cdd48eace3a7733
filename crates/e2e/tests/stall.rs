//! Coordinated omission: a server stopped (SIGSTOP) for 150 ms in the middle
//! of a `--rate 5000` run must show in the p99 when round trips are timed
//! from each request's intended send time, the default under `--rate`; the
//! same run without the stop must not; and timed from the actual send (what
//! the tool measured before, and what `--latency-from sent` still does) the
//! same stop hides. Every assertion is on the tool's own JSON.
//!
//! The arithmetic behind the threshold, at 5,000 requests/s for 4 s (20,000
//! requests, so the p99 is the 200th slowest): once the server stops, the
//! default window of 64 fills in 12.8 ms and the requests due for the rest
//! of the stop are held back. Timed from the schedule, the request due at
//! `t` into the stop waits about `150 ms - t`, so the 200 slowest (those due
//! in its first 40 ms) waited at least 110 ms, and a longer stop only adds
//! to that. Timed from the send, only the 64 in the window saw the stop:
//! 0.3 % of the samples, under the p99.
//!
//! The machine's own stalls are the risk: on this project's 2-core machine
//! at a load average of 9, runs without any stop had p99s up to 101 ms at
//! normal priority, up to 36 ms at `nice -n -20`, and up to 22 ms (mostly
//! under 2 ms) in the realtime class (`chrt -f 1`). So server and client
//! run in the realtime class where they may (as root, as CI runs), at
//! `nice -n -20` otherwise, and "shows in the p99" means at least
//! [`SHOWS`] = 60 ms: about half the stop's floor, and well above that
//! noise (in 6 rounds of these three tests at a load average of 7.5-7.9,
//! the runs with the stop had p99s of 111.7-116.3 ms, the others 0.5-36 ms).
//! Both programs wait in `ppoll`/`recvmmsg` between requests, so the
//! realtime class cannot make either hog a core.

use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use upcase_e2e::{ServerProcess, Signal, binary, run_with_input};
use upcase_load::{LatencyFrom, Summary};

/// The stop, as the issue has it.
const STOP: Duration = Duration::from_millis(150);
/// When the stop begins after the client starts: well inside its 4 s,
/// whatever the client's own start-up takes on a busy machine.
const STOP_AFTER: Duration = Duration::from_millis(1_500);
/// A p99 at least this long shows the stop (see the module's comment).
const SHOWS: f64 = 60_000.0;
/// Lateness this long says the stop held the sender back, so it fell
/// inside the measurement (the window fills 12.8 ms into it).
const HELD_BACK: f64 = 100_000.0;

/// The runs take the machine's two cores and must not overlap: each test
/// holds this while it runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How the measured programs are started: in the realtime class if this
/// process may, else at the highest niceness `nice` can give.
fn favoured(program: &str) -> Command {
    static REALTIME: OnceLock<bool> = OnceLock::new();
    let realtime = *REALTIME.get_or_init(|| {
        Command::new("chrt")
            .args(["-f", "1", "true"])
            .output()
            .is_ok_and(|out| out.status.success())
    });
    let mut command = if realtime {
        let mut chrt = Command::new("chrt");
        chrt.args(["-f", "1"]);
        chrt
    } else {
        eprintln!("chrt -f 1 is refused here: the runs use nice -n -20 instead");
        // nice runs the program even when it may not raise the priority.
        let mut nice = Command::new("nice");
        nice.args(["-n", "-20"]);
        nice
    };
    // Both exec the program, so the pid stays the program's.
    command.arg(binary(program));
    command
}

fn start_server() -> ServerProcess {
    ServerProcess::start_command(favoured("upcase-server").args([
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--transport",
        "udp",
    ]))
}

/// `upcase-client bench --rate 5000` for 4 s against `server`, its round
/// trips timed from `from`; stops the server for [`STOP`] in the middle
/// when `stop` is set. Returns the client's output and the JSON it printed.
fn paced_run(server: &mut ServerProcess, from: LatencyFrom, stop: bool) -> (Output, Summary) {
    let port = server.loopback_addr().port().to_string();
    let mut client = favoured("upcase-client");
    client.args(["bench", "--server", "127.0.0.1", "--port", &port]);
    client.args(["--rate", "5000", "--duration", "4s", "--json"]);
    // A stalled request must stay a late round trip, not a loss, even if
    // this test's own timer thread wakes late to end the stop.
    client.args(["--loss-timeout", "1s", "--latency-from", from.name()]);
    let out = thread::scope(|scope| {
        let timer = stop.then(|| {
            let server = &mut *server;
            scope.spawn(move || {
                // Sleeping is the experiment here, not a synchronisation:
                // the stop's length is what is measured. It can only
                // oversleep, which lengthens the stop.
                thread::sleep(STOP_AFTER);
                server.signal(Signal::SIGSTOP);
                let stopped = Instant::now();
                thread::sleep(STOP);
                server.signal(Signal::SIGCONT);
                stopped.elapsed()
            })
        });
        let out = run_with_input(&mut client, b"");
        if let Some(timer) = timer {
            let stopped_for = timer.join().expect("the stop's timer");
            eprintln!("server stopped for {stopped_for:?}");
        }
        out
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed ({}): {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Summary = stdout
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("{err}: {stdout}"));
    eprintln!("{from:?}, stop {stop}: {}", figures(&summary));
    assert_eq!(summary.latency_from, from, "{stdout}");
    assert_eq!(
        (summary.counts.lost, summary.counts.wrong),
        (0, 0),
        "{stdout}"
    );
    (out, summary)
}

/// The run's p99, lateness and intervals, for an assertion's message.
fn figures(s: &Summary) -> String {
    let intervals: Vec<String> = s
        .intervals
        .iter()
        .map(|i| format!("{}-{} s p99 {:?}", i.start_s, i.end_s, i.p99_us))
        .collect();
    format!(
        "p99 {:?} µs, p99.9 {:?}, max {:?}; behind schedule p99 {:?} max {:?}; {}",
        s.p99_us,
        s.p999_us,
        s.max_us,
        s.lateness_p99_us,
        s.lateness_max_us,
        intervals.join(", ")
    )
}

fn p99(s: &Summary) -> f64 {
    s.p99_us.unwrap_or_else(|| panic!("no p99: {}", figures(s)))
}

fn held_back(s: &Summary) -> bool {
    s.lateness_max_us.is_some_and(|late| late >= HELD_BACK)
}

#[test]
fn a_stopped_server_shows_in_the_p99_timed_from_the_schedule() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server();
    let (_, run) = paced_run(&mut server, LatencyFrom::Intended, true);
    assert!(
        held_back(&run),
        "the stop missed the run: {}",
        figures(&run)
    );
    assert!(
        p99(&run) >= SHOWS,
        "a 150 ms stop must show in the p99: {}",
        figures(&run)
    );
}

#[test]
fn without_the_stop_the_p99_stays_low() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server();
    let (_, run) = paced_run(&mut server, LatencyFrom::Intended, false);
    assert!(
        p99(&run) < SHOWS,
        "no stop, yet the p99 looks like one: {}",
        figures(&run)
    );
}

#[test]
fn timed_from_the_send_the_same_stop_hides() {
    // Coordinated omission, shown: the requests held back during the stop
    // are timed from when they finally went, so the stall vanishes.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server();
    let (_, run) = paced_run(&mut server, LatencyFrom::Sent, true);
    assert!(
        held_back(&run),
        "the stop missed the run: {}",
        figures(&run)
    );
    assert!(
        p99(&run) < SHOWS,
        "timed from the send, the stop should hide under the p99: {}",
        figures(&run)
    );
}
