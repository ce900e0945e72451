//! 1000 load/unload cycles of silero VAD in a fresh process: RSS must not drift (within 2 MiB of
//! the first baseline after 100 cycles, 4 MiB after 1000).

use masp_budget::{Bytes, probe};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::OrchestratorConfig;

use crate::common::orchestrator;
use crate::fresh::in_fresh_process;

#[test]
fn memory_1000_silero_cycles_do_not_drift() {
    if !in_fresh_process("drift::memory_1000_silero_cycles_do_not_drift") {
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
    let mut after_100 = start;
    let mut checkpoints = Vec::new();
    for i in 1..=1000 {
        cycle(&mut orch);
        if i == 100 {
            after_100 = probe::process_rss().unwrap();
        }
        if i % 250 == 0 {
            checkpoints.push(probe::process_rss().unwrap().to_string());
        }
    }
    let end = probe::process_rss().unwrap();
    let drift = |to: Bytes| to.get() as i64 - start.get() as i64;
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    println!(
        "cycle drift from the first baseline ({start}): {:+.2} MiB after 100 cycles, {:+.2} MiB \
         after 1000; RSS every 250 cycles {}",
        mib(drift(after_100)),
        mib(drift(end)),
        checkpoints.join(", ")
    );
    let stats = &orch.stats()["silero-vad"];
    assert_eq!((stats.loads, stats.unloads), (1001, 1001));
    assert_eq!(stats.leaks_suspected, 0, "{stats:?}");
    // The orchestrator issue's bound: within 2 MiB of the first baseline after 100 cycles. Over
    // 1000, the allocator may settle once more (~1 MiB seen here): 4 MiB still catches a leak of
    // 4 KiB per cycle.
    let (d100, d1000) = (drift(after_100), drift(end));
    assert!(d100 < 2 << 20, "RSS drifted {d100} B over 100 cycles");
    assert!(d1000 < 4 << 20, "RSS drifted {d1000} B over 1000 cycles");
}
