//! 1000 load/unload cycles of silero VAD in a fresh process: RSS must not drift.

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
    // The first cycles pay one-time costs (runtime globals, thread pools; ONNX Runtime and the
    // allocator warm up ~1–2 MiB once): measure from after the first ten.
    let cycle = |orch: &mut masp_orchestrator::SequentialOrchestrator| {
        orch.load_model("silero-vad").unwrap();
        assert!(orch.unload_model("silero-vad"));
    };
    for _ in 0..10 {
        cycle(&mut orch);
    }
    let start = probe::process_rss().unwrap();
    let mut checkpoints = Vec::new();
    for i in 1..=1000 {
        cycle(&mut orch);
        if i % 250 == 0 {
            checkpoints.push(probe::process_rss().unwrap().to_string());
        }
    }
    let end = probe::process_rss().unwrap();
    let drift = end.get() as i64 - start.get() as i64;
    println!(
        "1000-cycle drift: {drift:+} B ({:+.2} MiB); RSS after warm-up {start}, every 250 cycles \
         {}",
        drift as f64 / (1 << 20) as f64,
        checkpoints.join(", ")
    );
    let stats = &orch.stats()["silero-vad"];
    assert_eq!((stats.loads, stats.unloads), (1010, 1010));
    assert_eq!(stats.leaks_suspected, 0, "{stats:?}");
    assert!(drift < 4 << 20, "RSS drifted {drift} B over 1000 cycles");
}
