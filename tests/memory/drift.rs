//! 1000 load/unload cycles of silero VAD in a fresh process: RSS within 2 MiB of the first
//! baseline after 100 cycles; after 1000, anonymous RSS within 2 MiB and total RSS within 4 MiB.

use masp_budget::{Bytes, probe};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::OrchestratorConfig;

use crate::common::orchestrator;
use crate::fresh::in_fresh_process_with;

#[test]
fn memory_1000_silero_cycles_do_not_drift() {
    // The body runs on libtest's worker thread, whose allocations live in a glibc thread
    // arena: there a freed ~4 MiB block is sometimes still resident when RSS is read, and the
    // figure swings by that much between cycles (seen: 34.2 ↔ 38.4 MiB). masp's orchestrator
    // loads and unloads on the main thread, in the main arena, where `malloc_trim` returns the
    // top of the heap too. One arena puts this thread where the orchestrator really runs.
    if !in_fresh_process_with(
        "drift::memory_1000_silero_cycles_do_not_drift",
        &[("MALLOC_ARENA_MAX", "1")],
    ) {
        return;
    }
    // No profiler here: its marks (four per cycle) are the one thing that legitimately grows.
    // The model suite's leak fit over these cycles is `model_tests`' job; this is the raw figure.
    let mut orch = orchestrator(
        Registry::builtin(),
        Bytes::from_gib(1),
        OrchestratorConfig::default(),
    );
    // The first cycle pays one-time costs (ONNX Runtime's globals, thread pools: ~10 MiB that
    // stay for the life of the process): the baseline is the RSS after it.
    let cycle = |orch: &mut masp_orchestrator::SequentialOrchestrator| {
        orch.load_model("silero-vad").unwrap();
        assert!(orch.unload_model("silero-vad"));
    };
    cycle(&mut orch);
    let start = probe::process_rss().unwrap();
    let anon_start = probe::process_anon_rss().unwrap_or(start);
    let (mut after_100, mut anon_100) = (start, anon_start);
    let mut checkpoints = Vec::new();
    for i in 1..=1000 {
        cycle(&mut orch);
        if i == 100 {
            after_100 = probe::process_rss().unwrap();
            anon_100 = probe::process_anon_rss().unwrap_or(after_100);
        }
        if i % 250 == 0 {
            checkpoints.push(probe::process_rss().unwrap().to_string());
        }
    }
    let end = probe::process_rss().unwrap();
    let anon_end = probe::process_anon_rss().unwrap_or(end);
    let drift = |from: Bytes, to: Bytes| to.get() as i64 - from.get() as i64;
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    println!(
        "cycle drift from the first baseline ({start}, of which {anon_start} anonymous): RSS \
         {:+.2} MiB after 100 cycles ({:+.2} MiB anonymous), {:+.2} MiB after 1000 ({:+.2} MiB \
         anonymous); RSS every 250 cycles {}",
        mib(drift(start, after_100)),
        mib(drift(anon_start, anon_100)),
        mib(drift(start, end)),
        mib(drift(anon_start, anon_end)),
        checkpoints.join(", ")
    );
    let stats = &orch.stats()["silero-vad"];
    assert_eq!((stats.loads, stats.unloads), (1001, 1001));
    assert_eq!(stats.leaks_suspected, 0, "{stats:?}");
    // The orchestrator issue's bound: RSS within 2 MiB of the first baseline after 100 cycles
    // (measured +0.57 MiB). Over 1000, pages of libonnxruntime.so that rarely used code paths
    // touch are faulted in once (~0.7 MiB, file-backed and reclaimable, not held memory), so
    // total RSS gets 4 MiB there — still a leak of 4 KiB per cycle would fail — and the memory
    // the process holds (anonymous RSS) keeps the 2 MiB.
    let (d100, d1000) = (drift(start, after_100), drift(start, end));
    let anon_d1000 = drift(anon_start, anon_end);
    assert!(d100 < 2 << 20, "RSS drifted {d100} B over 100 cycles");
    assert!(
        anon_d1000 < 2 << 20,
        "anonymous RSS drifted {anon_d1000} B over 1000 cycles"
    );
    assert!(d1000 < 4 << 20, "RSS drifted {d1000} B over 1000 cycles");
}
