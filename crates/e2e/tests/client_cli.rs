//! `upcase-client`'s command line as users meet it: options before `bench`,
//! what the bench reports, `--help` and `--version`.

use std::process::Output;

use upcase_e2e::{ServerProcess, client};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn udp_server() -> ServerProcess {
    ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"])
}

#[test]
fn options_before_bench_run_the_bench_with_them() {
    let server = udp_server();
    let port = server.addr().port().to_string();
    let out = client(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "bench",
            "--count",
            "20",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert!(json.contains("\"correct\":20,"), "{json}");
}

#[test]
fn bench_as_a_message_is_sent_after_a_double_dash() {
    let server = udp_server();
    let port = server.addr().port().to_string();
    let out = client(
        &["--server", "127.0.0.1", "--port", &port, "--", "bench"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "BENCH\n");
}

#[test]
fn options_that_do_not_apply_to_bench_are_refused_before_it() {
    let out = client(&["--timeout", "2s", "bench"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: --timeout does not apply to bench (a request unanswered for --loss-timeout is lost)"
    );
}
