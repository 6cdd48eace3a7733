//! The PROXY protocol's rule for UDP (`--proxy-protocol-from`): what a
//! datagram from a listed proxy is, and whom it counts for.
//!
//! For a datagram from a listed peer, in this order:
//! - it starts with a valid header that names a client: the client is that
//!   one, and the proxy's socket (address and port) opens a session of that
//!   client; the payload follows the header;
//! - it starts with a valid header that names no one (v2 `LOCAL`, v1
//!   `UNKNOWN`): the datagram is the proxy's own, and the socket's session,
//!   if any, is closed;
//! - a header with nothing after it (the separate-datagram style) does the
//!   same and leaves nothing to answer;
//! - no header: the client of the socket's session, if it has one that has
//!   not gone idle (nginx sends the header on a session's first datagram
//!   only), else the proxy's own;
//! - it starts like a header (`PROXY ` or v2's signature) and is none:
//!   malformed, not answered.
//!
//! Peers that are not listed are never read for a header: whatever they
//! send is payload. Parsing is proto's; the sessions are `sessions`'s.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use upcase_proto::proxy::{self, Malformed, Parsed};

use crate::config::ProxySources;
use crate::sessions::{SessionStats, SessionTable};

/// One socket's sessions, shared by the workers that receive on it: one
/// worker when the server binds (SO_REUSEPORT steers a proxy socket's
/// datagrams, one 4-tuple, always to the same socket), several on an
/// inherited socket, where any of them may receive the next datagram.
pub(crate) type SharedSessions = Arc<Mutex<SessionTable>>;

/// The sessions' totals over every socket's table.
pub(crate) fn session_stats(tables: &[SharedSessions]) -> SessionStats {
    let mut total = SessionStats::default();
    for table in tables {
        total += table.lock().unwrap_or_else(PoisonError::into_inner).stats();
    }
    total
}

/// What one worker needs to apply the rule: the listed peers and its
/// socket's sessions.
#[derive(Clone)]
pub(crate) struct Proxies {
    sources: Arc<ProxySources>,
    sessions: SharedSessions,
    /// The sessions' clock starts here.
    epoch: Instant,
}

/// What a datagram from a listed proxy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// For `client`, named by its header or by its session's; the payload
    /// starts at `payload_at`.
    Client {
        client: SocketAddr,
        payload_at: usize,
    },
    /// The proxy's own: no header and no session, or a header that names
    /// no one; the payload starts at `payload_at`.
    ProxyOwn { payload_at: usize },
    /// A header and nothing else: the session is opened (for `client`) or
    /// closed (`None`), and there is nothing to answer.
    HeaderOnly { client: Option<SocketAddr> },
    /// It starts like a header and is none.
    Malformed(Malformed),
}

impl Proxies {
    pub(crate) fn new(
        sources: Arc<ProxySources>,
        sessions: SharedSessions,
        epoch: Instant,
    ) -> Self {
        Proxies {
            sources,
            sessions,
            epoch,
        }
    }

    /// Whether `peer` is a listed proxy, whose datagrams are read for a
    /// header.
    pub(crate) fn lists(&self, peer: SocketAddr) -> bool {
        self.sources.lists(peer.ip())
    }

    /// What `datagram`, from the listed proxy `peer`, is at `now`; opens,
    /// closes or refreshes the session of `peer` as the rule says.
    pub(crate) fn arrival(&self, datagram: &[u8], peer: SocketAddr, now: Instant) -> Arrival {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let header = match proxy::parse(datagram) {
            Parsed::Header(header) => header,
            Parsed::Malformed(why) => return Arrival::Malformed(why),
            Parsed::NoHeader => {
                return match self.sessions().client_of(peer, now_ns) {
                    Some(client) => Arrival::Client {
                        client,
                        payload_at: 0,
                    },
                    None => Arrival::ProxyOwn { payload_at: 0 },
                };
            }
        };
        let client = header.source();
        match client {
            Some(client) => self.sessions().open(peer, client, now_ns),
            None => self.sessions().close(peer),
        }
        match client {
            _ if header.len >= datagram.len() => Arrival::HeaderOnly { client },
            Some(client) => Arrival::Client {
                client,
                payload_at: header.len,
            },
            None => Arrival::ProxyOwn {
                payload_at: header.len,
            },
        }
    }

    /// This socket's table, locked for one look-up or change.
    fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        // A panic elsewhere while holding the lock leaves a table that is
        // still consistent: every change is one slot's.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use upcase_proto::proxy::{Addresses, Transport, encode_v1, encode_v2};

    use super::*;
    use crate::config::Cidr;

    const NGINX: &[u8] = b"PROXY TCP4 10.0.1.12 10.0.100.100 42631 12000\r\n";

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn proxies(idle: Duration) -> (Proxies, Instant) {
        let sources = ProxySources::new(vec![
            Cidr::new("192.0.2.0".parse().expect("ip"), 24).expect("block"),
        ])
        .expect("one");
        let epoch = Instant::now();
        let sessions = Arc::new(Mutex::new(SessionTable::new(64, idle)));
        (Proxies::new(Arc::new(sources), sessions, epoch), epoch)
    }

