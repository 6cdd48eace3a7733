//! `upcase-client` at a real terminal: a pseudo-terminal made by `script`
//! (util-linux), typed into and read from as a person would, waiting for
//! what the screen shows (never a sleep).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use upcase_e2e::fake_server::{FakeServer, uppercasing};
use upcase_e2e::{PATIENCE, ServerProcess, binary, wait_with_deadline};

const PROMPT: &str = "Input lowercase sentence:";

/// A shell command line run on a pseudo-terminal of its own.
struct Terminal {
    child: Child,
    keys: Option<ChildStdin>,
    screen: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl Terminal {
    fn run(shell_command: &str) -> Terminal {
        let mut child = Command::new("script")
            .args([
                "--quiet",
                "--flush",
                "--command",
                shell_command,
                "/dev/null",
            ])
            // A terminal the line editor knows, whatever runs the tests.
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux) runs");
        let screen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let shown = Arc::clone(&screen);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(read @ 1..) = out.read(&mut buf) {
                let (bytes, changed) = &*shown;
                bytes.lock().expect("lock").extend_from_slice(&buf[..read]);
                changed.notify_all();
            }
        });
        Terminal {
            keys: child.stdin.take(),
            child,
            screen,
        }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.screen.0.lock().expect("lock")).into_owned()
    }

    /// Waits until `text` has been shown `times` times in all.
    fn wait_for(&self, text: &str, times: usize) {
        self.wait_until(&format!("{text:?} shown {times} times"), |screen| {
            screen.matches(text).count() >= times
        });
    }

    /// Waits until the prompt is shown after the `times`-th `reply`: the
    /// editor is reading the next line. (The editor draws its prompt again
    /// as a line is edited, so prompts cannot simply be counted.)
    fn wait_for_prompt_after(&self, reply: &str, times: usize) {
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

    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let (bytes, changed) = &*self.screen;
        let mut shown = bytes.lock().expect("lock");
        while !done(&String::from_utf8_lossy(&shown)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let screen = String::from_utf8_lossy(&shown).into_owned();
                // Not while holding the lock: the reader goes on.
                drop(shown);
                panic!("not {what}; the screen:\n{screen}");
            }
            shown = changed.wait_timeout(shown, left).expect("lock").0;
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
        let status = wait_with_deadline(&mut self.child, PATIENCE).expect("script ends");
        (status, self.shown())
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
