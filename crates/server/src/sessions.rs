//! The proxy session table: for each proxy socket (address and port) that
//! sent a PROXY header over UDP, the client the header named, so that the
//! proxy's later datagrams from that socket, which nginx sends without a
//! header, count as the same client.
//!
//! Bounded whatever is sent: a PROXY header can come from any listed
//! address with any port, and UDP source addresses can be forged, so a
//! flood could name a new session with every datagram. The table is
//! allocated once, `capacity` entries in sets of [`WAYS`] (a set-associative
//! cache): a proxy socket hashes, with a key chosen at random per process,
//! to one set, and a new session there takes an empty slot, else one idle
//! for longer than `idle`, else the least recently seen of the set. Each
//! datagram costs one hash and a look at eight slots, never an allocation;
//! a busy session, being recent, is the last of its set to go.
//!
//! Time is passed in (nanoseconds from any fixed origin), so the table is
//! tested with a simulated clock.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::Duration;

/// Slots per set: a new session can replace any of these.
pub(crate) const WAYS: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Entry {
    proxy: SocketAddr,
    client: SocketAddr,
    /// When a datagram of the session was last seen.
    seen_ns: u64,
}

/// What the table holds and has dropped, for the metrics and the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionStats {
    /// Slots in use (some may hold sessions past their idle time, which
    /// the next session of their set replaces).
    pub(crate) remembered: u64,
    /// Slots there are.
    pub(crate) capacity: u64,
    /// Sessions replaced before their idle time to make room: more than a
    /// few means the table is too small for the proxies' traffic.
    pub(crate) evicted: u64,
}

impl std::ops::AddAssign for SessionStats {
    fn add_assign(&mut self, other: SessionStats) {
        self.remembered += other.remembered;
        self.capacity += other.capacity;
        self.evicted += other.evicted;
    }
}

/// Proxy socket to client, in a fixed number of slots.
pub(crate) struct SessionTable {
    slots: Vec<Option<Entry>>,
    sets: usize,
    idle_ns: u64,
    hasher: RandomState,
    remembered: usize,
    evicted: u64,
}

impl SessionTable {
    /// A table of at least `capacity` sessions (rounded up to whole sets),
    /// each forgotten after `idle` without a datagram; all its memory is
    /// allocated here.
    pub(crate) fn new(capacity: usize, idle: Duration) -> SessionTable {
        let sets = capacity.div_ceil(WAYS).max(1);
        SessionTable {
            slots: vec![None; sets * WAYS],
            sets,
            idle_ns: u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX),
            hasher: RandomState::new(),
            remembered: 0,
            evicted: 0,
        }
    }

    /// Remembers that `proxy` speaks for `client` from now on, in place of
    /// whatever it spoke for before.
    pub(crate) fn open(&mut self, proxy: SocketAddr, client: SocketAddr, now_ns: u64) {
        let entry = Entry {
            proxy,
            client,
            seen_ns: now_ns,
        };
        let idle_ns = self.idle_ns;
        let set = self.set_of(proxy);
        let slots = self.set_mut(set);
        if let Some(slot) = slots
            .iter_mut()
            .find(|slot| slot.is_some_and(|e| e.proxy == proxy))
        {
            *slot = Some(entry);
            return;
        }
        // An empty slot first, else the one seen longest ago; only a
        // session still within its idle time counts as evicted.
        let victim = slots
            .iter_mut()
            .min_by_key(|slot| slot.map_or(0, |e| e.seen_ns.saturating_add(1)));
        let Some(victim) = victim else {
            return;
        };
        match victim.replace(entry) {
            None => self.remembered += 1,
            Some(old) if !expired(old, now_ns, idle_ns) => self.evicted += 1,
            Some(_) => {}
        }
    }

    /// The client `proxy` speaks for, if it opened a session that has not
    /// been idle for too long; the session is seen now.
    pub(crate) fn client_of(&mut self, proxy: SocketAddr, now_ns: u64) -> Option<SocketAddr> {
        let idle_ns = self.idle_ns;
        let set = self.set_of(proxy);
        let slot = self
            .set_mut(set)
            .iter_mut()
            .find(|slot| slot.is_some_and(|e| e.proxy == proxy))?;
        let entry = slot.as_mut()?;
        if expired(*entry, now_ns, idle_ns) {
            *slot = None;
            self.remembered -= 1;
            return None;
        }
        entry.seen_ns = entry.seen_ns.max(now_ns);
        Some(entry.client)
    }

    /// Forgets `proxy`'s session: its next datagrams are its own.
    pub(crate) fn close(&mut self, proxy: SocketAddr) {
        let set = self.set_of(proxy);
        if let Some(slot) = self
            .set_mut(set)
            .iter_mut()
            .find(|slot| slot.is_some_and(|e| e.proxy == proxy))
        {
            *slot = None;
            self.remembered -= 1;
        }
    }

    pub(crate) fn stats(&self) -> SessionStats {
        SessionStats {
            remembered: self.remembered as u64,
            capacity: self.slots.len() as u64,
            evicted: self.evicted,
        }
    }

    /// The set `proxy` hashes to, spread evenly over the sets without a
    /// division (the high half of hash × sets).
    fn set_of(&self, proxy: SocketAddr) -> usize {
        let hash = self.hasher.hash_one(proxy);
        ((u128::from(hash) * self.sets as u128) >> 64) as usize
    }

    fn set_mut(&mut self, set: usize) -> &mut [Option<Entry>] {
        let start = set * WAYS;
        self.slots.get_mut(start..start + WAYS).unwrap_or_default()
    }
}

