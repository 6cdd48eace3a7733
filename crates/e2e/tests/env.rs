//! Configuration from the environment, for unit files and containers:
//! every option of the server, and the client's connection options, read an
//! `UPCASE_*` variable that `--help` names; the command line wins over the
//! environment; a bad value there is one `error:` line and status 2, as on
//! the command line.

use std::process::{Command, Output};

use upcase_e2e::{PATIENCE, Process, ServerProcess, Signal, binary};

fn server_with_env(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
    let mut command = Command::new(binary("upcase-server"));
    command.args(args).envs(env.iter().copied());
    ServerProcess::start_command(&mut command)
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary(program));
    command.args(args).envs(env.iter().copied());
    Process::spawn(&mut command)
        .start()
        .and_then(|p| p.finish(PATIENCE))
        .expect("runs")
}

fn assert_usage_error(out: &Output, starts: &str) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(starts), "{stderr}");
}

#[test]
fn the_server_is_configured_by_the_environment() {
    let mut server = server_with_env(
        &[],
        &[
            ("UPCASE_BIND", "127.0.0.1"),
            ("UPCASE_PORT", "0"),
            ("UPCASE_TRANSPORT", "udp"),
            ("UPCASE_THREADS", "3"),
            ("UPCASE_METRICS", "127.0.0.1:0"),
            ("UPCASE_MAX_REPLY_RATIO", "1.5"),
        ],
    );
    let udp = server.ready.udp().expect("udp");
    assert_eq!(udp.ip().to_string(), "127.0.0.1");
    assert_ne!(udp.port(), 0);
    assert_eq!(server.ready.tcp(), None, "{}", server.ready.line());
    assert!(server.ready.metrics().is_some(), "{}", server.ready.line());
    server.wait_for_log("receiving on", 1);
    let log = server.stderr();
    assert!(log.contains("with 3 worker threads"), "{log}");
    assert!(
        log.contains("no reply longer than 1.5 times its request"),
        "{log}"
    );
    server.stop_with(Signal::SIGTERM);
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let mut server = server_with_env(
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--transport",
            "tcp",
            "--threads",
            "1",
        ],
        &[
            ("UPCASE_BIND", "::1"),
            ("UPCASE_PORT", "1"),
            ("UPCASE_TRANSPORT", "udp"),
            ("UPCASE_THREADS", "3"),
            ("UPCASE_LOG_FORMAT", "json"),
        ],
    );
    let tcp = server.ready.tcp().expect("tcp, as the flag says");
    assert_eq!(tcp.ip().to_string(), "127.0.0.1");
    assert_eq!(server.ready.udp(), None);
    // The environment still sets what the command line does not.
    server.wait_for_log("accepting TCP", 1);
    assert!(server.stderr().starts_with("{\""), "{}", server.stderr());
    let json = run(
        "upcase-server",
        &["--log-format", "text", "--port", "x"],
        &[("UPCASE_LOG_FORMAT", "json")],
    );
    assert_usage_error(&json, "error: invalid value 'x' for '--port <PORT>'");
    server.stop_with(Signal::SIGTERM);
}

#[test]
fn a_bad_value_in_the_environment_is_a_usage_error() {
    for (name, value, option) in [
        ("UPCASE_PORT", "70000", "--port <PORT>"),
        ("UPCASE_THREADS", "0", "--threads <N>"),
        ("UPCASE_BIND", "localhost", "--bind <ADDR>"),
        ("UPCASE_METRICS", "9100", "--metrics <ADDR:PORT>"),
        ("UPCASE_TRANSPORT", "sctp", "--transport <LIST>"),
        ("UPCASE_IDLE_TIMEOUT", "soon", "--idle-timeout <DURATION>"),
        ("UPCASE_LOG_FORMAT", "xml", "--log-format <FORMAT>"),
        ("UPCASE_COLOR", "sometimes", "--color <WHEN>"),
    ] {
        let out = run("upcase-server", &[], &[(name, value)]);
        assert_usage_error(
            &out,
            &format!("error: invalid value '{value}' for '{option}'"),
        );
    }
    for (name, value, option) in [
        ("UPCASE_TIMEOUT", "soon", "--timeout <DURATION>"),
        ("UPCASE_RETRIES", "-1", "--retries <N>"),
        ("UPCASE_PORT", "0", "--port <PORT>"),
    ] {
        let out = run("upcase-client", &["hello"], &[(name, value)]);
        assert_usage_error(
            &out,
            &format!("error: invalid value '{value}' for '{option}'"),
        );
    }
}

