//! Live counters: each UDP worker publishes its counts into a block of its
//! own once per batch, and any other thread can read them at any time (the
//! report on SIGUSR1, the metrics endpoint).
//!
//! One writer per block, so publishing is plain stores, never an atomic
//! read-modify-write, and never per datagram. A reader sums the blocks of
//! every worker. Each block sits on cache lines of its own, so one worker's
//! stores never slow down another's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch_sizes::{BOUNDS, BatchSizes};
use crate::counters::Counters;

/// The counts one worker last published, readable from any thread.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LiveStats {
    received: AtomicU64,
    replied: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    invalid_utf8: AtomicU64,
    dropped_too_large: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
    dropped_rate_limited: AtomicU64,
    dropped_ratio: AtomicU64,
    proxy_header_only: AtomicU64,
    proxy_malformed: AtomicU64,
    proxy_attributed: AtomicU64,
    proxy_unattributed: AtomicU64,
    batch_counts: [AtomicU64; BOUNDS.len()],
    batch_over: AtomicU64,
    batch_sum: AtomicU64,
}

/// The one handle that may write a [`LiveStats`]: owned by its worker, and
/// not `Clone`, so that each block has a single writer.
#[derive(Debug)]
pub(crate) struct Publisher(Arc<LiveStats>);

/// A new block: its writer for a worker, and a reader to share.
pub(crate) fn block() -> (Publisher, Arc<LiveStats>) {
    let stats = Arc::new(LiveStats::default());
    (Publisher(Arc::clone(&stats)), stats)
}

impl Publisher {
    /// Publishes `counters`, the worker's counts so far.
    pub(crate) fn publish(&self, counters: &Counters) {
        let stats = &*self.0;
        let set = |field: &AtomicU64, value| field.store(value, Ordering::Relaxed);
        set(&stats.replied, counters.replied);
        set(&stats.bytes_in, counters.bytes_in);
        set(&stats.bytes_out, counters.bytes_out);
        set(&stats.invalid_utf8, counters.invalid_utf8);
        set(&stats.dropped_too_large, counters.dropped_too_large);
        set(&stats.send_errors, counters.send_errors);
        set(&stats.recv_errors, counters.recv_errors);
        set(&stats.dropped_rate_limited, counters.dropped_rate_limited);
        set(&stats.dropped_ratio, counters.dropped_ratio);
        set(&stats.proxy_header_only, counters.proxy_header_only);
        set(&stats.proxy_malformed, counters.proxy_malformed);
        set(&stats.proxy_attributed, counters.proxy_attributed);
        set(&stats.proxy_unattributed, counters.proxy_unattributed);
        for (field, &count) in stats.batch_counts.iter().zip(&counters.batches.counts) {
            set(field, count);
        }
        set(&stats.batch_over, counters.batches.over);
        set(&stats.batch_sum, counters.batches.sum);
        // Last, and released: a reader that sees this `received` sees every
        // other counter of the same publish (or of a later one).
        stats.received.store(counters.received, Ordering::Release);
    }
}

impl LiveStats {
    /// The counts last published. Each is exact as of its publish; a reader
    /// racing a publish may get some counters of the next batch, never of
    /// an earlier one than `received`'s.
    pub(crate) fn snapshot(&self) -> Counters {
        let received = self.received.load(Ordering::Acquire);
        let get = |field: &AtomicU64| field.load(Ordering::Relaxed);
        Counters {
            received,
            replied: get(&self.replied),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            invalid_utf8: get(&self.invalid_utf8),
            dropped_too_large: get(&self.dropped_too_large),
            send_errors: get(&self.send_errors),
            recv_errors: get(&self.recv_errors),
            dropped_rate_limited: get(&self.dropped_rate_limited),
            dropped_ratio: get(&self.dropped_ratio),
            proxy_header_only: get(&self.proxy_header_only),
            proxy_malformed: get(&self.proxy_malformed),
            proxy_attributed: get(&self.proxy_attributed),
            proxy_unattributed: get(&self.proxy_unattributed),
            batches: BatchSizes {
                counts: self.batch_counts.each_ref().map(get),
                over: get(&self.batch_over),
                sum: get(&self.batch_sum),
            },
        }
    }
}

/// The counts of every worker, added up.
pub(crate) fn total(blocks: &[Arc<LiveStats>]) -> Counters {
    blocks.iter().map(|block| block.snapshot()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(n: u64) -> Counters {
        Counters {
            received: n,
            replied: n + 1,
            bytes_in: n + 2,
            bytes_out: n + 3,
            invalid_utf8: n + 4,
            dropped_too_large: n + 5,
            send_errors: n + 6,
            recv_errors: n + 7,
            dropped_rate_limited: n + 8,
            dropped_ratio: n + 9,
            proxy_header_only: n + 13,
            proxy_malformed: n + 14,
            proxy_attributed: n + 15,
            proxy_unattributed: n + 16,
            batches: BatchSizes {
                counts: [n + 10; BOUNDS.len()],
                over: n + 11,
                sum: n + 12,
            },
        }
    }

    #[test]
    fn a_reader_sees_every_counter_published() {
        let (publisher, stats) = block();
        assert_eq!(stats.snapshot(), Counters::default());
        publisher.publish(&counters(10));
        assert_eq!(stats.snapshot(), counters(10));
        publisher.publish(&counters(20));
        assert_eq!(stats.snapshot(), counters(20));
    }

    #[test]
    fn the_blocks_of_every_worker_add_up() {
        let (a, a_stats) = block();
        let (b, b_stats) = block();
        a.publish(&counters(1));
        b.publish(&counters(100));
        let total = total(&[a_stats, b_stats]);
        assert_eq!(total, [counters(1), counters(100)].into_iter().sum());
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<LiveStats>(), 128);
        assert!(std::mem::size_of::<LiveStats>().is_multiple_of(128));
    }

    #[test]
    fn a_reader_never_sees_received_ahead_of_what_it_counts() {
        // A writer publishing ever larger counts, where everything received
        // is replied; a reader must never find more received than replied.
        let (publisher, stats) = block();
        std::thread::scope(|s| {
            s.spawn(move || {
                for n in 1..=20_000 {
                    publisher.publish(&Counters {
                        received: n,
                        replied: n,
                        ..Counters::default()
                    });
                }
            });
            for _ in 0..20_000 {
                let seen = stats.snapshot();
                assert!(seen.replied >= seen.received, "{seen:?}");
            }
        });
        assert_eq!(stats.snapshot().received, 20_000);
    }
}
