//! Scraping a metrics endpoint as Prometheus does, and reading what it
//! said: a blocking HTTP/1.1 exchange bounded by [`PATIENCE`], and the
//! samples of the text format by series.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::PATIENCE;

/// An HTTP response, read to the end of the connection.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line and the headers.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends `request` as it is to `addr` and reads the response; panics (for
/// tests) if there is none within [`PATIENCE`].
pub fn http_request(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect to the metrics");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(request).expect("send the request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the response");
    let text = String::from_utf8(bytes).expect("a text response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET path` on `addr`.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n").as_bytes(),
    )
}

/// One scrape's samples, by series as written (`name{label="v"}`).
#[derive(Clone, Debug)]
pub struct Scrape {
    pub text: String,
}

impl Scrape {
    /// `GET /metrics` on `addr`; panics unless it is a 200.
    pub fn of(addr: SocketAddr) -> Scrape {
        let response = http_get(addr, "/metrics");
        assert_eq!(response.status, 200, "{}", response.head);
        Scrape {
            text: response.body,
        }
    }

    /// The value of `series`, if it was exposed.
    pub fn value(&self, series: &str) -> Option<u64> {
        self.text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
    }

    /// The value of `series`; panics, with the scrape, if it is missing.
    pub fn get(&self, series: &str) -> u64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no {series} in the scrape:\n{}", self.text))
    }
    /// Fails the test unless `promtool check metrics` (Debian's
    /// prometheus) accepts the scrape.
    pub fn assert_promtool_accepts(&self) {
        let mut promtool = crate::tool("promtool", "prometheus");
        promtool.args(["check", "metrics"]);
        let out = crate::run_with_input(&mut promtool, self.text.as_bytes());
        assert!(
            out.status.success(),
            "promtool check metrics refused the scrape ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.text
        );
    }
}
