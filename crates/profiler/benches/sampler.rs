//! Cost of one RSS sample, and the sampler thread's CPU overhead at the default 10 ms interval.
//!
//! `cargo bench -p masp-profiler --bench sampler`. The overhead part prints the sampler
//! thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`) as a percentage of one core over a few
//! seconds of wall time; the target is under 1%.

use std::hint::black_box;
use std::io::Read;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use masp_budget::probe;
use masp_profiler::{MemoryProfiler, ProfilerConfig, SampleBuffer};

fn sample_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("rss_sample");
    group.bench_function("probe::process_rss (open+read statm)", |b| {
        b.iter(|| black_box(probe::process_rss()));
    });
    if let Some(reader) = probe::RssReader::new() {
        group.bench_function(
            "probe::RssReader::read (pread statm, the sampler's path)",
            |b| {
                b.iter(|| black_box(reader.read()));
            },
        );
    }
    // Baseline in the same run: reading VmRSS the textbook way, from /proc/self/status.
    group.bench_function("read /proc/self/status (baseline)", |b| {
        let mut buf = [0u8; 4096];
        b.iter(|| {
            let mut f = std::fs::File::open("/proc/self/status").ok();
            black_box(f.as_mut().map(|f| f.read(&mut buf)))
        });
    });
    group.bench_function("SampleBuffer::push", |b| {
        let mut buf = SampleBuffer::new(4096).ok();
        let mut t = 0.0;
        b.iter(|| {
            t += 0.01;
            if let Some(buf) = buf.as_mut() {
                buf.push(t, masp_budget::Bytes::new(black_box(1 << 30)));
            }
        });
    });
    group.finish();
}

/// Runs the real sampler for a few seconds and reports its CPU time per wall time.
fn sampler_overhead() {
    const RUN: Duration = Duration::from_secs(5);
    for interval_ms in [10u64, 1] {
        let config = ProfilerConfig::default().with_interval(Duration::from_millis(interval_ms));
        let Ok(profiler) = MemoryProfiler::start(config) else {
            eprintln!("sampler overhead: profiler unavailable on this platform");
            return;
        };
        std::thread::sleep(RUN);
        let profile = profiler.stop();
        match (profile.sampler_cpu_time(), profile.sampler_overhead_pct()) {
            (Some(cpu), Some(pct)) => println!(
                "sampler_overhead/interval_{interval_ms}ms: {pct:.3}% of one core \
                 ({cpu:?} CPU over {:.2} s, {} samples, {:.1} us CPU per sample)",
                profile.duration_s,
                profile.n_samples,
                cpu.as_secs_f64() * 1e6 / profile.n_samples.max(1) as f64
            ),
            _ => println!("sampler_overhead: thread CPU time not measurable here"),
        }
    }
}

criterion_group!(benches, sample_cost);

fn main() {
    benches();
    sampler_overhead();
    Criterion::default().configure_from_args().final_summary();
}
