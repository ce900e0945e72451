//! Recovery: after each kind of failure — bad input, a model refused as oversized, a task skipped
//! for outgrowing the budget — the next task runs normally and memory returns to its baseline.

use masp_budget::{Bytes, probe};
use masp_models::vad::VadParams;
use masp_orchestrator::task::{ResultFiles, TaskParams};
use masp_orchestrator::{AudioTask, Error, OrchestratorConfig};
use masp_testkit::fixtures;

use crate::common::{MIB, Models, orchestrator, tone};

fn vad(input: &std::path::Path) -> AudioTask {
    AudioTask {
        label: format!("vad {}", input.display()),
        model: "silero-vad".into(),
        input: input.to_path_buf(),
        params: TaskParams::Vad(VadParams::default()),
    }
}

/// Whether an error is the one a case expects.
type ErrorCheck = Box<dyn Fn(&Error) -> bool>;

#[test]
fn memory_after_every_failure_the_next_task_runs_and_memory_returns_to_baseline() {
    let mut models = Models::new();
    // 128 KiB of activations per input sample: even the smallest chunk needs ~500 MiB.
    models.activation("explodes", 128 * 1024);
    std::fs::copy(
        masp_model_registry::assets::SILERO_VAD.locate().unwrap(),
        models.dir.path().join("big.onnx"),
    )
    .unwrap();
    let mut registry = models.registry();
    let manifest = models.dir.path().join("big.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nname = \"big\"\nkind = \"vad\"\npath = \"big.onnx\"\nmemory = \"1GiB\"\n",
    )
    .unwrap();
    registry.add_manifest(&manifest).unwrap();
    let limit = Bytes::new(512 * MIB);
    let mut orch = orchestrator(registry, limit, OrchestratorConfig::default());
    let speech = fixtures::speech_sample().unwrap();
    let input = tone(models.dir.path(), "a.wav", 4.0);
    let out = models.dir.path().join("out");

    // The baseline: after one normal task and its cleanup (ONNX Runtime's globals are paid).
    orch.process_task(&vad(&speech)).unwrap();
    orch.unload_all();
    let baseline = probe::process_rss().unwrap();
    println!("baseline RSS {baseline} (budget {limit})");

    let mut failures: Vec<(String, ErrorCheck, AudioTask)> = Vec::new();
    for bad in fixtures::bad_inputs(models.dir.path()).unwrap() {
        let expected = bad.expected_message;
        failures.push((
            format!("bad input ({})", bad.kind),
            Box::new(move |e: &Error| e.to_string().contains(expected)),
            vad(&bad.path),
        ));
    }
    let mut oversized = vad(&speech);
    oversized.model = "big".into();
    failures.push((
        "oversized model".into(),
        Box::new(|e: &Error| matches!(e, Error::ModelTooLarge { .. })),
        oversized,
    ));
    failures.push((
        "task outgrowing the budget".into(),
        Box::new(|e: &Error| matches!(e, Error::TaskSkipped { .. })),
        AudioTask {
            label: "explodes a.wav".into(),
            model: "explodes".into(),
            input: input.clone(),
            params: TaskParams::Generic {
                output: ResultFiles::new(out, "a").unwrap(),
            },
        },
    ));

    let mut rows = Vec::new();
    for (what, expected, task) in &failures {
        let err = orch.process_task(task).unwrap_err();
        assert!(expected(&err), "{what}: unexpected error {err}");
        let next = orch.process_task(&vad(&speech));
        assert!(next.is_ok(), "{what}: the next task failed: {next:?}");
        orch.unload_all();
        let rss = probe::process_rss().unwrap();
        rows.push(format!(
            "{what:<28} RSS {rss} ({:+} KiB)  {err}",
            (rss.get() as i64 - baseline.get() as i64) / 1024
        ));
        assert_eq!(orch.budget().reserved(), Bytes::ZERO, "{what}");
        assert!(
            rss.get() <= baseline.get() + 16 * MIB,
            "{what}: RSS {rss} did not return to its {baseline} baseline"
        );
    }
    for row in &rows {
        println!("{row}");
    }
    assert_eq!(
        orch.stats()["silero-vad"].tasks_done,
        1 + failures.len() as u64
    );
    println!("{} passed, 0 failed", failures.len());
}
