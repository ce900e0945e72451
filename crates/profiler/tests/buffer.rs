//! The timeline stays bounded and faithful under millions of samples.

use masp_budget::Bytes;
use masp_profiler::{ConfigError, SampleBuffer};

#[test]
fn stays_bounded_after_millions_of_samples() {
    const N: u64 = 5_000_000;
    const CAP: usize = 4096;
    let mut buf = SampleBuffer::new(CAP).unwrap();
    let spike_at = 3_141_592;
    for i in 0..N {
        // A sawtooth between 100 and 199 MiB, with one spike to 10 GiB.
        let rss = if i == spike_at {
            Bytes::from_gib(10)
        } else {
            Bytes::from_mib(100 + i % 100)
        };
        buf.push(i as f64 * 0.01, rss);
        assert!(buf.buckets().len() <= CAP);
    }
    let buckets = buf.buckets();
    assert!(
        buckets.len() > CAP / 2,
        "halving keeps at least half the capacity in use"
    );
    assert_eq!(buf.n_samples(), N);
    assert_eq!(buckets.iter().map(|b| b.n_samples).sum::<u64>(), N);
    // Extremes survive every merge; the spike is in exactly one bucket.
    assert_eq!(
        buckets.iter().map(|b| b.max).max(),
        Some(Bytes::from_gib(10))
    );
    assert_eq!(
        buckets
            .iter()
            .filter(|b| b.max == Bytes::from_gib(10))
            .count(),
        1
    );
    assert_eq!(
        buckets.iter().map(|b| b.min).min(),
        Some(Bytes::from_mib(100))
    );
    // Time order and the last value are kept.
    assert!(buckets.windows(2).all(|w| w[0].t_end_s < w[1].t_start_s));
    assert_eq!(
        buckets.last().unwrap().last,
        Bytes::from_mib(100 + (N - 1) % 100)
    );
    assert_eq!(buckets[0].t_start_s, 0.0);
    // Full buckets all have the current width.
    let width = buf.samples_per_bucket();
    assert!(
        buckets[..buckets.len() - 1]
            .iter()
            .all(|b| b.n_samples == width)
    );
}

#[test]
fn rejects_unusable_capacities() {
    for cap in [0, 1, 3, 4097] {
        assert_eq!(
            SampleBuffer::new(cap).unwrap_err(),
            ConfigError::InvalidMaxBuckets { max_buckets: cap }
        );
    }
}
