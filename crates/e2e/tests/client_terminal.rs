//! `upcase-client` at a real terminal: a pseudo-terminal made by `script`
//! (util-linux), typed into and read from as a person would, waiting for
//! what the screen shows (never a sleep).

use std::io::Write;
use std::process::{ChildStdin, Command, ExitStatus};

use upcase_e2e::fake_server::{FakeServer, uppercasing};
use upcase_e2e::{PATIENCE, Process, ServerProcess, binary};

const PROMPT: &str = "Input lowercase sentence:";

/// A shell command line run on a pseudo-terminal of its own.
struct Terminal {
    process: Process,
    keys: Option<ChildStdin>,
}

impl Terminal {
    fn run(shell_command: &str) -> Terminal {
        let mut script = Command::new("script");
        script
            .args([
                "--quiet",
                "--flush",
                "--command",
                shell_command,
                "/dev/null",
            ])
            // A terminal the line editor knows, whatever runs the tests.
            .env("TERM", "xterm");
        let mut process = Process::spawn(&mut script)
            .piped_stdin()
            .start()
            .expect("script (util-linux) runs");
        Terminal {
            keys: process.take_stdin(),
            process,
        }
    }

    fn shown(&self) -> String {
        self.process.stdout()
    }

    /// Waits until `text` has been shown `times` times in all.
    fn wait_for(&mut self, text: &str, times: usize) {
        self.wait_until(&format!("{text:?} shown {times} times"), |screen| {
            screen.matches(text).count() >= times
        });
    }

    /// Waits until the prompt is shown after the `times`-th `reply`: the
    /// editor is reading the next line. (The editor draws its prompt again
    /// as a line is edited, so prompts cannot simply be counted.)
    fn wait_for_prompt_after(&mut self, reply: &str, times: usize) {
        self.wait_until(
            &format!("a prompt after {reply:?} {times} times"),
            |screen| {
                screen
                    .match_indices(reply)
                    .nth(times - 1)
                    .is_some_and(|(at, _)| screen[at..].contains(PROMPT))
            },
        );
    }

    fn wait_until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let waited = self.process.wait_for_stdout(PATIENCE, |screen| {
            done(&String::from_utf8_lossy(screen)).then_some(())
        });
        if let Err(err) = waited {
            panic!("not {what}: {err:#}; the screen:\n{}", self.shown());
        }
    }

    /// Types `keys` (a line, with its Enter) at the prompt, then waits for
    /// `reply` to have been shown `times` in all and the next prompt after it.
    fn enter(&mut self, keys: &str, reply: &str, times: usize) {
        self.type_keys(keys);
        self.wait_for_prompt_after(reply, times);
    }

    fn type_keys(&mut self, keys: &str) {
        let stdin = self.keys.as_mut().expect("typing");
        stdin.write_all(keys.as_bytes()).expect("type");
        stdin.flush().expect("type");
    }

    fn finish(mut self) -> (ExitStatus, String) {
        drop(self.keys.take());
        let out = self.process.finish(PATIENCE).expect("script ends");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

fn client_command(args: &[&str]) -> String {
    let mut line = format!("'{}'", binary("upcase-client").display());
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    line
}

#[test]
fn a_person_edits_lines_and_recalls_them_with_the_arrow_keys() {
    let server = FakeServer::start(uppercasing);
    let port = server.port();
    let command = client_command(&["--server", "127.0.0.1", "--port", &port, "--timeout", "10s"]);
    let mut term = Terminal::run(&format!("{command}; echo \"exit=$?\""));
    term.wait_for(PROMPT, 1);
    term.enter("first\r", "FIRST", 1);
    // Up: the line before, sent again.
    term.enter("\x1b[A\r", "FIRST", 2);
    // "ac", left, "b": the letter goes in before the cursor.
    term.enter("ac\x1b[Db\r", "ABC", 1);
    // Ctrl-D ends the session.
    term.type_keys("\x04");
    term.wait_for("exit=", 1);
    let (status, shown) = term.finish();
    assert!(status.success(), "{shown}");
    assert!(shown.contains("exit=0"), "{shown}");
    assert_eq!(server.received(), [&b"first"[..], b"first", b"abc"]);
}

#[test]
fn ctrl_c_at_the_prompt_ends_the_session_with_status_130() {
    let server = FakeServer::start(uppercasing);
    let port = server.port();
    let command = client_command(&["--server", "127.0.0.1", "--port", &port]);
    let mut term = Terminal::run(&format!("{command}; echo \"exit=$?\""));
    term.wait_for(PROMPT, 1);
    term.type_keys("half a line\x03");
    term.wait_for("exit=", 1);
    let (_, shown) = term.finish();
    assert!(shown.contains("error: interrupted (Ctrl-C)"), "{shown}");
    assert!(shown.contains("exit=130"), "{shown}");
    assert!(server.received().is_empty(), "the half line is not sent");
}

#[test]
fn over_tcp_a_person_gets_the_prompt_and_a_plain_word_when_the_server_gives_up_waiting() {
    let options = "--bind 127.0.0.1 --port 0 --transport tcp --idle-timeout 1s";
    let server = ServerProcess::start(&options.split(' ').collect::<Vec<_>>());
    let addr = server.addr().to_string();
    let command = client_command(&["--tcp", "--server", &addr]);
    // After the client, what the terminal's mode was left as.
    let mut term = Terminal::run(&format!("{command}; echo \"exit=$?\"; stty -a"));
    term.wait_for(PROMPT, 1);
    term.enter("hi\r", "HI", 1);
    // Nothing more is typed: the server closes the connection after 1 s.
    term.wait_for("(the server's idle timeout)", 1);
    term.wait_for("speed", 1);
    let (_, shown) = term.finish();
    let error = shown
        .lines()
        .find(|l| l.contains("error: "))
        .unwrap_or_else(|| panic!("no error line: {shown}"));
    assert!(
        error.contains(&format!("error: {addr} closed the connection after ")),
        "{error}"
    );
    assert!(shown.contains("exit=1"), "{shown}");
    // The terminal was given back as it was: lines edited by the terminal
    // and echoed, not the editor's raw mode.
    let modes = &shown[shown.find("speed").expect("stty ran")..];
    let words: Vec<&str> = modes.split_whitespace().collect();
    for mode in ["icanon", "echo", "icrnl", "opost"] {
        assert!(words.contains(&mode), "{mode} is off: {modes}");
    }
}
