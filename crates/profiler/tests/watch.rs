//! Watches alert when RSS crosses a threshold; handles work from any thread.

use std::time::Duration;

use masp_budget::Bytes;
use masp_profiler::{Event, MemoryProfiler, ProfilerConfig, ProfilerHandle};

use crate::{exclusive_memory, touched};

#[test]
fn watch_fires_when_rss_crosses_the_threshold() {
    let _exclusive = exclusive_memory();
    let profiler = MemoryProfiler::start(ProfilerConfig::default()).unwrap();
    let handle = profiler.handle();
    let now = handle.current_rss().unwrap();
    let threshold = now.saturating_add(Bytes::from_mib(64));
    let alerts = handle.watch(threshold);
    let big = touched(128 << 20);
    // Generous bound: this is a liveness check, not a latency measurement.
    let alert = alerts
        .recv_timeout(Duration::from_secs(120))
        .expect("no alert");
    assert_eq!(alert.threshold, threshold);
    assert!(alert.rss >= threshold);
    drop(big);
    let profile = profiler.stop();
    assert!(profile.sampled_peak.unwrap().rss >= threshold);
}

#[test]
fn handles_mark_from_many_threads_and_disabled_handles_do_nothing() {
    let _exclusive = exclusive_memory();
    let profiler = MemoryProfiler::start(ProfilerConfig::default()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let h = profiler.handle();
            s.spawn(move || {
                for i in 0..25 {
                    h.note(&format!("thread {t} note {i}"));
                }
            });
        }
    });
    let disabled = ProfilerHandle::disabled();
    disabled.mark(Event::load_start("nowhere"));
    assert!(disabled.watch(Bytes::new(1)).try_recv().is_err());
    let late = profiler.handle();
    let profile = profiler.stop();
    late.note("after stop: dropped");
    assert_eq!(profile.marks.len(), 100);
    assert!(profile.marks.windows(2).all(|w| w[0].t_s <= w[1].t_s));
}

#[test]
fn invalid_configs_are_refused() {
    let zero = ProfilerConfig::default().with_interval(Duration::ZERO);
    assert!(MemoryProfiler::start(zero).is_err());
    let odd = ProfilerConfig::default().with_max_buckets(7);
    let err = MemoryProfiler::start(odd).unwrap_err();
    assert!(err.to_string().contains('7'), "{err}");
}
