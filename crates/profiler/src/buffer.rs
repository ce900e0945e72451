//! A fixed-capacity RSS timeline that halves its resolution instead of growing.

use masp_budget::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Consecutive RSS samples merged into one point of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Time of the first sample, seconds since the profiler started.
    pub t_start_s: f64,
    /// Time of the last sample, seconds since the profiler started.
    pub t_end_s: f64,
    /// Smallest RSS sampled in the bucket.
    pub min: Bytes,
    /// Largest RSS sampled in the bucket.
    pub max: Bytes,
    /// The last RSS sampled in the bucket.
    pub last: Bytes,
    /// How many samples were merged.
    pub n_samples: u64,
}

impl Bucket {
    fn single(t_s: f64, rss: Bytes) -> Self {
        Bucket {
            t_start_s: t_s,
            t_end_s: t_s,
            min: rss,
            max: rss,
            last: rss,
            n_samples: 1,
        }
    }

    /// `self` followed by `later`.
    fn merged(self, later: Bucket) -> Bucket {
        Bucket {
            t_start_s: self.t_start_s,
            t_end_s: later.t_end_s,
            min: self.min.min(later.min),
            max: self.max.max(later.max),
            last: later.last,
            n_samples: self.n_samples + later.n_samples,
        }
    }
}

/// A timeline of at most `max_buckets` [`Bucket`]s, so a run of any length uses constant
/// memory.
///
/// Each bucket holds `samples_per_bucket` samples (1 at first). When all buckets are full,
/// adjacent pairs are merged (keeping min, max and last) and the bucket width doubles: a
/// 10-hour run at 10 ms (3.6 M samples) with 4096 buckets ends with 1024 samples (~10 s) per
/// bucket. `push` never allocates.
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// use masp_profiler::SampleBuffer;
///
/// let mut buf = SampleBuffer::new(4)?;
/// for i in 0..100u64 {
///     buf.push(i as f64, Bytes::new(i));
/// }
/// assert!(buf.buckets().len() <= 4);
/// assert_eq!(buf.n_samples(), 100);
/// assert_eq!(buf.buckets().last().unwrap().last, Bytes::new(99));
/// # Ok::<(), masp_profiler::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SampleBuffer {
    buckets: Vec<Bucket>,
    max_buckets: usize,
    samples_per_bucket: u64,
    n_samples: u64,
}

impl SampleBuffer {
    /// An empty timeline with room for `max_buckets` buckets.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidMaxBuckets`] unless `max_buckets` is even and at least 2.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(masp_profiler::SampleBuffer::new(3).is_err());
    /// ```
    pub fn new(max_buckets: usize) -> Result<Self, ConfigError> {
        if max_buckets < 2 || !max_buckets.is_multiple_of(2) {
            return Err(ConfigError::InvalidMaxBuckets { max_buckets });
        }
        Ok(SampleBuffer {
            buckets: Vec::with_capacity(max_buckets),
            max_buckets,
            samples_per_bucket: 1,
            n_samples: 0,
        })
    }

    /// Adds a sample taken at `t_s` seconds. Samples are expected in time order.
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::Bytes;
    /// let mut buf = masp_profiler::SampleBuffer::new(2)?;
    /// buf.push(0.0, Bytes::new(5));
    /// buf.push(0.1, Bytes::new(9));
    /// buf.push(0.2, Bytes::new(7));
    /// let b = buf.buckets()[0];
    /// assert_eq!((b.min, b.max, b.last), (Bytes::new(5), Bytes::new(9), Bytes::new(9)));
    /// # Ok::<(), masp_profiler::ConfigError>(())
    /// ```
    pub fn push(&mut self, t_s: f64, rss: Bytes) {
        self.n_samples += 1;
        let sample = Bucket::single(t_s, rss);
        if let Some(last) = self.buckets.last_mut()
            && last.n_samples < self.samples_per_bucket
        {
            *last = last.merged(sample);
            return;
        }
        if self.buckets.len() == self.max_buckets {
            self.halve();
        }
        self.buckets.push(sample);
    }

    /// Merges adjacent pairs in place; every bucket is full when this is called.
    fn halve(&mut self) {
        let half = self.buckets.len() / 2;
        for i in 0..half {
            self.buckets[i] = self.buckets[2 * i].merged(self.buckets[2 * i + 1]);
        }
        self.buckets.truncate(half);
        self.samples_per_bucket = self.samples_per_bucket.saturating_mul(2);
    }

    /// The timeline, oldest first.
    #[must_use]
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// How many samples a full bucket holds now.
    #[must_use]
    pub fn samples_per_bucket(&self) -> u64 {
        self.samples_per_bucket
    }

    /// How many samples were pushed in total.
    #[must_use]
    pub fn n_samples(&self) -> u64 {
        self.n_samples
    }

    /// The capacity given to [`SampleBuffer::new`].
    #[must_use]
    pub fn max_buckets(&self) -> usize {
        self.max_buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_keeps_extremes_and_last() {
        let mut buf = SampleBuffer::new(4).unwrap();
        let values = [5u64, 1, 9, 3, 7, 2, 8, 4, 6];
        for (i, v) in values.iter().enumerate() {
            buf.push(i as f64, Bytes::new(*v));
        }
        // 9 samples, 4 buckets: widths 1 -> 2 -> 4 after two halvings? 4 full -> halve to 2x2,
        // then 2 more buckets of 2 (= 8 samples) -> halve to 2x4, then 1 new.
        assert_eq!(buf.samples_per_bucket(), 4);
        let b = buf.buckets();
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].min.get(), b[0].max.get(), b[0].last.get()), (1, 9, 3));
        assert_eq!((b[1].min.get(), b[1].max.get(), b[1].last.get()), (2, 8, 4));
        assert_eq!((b[2].min.get(), b[2].last.get(), b[2].n_samples), (6, 6, 1));
        assert_eq!(
            (b[0].t_start_s, b[0].t_end_s, b[1].t_start_s),
            (0.0, 3.0, 4.0)
        );
    }
}