    #[test]
    fn only_listed_peers_are_proxies() {
        let (proxies, _) = proxies(Duration::from_secs(60));
        assert!(proxies.lists(addr("192.0.2.9:4000")));
        assert!(proxies.lists(addr("[::ffff:192.0.2.9]:4000")));
        assert!(!proxies.lists(addr("192.0.3.9:4000")));
        assert!(!proxies.lists(addr("[::1]:4000")));
    }

    #[test]
    fn nginx_s_first_datagram_opens_the_session_its_later_ones_use() {
        let (proxies, t0) = proxies(Duration::from_secs(60));
        let nginx = addr("192.0.2.1:40000");
        let first = [NGINX, b"hello"].concat();
        let client = addr("10.0.1.12:42631");
        assert_eq!(
            proxies.arrival(&first, nginx, t0),
            Arrival::Client {
                client,
                payload_at: NGINX.len()
            }
        );
        let later = Arrival::Client {
            client,
            payload_at: 0,
        };
        assert_eq!(proxies.arrival(b"world", nginx, t0), later);
        assert_eq!(
            proxies.arrival(b"again", nginx, t0 + Duration::from_secs(59)),
            later,
            "within the idle time"
        );
        assert_eq!(
            proxies.arrival(b"PROXY", nginx, t0 + Duration::from_secs(118)),
            later,
            "seen 59 s ago; PROXY without its space is payload"
        );
        // Another socket of the same proxy is another session.
        let other = addr("192.0.2.1:40001");
        assert_eq!(
            proxies.arrival(b"x", other, t0),
            Arrival::ProxyOwn { payload_at: 0 }
        );
        assert_eq!(
            proxies.arrival(b"late", nginx, t0 + Duration::from_secs(178)),
            Arrival::ProxyOwn { payload_at: 0 },
            "idle for 60 s: forgotten"
        );
    }

    #[test]
    fn a_header_alone_opens_a_session_and_leaves_nothing_to_answer() {
        let (proxies, t0) = proxies(Duration::from_secs(60));
        let spectrum = addr("192.0.2.2:5000");
        let client = addr("[2001:db8::5]:443");
        let header = encode_v2(
            Transport::Datagram,
            Some(Addresses {
                source: client,
                destination: addr("[2001:db8::1]:12000"),
            }),
            &[(0x04, b"tlv")],
        )
        .expect("fits");
        assert_eq!(
            proxies.arrival(&header, spectrum, t0),
            Arrival::HeaderOnly {
                client: Some(client)
            }
        );
        assert_eq!(
            proxies.arrival(b"query", spectrum, t0),
            Arrival::Client {
                client,
                payload_at: 0
            }
        );
    }

    #[test]
    fn a_header_naming_no_one_closes_the_session() {
        let (proxies, t0) = proxies(Duration::from_secs(60));
        let peer = addr("192.0.2.3:6000");
        proxies.arrival(NGINX, peer, t0);
        let unknown = [encode_v1(None), b"health".to_vec()].concat();
        assert_eq!(
            proxies.arrival(&unknown, peer, t0),
            Arrival::ProxyOwn {
                payload_at: b"PROXY UNKNOWN\r\n".len()
            }
        );
        assert_eq!(
            proxies.arrival(b"after", peer, t0),
            Arrival::ProxyOwn { payload_at: 0 }
        );
        let local = encode_v2(Transport::Unspecified, None, &[]).expect("fits");
        assert_eq!(
            proxies.arrival(&local, peer, t0),
            Arrival::HeaderOnly { client: None }
        );
    }

    #[test]
    fn a_malformed_header_is_dropped_and_leaves_the_session_alone() {
        let (proxies, t0) = proxies(Duration::from_secs(60));
        let peer = addr("192.0.2.4:7000");
        proxies.arrival(NGINX, peer, t0);
        assert_eq!(
            proxies.arrival(b"PROXY TCP4 10.0.1.12\r\nx", peer, t0),
            Arrival::Malformed(Malformed::V1Fields)
        );
        assert!(matches!(
            proxies.arrival(&upcase_proto::proxy::V2_SIGNATURE[..], peer, t0),
            Arrival::Malformed(Malformed::V2Truncated { .. })
        ));
        assert_eq!(
            proxies.arrival(b"still", peer, t0),
            Arrival::Client {
                client: addr("10.0.1.12:42631"),
                payload_at: 0
            }
        );
    }

    #[test]
    fn the_stats_add_up_over_every_socket() {
        let (proxies, t0) = proxies(Duration::from_secs(60));
        proxies.arrival(NGINX, addr("192.0.2.1:1"), t0);
        proxies.arrival(NGINX, addr("192.0.2.1:2"), t0);
        let other = Arc::new(Mutex::new(SessionTable::new(8, Duration::from_secs(1))));
        let stats = session_stats(&[Arc::clone(&proxies.sessions), other]);
        assert_eq!(
            stats,
            SessionStats {
                remembered: 2,
                capacity: 72,
                evicted: 0
            }
        );
    }
}
