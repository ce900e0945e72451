//! The model and orchestration suites: `MinimalTestFramework` on masp's real models (silero VAD,
//! the speaker embedder) and a real pipeline (VAD → embedding) over committed and generated
//! audio, plus the error categories a suite must cover (bad input, oversized model). Run one
//! test at a time by `cargo xtask test-sequential`; `cargo xtask test-profile` also writes each
//! suite's reports to `target/masp-reports/<suite>/`.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use masp_budget::{Budget, BudgetConfig, Bytes, probe};
use masp_model_registry::manifest::Registry;
use masp_models::vad::VadParams;
use masp_orchestrator::task::TaskParams;
use masp_orchestrator::{AudioTask, Error, SequentialOrchestrator};
use masp_testkit::fixtures::{self, AudioSpec};
use masp_testkit::{MinimalTestFramework, SuiteResult};

const LIMIT: Bytes = Bytes::from_gib(2);

/// The suites measure the whole process: one at a time, whatever `--test-threads` says.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn framework() -> MinimalTestFramework {
    MinimalTestFramework::builtin(LIMIT).with_reports_from_env()
}

/// Print the suite's table (it ends with `N passed, N failed`) and fail on any failed check.
fn conclude(result: &SuiteResult) {
    println!("{result}");
    if let Some(paths) = &result.reports {
        println!("reports: {}", paths.dir.display());
    }
    result.assert_success();
}

#[test]
fn model_suite_silero_vad() {
    let _serial = serial();
    let result = framework().model_tests("silero-vad");
    conclude(&result);
    assert_eq!(result.checks.len(), 5, "{result}");
}

#[test]
fn model_suite_speaker_embedder() {
    let _serial = serial();
    let result = framework().model_tests("speaker-embedder");
    conclude(&result);
    assert_eq!(result.checks.len(), 5, "{result}");
}

#[test]
fn orchestration_suite_vad_then_embed_over_committed_and_generated_audio() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![
        fixtures::speech_sample().unwrap(),
        fixtures::samples_dir()
            .unwrap()
            .join("noisy_mix_44k_stereo.flac"),
    ];
    inputs.extend(fixtures::generated_batch(dir.path(), 3.0).unwrap());
    // A long file, written as a stream: memory must not depend on its length.
    inputs
        .push(fixtures::write_audio(dir.path(), "long.wav", &AudioSpec::noise(120.0, 9)).unwrap());
    let result = framework().orchestration_tests(&["silero-vad", "speaker-embedder"], &inputs);
    conclude(&result);
    assert_eq!(result.checks.len(), 4, "{result}");
}

fn orchestrator(registry: Registry) -> SequentialOrchestrator {
    SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(LIMIT)),
        registry,
        masp_models::registry(),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn vad_task(input: PathBuf) -> AudioTask {
    AudioTask {
        label: format!("vad {}", input.display()),
        model: "silero-vad".into(),
        input,
        params: TaskParams::Vad(VadParams::default()),
    }
}

#[test]
fn every_bad_input_fails_with_its_message_and_the_next_task_runs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixtures::bad_inputs(dir.path()).unwrap();
    assert_eq!(corpus.len(), 5);
    let mut orch = orchestrator(Registry::builtin());
    let good = fixtures::speech_sample().unwrap();
    for bad in &corpus {
        let err = orch.process_task(&vad_task(bad.path.clone())).unwrap_err();
        println!("{:<14} {}: {err}", bad.kind.to_string(), bad.path.display());
        assert!(
            err.to_string().contains(bad.expected_message),
            "{}: expected {:?} in {err}",
            bad.kind,
            bad.expected_message
        );
        orch.process_task(&vad_task(good.clone()))
            .unwrap_or_else(|e| panic!("the task after {} failed: {e}", bad.kind));
    }
    assert_eq!(orch.failures().len(), corpus.len());
    assert_eq!(orch.stats()["silero-vad"].tasks_done, corpus.len() as u64);
    println!("{} passed, 0 failed", corpus.len());
}

#[test]
fn an_oversized_model_is_refused_before_loading_and_the_next_task_runs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        masp_model_registry::assets::SILERO_VAD.locate().unwrap(),
        dir.path().join("big.onnx"),
    )
    .unwrap();
    let manifest = dir.path().join("masp.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nname = \"big\"\nkind = \"vad\"\npath = \"big.onnx\"\nmemory = \"3GiB\"\n",
    )
    .unwrap();
    let mut registry = Registry::builtin();
    registry.add_manifest(&manifest).unwrap();
    let mut orch = orchestrator(registry);
    let before = probe::process_rss().unwrap();
    let mut task = vad_task(fixtures::speech_sample().unwrap());
    task.model = "big".into();
    let err = orch.process_task(&task).unwrap_err();
    let after = probe::process_rss().unwrap();
    println!("{err}");
    assert!(matches!(err, Error::ModelTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("3 GiB"), "{err}");
    assert!(orch.resident_models().is_empty());
    assert!(
        after.get().abs_diff(before.get()) < 4 << 20,
        "RSS moved {before} → {after}: something was loaded"
    );
    orch.process_task(&vad_task(fixtures::speech_sample().unwrap()))
        .unwrap();
    orch.unload_all();
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
}
