//! Per-source reply rate limiting, in the spirit of DNS response rate
//! limiting: at most `rate` replies per second to one source, with a burst of
//! one second's worth, in a table whose size is fixed in advance.
//!
//! Each source costs one slot holding a GCRA (generic cell rate algorithm)
//! timestamp, which is a token bucket stored as a single number: the time at
//! which the source's bucket will be full again. The table keeps the most
//! recently seen sources; when it is full the least recently seen one is
//! evicted, so a flood from millions of spoofed addresses reuses the same
//! slots instead of growing memory, and a busy real sender, being recent,
//! keeps its slot.
//!
//! Time is passed in by the caller (nanoseconds from any fixed origin), so
//! the limiter does no I/O and is tested with a simulated clock.

use std::collections::HashMap;
use std::hash::Hash;

const NONE: u32 = u32::MAX;

struct Slot<K> {
    key: K,
    /// Theoretical arrival time: when this source's bucket is full again.
    tat: u64,
    newer: u32,
    older: u32,
}

/// A token bucket per source key, in a least-recently-used table.
pub struct RateLimiter<K> {
    interval_ns: u64,
    tolerance_ns: u64,
    capacity: usize,
    index: HashMap<K, u32>,
    slots: Vec<Slot<K>>,
    newest: u32,
    oldest: u32,
    evictions: u64,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// At most `rate` replies per second per source (a burst of `rate` at
    /// once), remembering at most `capacity` sources.
    ///
    /// # Panics
    /// If `rate` or `capacity` is zero, or `capacity` does not fit in `u32`.
    pub fn new(rate: u32, capacity: usize) -> Self {
        assert!(
            rate > 0 && capacity > 0 && capacity < NONE as usize,
            "rate and capacity must be positive"
        );
        let interval_ns = 1_000_000_000 / u64::from(rate);
        Self {
            interval_ns,
            tolerance_ns: interval_ns * (u64::from(rate) - 1),
            capacity,
            index: HashMap::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            newest: NONE,
            oldest: NONE,
            evictions: 0,
        }
    }

    /// Whether `key` may have a reply at time `now_ns`; if so, it is charged.
    pub fn allow(&mut self, key: K, now_ns: u64) -> bool {
        let slot = match self.index.get(&key) {
            Some(&i) => {
                self.touch(i);
                i
            }
            None => self.insert(key, now_ns),
        };
        let entry = &mut self.slots[slot as usize];
        let tat = entry.tat.max(now_ns);
        if tat - now_ns > self.tolerance_ns {
            return false;
        }
        entry.tat = tat + self.interval_ns;
        true
    }

    /// How many sources are remembered now (never more than the capacity).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many sources were forgotten to make room for new ones.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn insert(&mut self, key: K, now_ns: u64) -> u32 {
        let slot = if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                key,
                tat: now_ns,
                newer: NONE,
                older: NONE,
            });
            (self.slots.len() - 1) as u32
        } else {
            let victim = self.oldest;
            self.unlink(victim);
            let old = std::mem::replace(&mut self.slots[victim as usize].key, key);
            self.index.remove(&old);
            self.slots[victim as usize].tat = now_ns;
            self.evictions += 1;
            victim
        };
        self.index.insert(key, slot);
        self.push_newest(slot);
        slot
    }

    fn touch(&mut self, slot: u32) {
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (newer, older) = {
            let s = &self.slots[slot as usize];
            (s.newer, s.older)
        };
        match newer {
            NONE => self.newest = older,
            n => self.slots[n as usize].older = older,
        }
        match older {
            NONE => self.oldest = newer,
            o => self.slots[o as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let old_newest = self.newest;
        {
            let s = &mut self.slots[slot as usize];
            s.newer = NONE;
            s.older = old_newest;
        }
        match old_newest {
            NONE => self.oldest = slot,
            n => self.slots[n as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_source_gets_its_rate_and_a_burst_of_one_second() {
        let mut rl = RateLimiter::new(10, 100);
        let allowed = (0..100).filter(|_| rl.allow(1u32, 0)).count();
        assert_eq!(allowed, 10, "burst");
        assert!(
            !rl.allow(1, SECOND / 20),
            "half an interval later: still empty"
        );
        assert!(rl.allow(1, SECOND / 10), "one interval later: one token");
        // Over 10 s of constant pressure, 10/s plus the initial burst.
        let mut rl = RateLimiter::new(10, 100);
        let allowed = (0..10_000u64)
            .filter(|i| rl.allow(7u32, i * SECOND / 1000))
            .count();
        assert!((100..=110).contains(&allowed), "allowed {allowed}");
    }

    #[test]
    fn sources_are_limited_separately() {
        let mut rl = RateLimiter::new(5, 100);
        for _ in 0..50 {
            rl.allow(1u32, 0);
        }
        assert_eq!(
            (0..5).filter(|_| rl.allow(2, 0)).count(),
            5,
            "a polite source is still served"
        );
        assert!(!rl.allow(1, 0));
    }

    #[test]
    fn the_table_never_grows_past_its_capacity() {
        let mut rl = RateLimiter::new(1, 64);
        for ip in 0..1_000_000u32 {
            assert!(
                rl.allow(ip, u64::from(ip)),
                "a new source always gets its first reply"
            );
        }
        assert_eq!(rl.len(), 64);
        assert_eq!(rl.index.len(), 64);
        assert_eq!(rl.evictions(), 1_000_000 - 64);
    }

    #[test]
    fn a_recent_heavy_sender_keeps_its_slot_under_a_spoofed_flood() {
        let mut rl = RateLimiter::new(2, 8);
        assert!(rl.allow(u32::MAX, 0));
        assert!(rl.allow(u32::MAX, 0));
        for ip in 0..1000u32 {
            rl.allow(ip, 1);
            // The heavy sender keeps sending between spoofed packets, so it stays recent
            // and its empty bucket is not reset by eviction.
            assert!(
                !rl.allow(u32::MAX, 1),
                "heavy sender refilled after spoofed source {ip}"
            );
        }
    }

    #[test]
    fn least_recently_seen_is_evicted_first() {
        let mut rl = RateLimiter::new(1, 3);
        rl.allow(1u32, 0);
        rl.allow(2, 0);
        rl.allow(3, 0);
        rl.allow(1, 0); // 1 is now the most recent; 2 is the oldest
        rl.allow(4, 0); // evicts 2
        assert!(
            rl.index.contains_key(&1) && rl.index.contains_key(&3) && rl.index.contains_key(&4)
        );
        assert!(!rl.index.contains_key(&2));
        assert!(!rl.allow(1, 0), "1 kept its spent bucket");
        assert!(rl.allow(2, 0), "2 comes back with a fresh bucket");
    }
}
