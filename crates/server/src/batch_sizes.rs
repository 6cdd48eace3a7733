//! How full the receive batches are: a histogram of the datagrams each
//! batch brought, for tuning (`--threads`, `--busy-poll`, `--gro`): batches
//! of one mean the workers wait for every datagram; full ones mean they are
//! behind. A leaf: plain integers a worker owns, counted once per batch.

use std::ops::AddAssign;

/// The upper bounds of the buckets (`le` in Prometheus' words): powers of
/// two up to a full batch of 64 messages, then GRO trains.
pub(crate) const BOUNDS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 256, 1024, 4096];

/// Datagrams per receive batch, in cumulative-free buckets: `counts[i]`
/// batches had at most `BOUNDS[i]` (and more than the bound before);
/// `over` had more than the last bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchSizes {
    pub(crate) counts: [u64; BOUNDS.len()],
    pub(crate) over: u64,
    /// Datagrams in all the batches counted.
    pub(crate) sum: u64,
}

impl BatchSizes {
    /// Counts one batch of `datagrams`; a batch that brought none (only
    /// receive errors, say) is not a batch of datagrams.
    pub(crate) fn observe(&mut self, datagrams: u64) {
        if datagrams == 0 {
            return;
        }
        self.sum += datagrams;
        match BOUNDS.iter().position(|&bound| datagrams <= bound) {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
    }

    /// How many batches were counted.
    pub(crate) fn batches(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }

    /// The cumulative counts Prometheus wants, bucket by bucket, with the
    /// `+Inf` bucket (every batch) last.
    pub(crate) fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let mut running = 0;
        BOUNDS
            .iter()
            .zip(self.counts)
            .map(move |(&bound, count)| {
                running += count;
                (Some(bound), running)
            })
            .chain(std::iter::once((None, self.batches())))
    }
}

impl AddAssign for BatchSizes {
    fn add_assign(&mut self, other: BatchSizes) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.over += other.over;
        self.sum += other.sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_batch_lands_in_the_first_bucket_that_holds_it() {
        let mut sizes = BatchSizes::default();
        for n in [0, 1, 2, 3, 64, 65, 4096, 5000] {
            sizes.observe(n);
        }
        assert_eq!(sizes.batches(), 7, "an empty batch is none");
        assert_eq!(sizes.sum, 1 + 2 + 3 + 64 + 65 + 4096 + 5000);
        assert_eq!(sizes.counts, [1, 1, 1, 0, 0, 0, 1, 1, 0, 1]);
        assert_eq!(sizes.over, 1);
        let cumulative: Vec<_> = sizes.cumulative().collect();
        assert_eq!(cumulative[0], (Some(1), 1));
        assert_eq!(cumulative[2], (Some(4), 3));
        assert_eq!(cumulative[9], (Some(4096), 6));
        assert_eq!(cumulative[10], (None, 7));
    }

    #[test]
    fn workers_add_up() {
        let mut a = BatchSizes::default();
        a.observe(1);
        let mut b = BatchSizes::default();
        b.observe(64);
        b.observe(10_000);
        a += b;
        assert_eq!((a.batches(), a.sum, a.over), (3, 10_065, 1));
    }
}