/// The long options of a `--help` text and the variable each names.
fn options_and_variables(help: &str) -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        // An option's line: indented, `-x, --name` or `--name`.
        let trimmed = line.trim_start();
        if line.starts_with(' ')
            && trimmed.starts_with('-')
            && let Some(at) = trimmed.find("--").filter(|&at| at <= 4)
        {
            let name: String = trimmed[at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            found.push((name.trim_end_matches("...").to_string(), None));
        }
        if let Some(at) = line.find("[env: ") {
            let variable: String = line[at + 6..].chars().take_while(|&c| c != '=').collect();
            if let Some(last) = found.last_mut() {
                last.1 = Some(variable);
            }
        }
    }
    found
}

#[test]
fn help_names_the_variable_of_every_option() {
    let help = run("upcase-server", &["--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let options = options_and_variables(&help);
    assert!(options.len() >= 17, "{options:?}\n{help}");
    for (option, variable) in &options {
        match option.as_str() {
            "--verbose" | "--quiet" | "--help" | "--version" => {}
            option => {
                let expected = format!(
                    "UPCASE_{}",
                    option
                        .trim_start_matches("--")
                        .replace('-', "_")
                        .to_uppercase()
                );
                assert_eq!(variable.as_deref(), Some(&*expected), "{option} in\n{help}");
            }
        }
    }
    let help = run("upcase-client", &["--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let options = options_and_variables(&help);
    for (option, variable) in [
        ("--server", "UPCASE_SERVER"),
        ("--port", "UPCASE_PORT"),
        ("--timeout", "UPCASE_TIMEOUT"),
        ("--retries", "UPCASE_RETRIES"),
        ("--log-format", "UPCASE_LOG_FORMAT"),
        ("--color", "UPCASE_COLOR"),
    ] {
        assert!(
            options.contains(&(option.to_string(), Some(variable.to_string()))),
            "{option} [env: {variable}] in\n{help}"
        );
    }
}

#[test]
fn the_client_finds_its_server_in_the_environment() {
    let server =
        ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"]);
    let port = server.addr().port().to_string();
    let at = [("UPCASE_SERVER", "127.0.0.1"), ("UPCASE_PORT", &*port)];
    let out = run("upcase-client", &["from", "env"], &at);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"FROM ENV\n");
    // The flag wins: the environment's port has no server.
    let out = run(
        "upcase-client",
        &["--port", &port, "flag"],
        &[("UPCASE_SERVER", "127.0.0.1"), ("UPCASE_PORT", "9")],
    );
    assert_eq!(out.stdout, b"FLAG\n", "{out:?}");
    // A port written in --server wins over UPCASE_PORT, and --port over a
    // port in UPCASE_SERVER: neither is two ports that disagree.
    let named = format!("127.0.0.1:{port}");
    let out = run(
        "upcase-client",
        &["--server", &named, "named"],
        &[("UPCASE_PORT", "9")],
    );
    assert_eq!(out.stdout, b"NAMED\n", "{out:?}");
    let out = run(
        "upcase-client",
        &["--port", &port, "given"],
        &[("UPCASE_SERVER", "127.0.0.1:9")],
    );
    assert_eq!(out.stdout, b"GIVEN\n", "{out:?}");
    // Both on the command line, disagreeing: a usage error, as before.
    let out = run(
        "upcase-client",
        &["--server", &named, "--port", "9", "x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // The bench's own --server wins over UPCASE_SERVER.
    let out = run(
        "upcase-client",
        &["bench", "--server", &named, "--count", "20"],
        &[("UPCASE_SERVER", "127.0.0.1:9")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A session's timeout in the environment does not stop a bench.
    let out = run(
        "upcase-client",
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "bench",
            "--count",
            "20",
        ],
        &[("UPCASE_TIMEOUT", "2s"), ("UPCASE_RETRIES", "1")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop_with(Signal::SIGTERM);
}
