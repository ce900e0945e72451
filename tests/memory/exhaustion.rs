//! Resource exhaustion: another process takes the machine's memory while masp wants to load a
//! model. The load must wait a bounded time, fail with `SystemMemoryLow` naming the figures, and
//! succeed once the other process is gone; the next task then runs normally and memory returns to
//! its baseline.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use masp_budget::{Budget, BudgetConfig, Bytes, probe};
use masp_model_registry::manifest::Registry;
use masp_models::vad::VadParams;
use masp_orchestrator::task::TaskParams;
use masp_orchestrator::{AudioTask, Error, OrchestratorConfig, SequentialOrchestrator};

use crate::common::{GIB, MIB};
use crate::fresh::{role, spawn_role};

const NAME: &str =
    "exhaustion::memory_another_process_taking_memory_fails_the_load_then_it_recovers";
/// What the other process takes; the budget leaves masp 3 GiB of the machine's free memory.
const HOG_BYTES: usize = 4 << 30;

/// The other process: take `HOG_BYTES`, touch every page so it is resident, say so, and hold
/// it until the parent closes stdin (or kills us).
fn hog() {
    let mut memory = vec![0u8; HOG_BYTES];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    println!(
        "hog ready: {} MiB resident",
        probe::process_rss().unwrap().get() >> 20
    );
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::hint::black_box(&memory);
}

fn vad_task() -> AudioTask {
    AudioTask {
        label: "vad two_voices.wav".into(),
        model: "silero-vad".into(),
        input: masp_testkit::fixtures::speech_sample().unwrap(),
        params: TaskParams::Vad(VadParams::default()),
    }
}

#[test]
fn memory_another_process_taking_memory_fails_the_load_then_it_recovers() {
    if role().as_deref() == Some("hog") {
        hog();
        return;
    }
    // Keep everything but 3 GiB of what the machine has free now: masp may use those 3 GiB, and
    // a process taking 4 GiB leaves it nothing — without exhausting a large machine for real.
    // The 3 GiB also absorb what the machine does not give back at once: MemAvailable read ~1 GiB
    // lower after a 4 GiB process exited than before it started (and still 7.5 s later), and with
    // 1 GiB of room the recovery load was then refused.
    let available = probe::system_memory().available;
    assert!(
        available > Bytes::new(5 * GIB),
        "this test needs 5 GiB of free memory, the machine has {available}"
    );
    let margin = available.saturating_sub(Bytes::new(3 * GIB));
    let budget = Budget::new(
        BudgetConfig::default()
            .with_limit(Bytes::new(4 * GIB))
            .with_safety_margin(margin),
    );
    let config = OrchestratorConfig {
        system_wait: Duration::from_millis(500),
        ..OrchestratorConfig::default()
    };
    let mut orch =
        SequentialOrchestrator::builder(budget, Registry::builtin(), masp_models::registry())
            .with_config(config)
            .build()
            .unwrap();

    // Before: the task runs; its memory after unloading is the baseline.
    orch.process_task(&vad_task()).unwrap();
    orch.unload_all();
    let baseline = probe::process_rss().unwrap();

    let mut child = spawn_role(NAME, "hog");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("hog ready") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the hog exited early"
        );
    }
    println!(
        "{}system available {} (margin {margin})",
        line,
        probe::system_memory().available
    );

    let err = orch.process_task(&vad_task()).unwrap_err();
    println!("with the hog: {err}");
    assert!(matches!(err, Error::SystemMemoryLow { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("silero-vad") && text.contains("kept free"),
        "{text}"
    );
    assert!(orch.resident_models().is_empty());
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);

    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "hog killed: system available {}",
        probe::system_memory().available
    );

    // Recovery: the next task runs normally and memory returns to the baseline.
    orch.process_task(&vad_task()).unwrap();
    orch.unload_all();
    let after = probe::process_rss().unwrap();
    println!("RSS baseline {baseline}, after recovery {after}");
    assert!(
        after.get() <= baseline.get() + 16 * MIB,
        "RSS {after} did not return to its {baseline} baseline"
    );
    assert_eq!(orch.stats()["silero-vad"].tasks_done, 2);
    assert_eq!(orch.failures().len(), 1);
}
