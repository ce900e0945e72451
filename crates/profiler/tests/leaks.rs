//! Real allocation patterns are judged correctly: a deliberate leak is found and sized, a
//! clean allocate/free/trim cycle is not reported.

use masp_budget::{Bytes, trim};
use masp_profiler::{Event, LeakVerdict, MemoryProfiler, ProfilerConfig, Report};

use crate::{exclusive_memory, touched};

const MODEL: usize = 32 << 20;
const CYCLES: usize = 10;

/// `CYCLES` load → task → unload → cleanup cycles; each task leaks `leak` bytes.
fn run_cycles(leak: usize) -> Report {
    let _exclusive = exclusive_memory();
    let config = ProfilerConfig::default().with_budget_limit(Bytes::from_gib(1));
    let profiler = MemoryProfiler::start(config).unwrap();
    let h = profiler.handle();
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    for i in 0..CYCLES {
        h.mark(Event::load_start("leaky-model"));
        let model = touched(MODEL);
        h.mark(Event::load_end("leaky-model"));
        let task = format!("file-{i}.wav");
        h.mark(Event::task_start(&task));
        drop(touched(4 << 20));
        if leak > 0 {
            leaked.push(touched(leak));
        }
        h.mark(Event::task_end(&task));
        h.mark(Event::unload("leaky-model"));
        drop(model);
        let outcome = trim::release_freed_memory();
        h.mark(Event::Cleanup {
            returned: outcome.returned,
        });
    }
    let report = profiler.stop().report();
    drop(leaked);
    report
}

#[test]
fn a_deliberate_leak_is_reported_with_its_size() {
    const LEAK: u64 = 8 << 20;
    let report = run_cycles(LEAK as usize);
    let LeakVerdict::Suspected { per_cycle, cycles } = report.leak.verdict else {
        panic!("expected a leak, got {:?}\n{report}", report.leak);
    };
    assert_eq!(cycles, CYCLES);
    let error = per_cycle.get().abs_diff(LEAK) as f64 / LEAK as f64;
    assert!(
        error <= 0.2,
        "leak sized {per_cycle}, expected 8 MiB ±20%\n{report}"
    );
    let text = report.leak.verdict.to_string();
    assert!(text.starts_with("leak suspected: +") && text.ends_with("per cycle over 10 cycles"));
    // The model's own analysis agrees, and cycles are all there.
    assert!(matches!(
        report.models[0].leak.verdict,
        LeakVerdict::Suspected { .. }
    ));
    assert_eq!(report.cycles.len(), CYCLES);
}

#[test]
fn allocate_free_trim_cycles_are_not_a_leak() {
    let report = run_cycles(0);
    assert_eq!(report.leak.verdict, LeakVerdict::NoLeak, "{report}");
    assert_eq!(report.leak.verdict.to_string(), "no leak");
    assert_eq!(report.cycles.len(), CYCLES);
    // The model's 32 MiB came back every time.
    let mean = report.cleanup.mean_effectiveness.unwrap();
    assert!(mean >= 0.8, "cleanup effectiveness {mean}\n{report}");
    for cycle in &report.cycles {
        assert!(
            cycle.load_growth.get() >= (MODEL as i64) * 3 / 4,
            "{cycle:?}"
        );
    }
    // Phases attribute the model to its load and tasks.
    let model = &report.models[0];
    assert_eq!(
        (model.model.as_str(), model.n_loads),
        ("leaky-model", CYCLES)
    );
    assert!(model.peak >= Bytes::new(MODEL as u64));
}