impl std::fmt::Debug for SessionTable {
    // The counts, not thousands of slots.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Whether `entry` was last seen `idle_ns` or more before `now_ns`.
fn expired(entry: Entry, now_ns: u64, idle_ns: u64) -> bool {
    now_ns.saturating_sub(entry.seen_ns) >= idle_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn port(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 100, 1], p))
    }

    fn client(n: u32) -> SocketAddr {
        SocketAddr::from((std::net::Ipv4Addr::from(n), 5000))
    }

    fn table(capacity: usize) -> SessionTable {
        SessionTable::new(capacity, Duration::from_secs(60))
    }

    #[test]
    fn a_session_names_its_client_until_replaced_or_closed() {
        let mut sessions = table(64);
        assert_eq!(sessions.client_of(port(1), 0), None);
        sessions.open(port(1), client(7), 0);
        sessions.open(port(2), client(8), 0);
        assert_eq!(sessions.client_of(port(1), SECOND), Some(client(7)));
        assert_eq!(sessions.client_of(port(2), SECOND), Some(client(8)));
        sessions.open(port(1), client(9), 2 * SECOND);
        assert_eq!(sessions.client_of(port(1), 3 * SECOND), Some(client(9)));
        assert_eq!(sessions.stats().remembered, 2, "replaced in place");
        sessions.close(port(1));
        sessions.close(port(1));
        assert_eq!(sessions.client_of(port(1), 3 * SECOND), None);
        assert_eq!(sessions.client_of(port(2), 3 * SECOND), Some(client(8)));
        assert_eq!(
            sessions.stats(),
            SessionStats {
                remembered: 1,
                capacity: 64,
                evicted: 0
            }
        );
    }

    #[test]
    fn an_idle_session_is_forgotten_and_a_busy_one_is_not() {
        let mut sessions = table(64);
        sessions.open(port(1), client(1), 0);
        sessions.open(port(2), client(2), 0);
        // Port 1 keeps sending; port 2 is silent.
        for second in 1..=120 {
            assert_eq!(
                sessions.client_of(port(1), second * SECOND),
                Some(client(1)),
                "{second}"
            );
        }
        assert_eq!(
            sessions.client_of(port(2), 59 * SECOND + 1),
            Some(client(2))
        );
        assert_eq!(
            sessions.client_of(port(2), 119 * SECOND + 2),
            None,
            "60 s after it was last seen"
        );
        assert_eq!(sessions.stats().remembered, 1);
    }

    #[test]
    fn the_capacity_is_whole_sets_and_fixed() {
        assert_eq!(table(1).stats().capacity, WAYS as u64);
        assert_eq!(table(0).stats().capacity, WAYS as u64);
        assert_eq!(table(16_384).stats().capacity, 16_384);
        assert_eq!(table(16_385).stats().capacity, 16_384 + WAYS as u64);
    }

    #[test]
    fn a_spoofed_flood_keeps_the_table_at_its_size() {
        let mut sessions = table(256);
        let slots = sessions.slots.capacity();
        for n in 0..200_000u32 {
            let proxy = SocketAddr::from((std::net::Ipv4Addr::from(n), (n % 65_536) as u16));
            sessions.open(proxy, client(n), u64::from(n));
        }
        let stats = sessions.stats();
        assert_eq!(stats.remembered, 256, "every slot used, none more");
        assert_eq!(stats.evicted, 200_000 - 256);
        assert_eq!(sessions.slots.capacity(), slots, "nothing allocated");
        assert_eq!(sessions.slots.len(), 256);
    }

    #[test]
    fn a_busy_session_keeps_its_slot_under_a_spoofed_flood() {
        let mut sessions = table(WAYS);
        sessions.open(port(0), client(0), 0);
        for n in 1..100_000u32 {
            let now = u64::from(n) * 1_000;
            sessions.open(port((n % 60_000) as u16 + 1), client(n), now);
            // The real session goes on between the spoofed ones.
            assert_eq!(sessions.client_of(port(0), now + 1), Some(client(0)), "{n}");
        }
    }

    #[test]
    fn an_expired_session_makes_room_without_an_eviction() {
        // One set: every session competes for the same eight slots.
        let mut sessions = table(WAYS);
        for p in 0..WAYS as u16 {
            sessions.open(port(p), client(u32::from(p)), 0);
        }
        sessions.open(port(100), client(100), 61 * SECOND);
        assert_eq!(sessions.stats().evicted, 0, "the one replaced had expired");
        assert_eq!(
            sessions.client_of(port(100), 61 * SECOND),
            Some(client(100))
        );
        assert_eq!(sessions.client_of(port(1), 62 * SECOND), None, "expired");
        // Within the idle time, room costs the least recently seen.
        let mut sessions = table(WAYS);
        for p in 0..WAYS as u16 {
            sessions.open(port(p), client(u32::from(p)), u64::from(p) + 1);
        }
        sessions.open(port(100), client(100), 100);
        assert_eq!(sessions.stats().evicted, 1);
        assert_eq!(sessions.client_of(port(0), 101), None, "the oldest went");
        assert!((1..WAYS as u16).all(|p| sessions.client_of(port(p), 101).is_some()));
    }
}
