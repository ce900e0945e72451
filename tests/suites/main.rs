//! `cargo xtask test-sequential`: the model and orchestration suites of `MinimalTestFramework` on
//! masp's real models (silero VAD, the speaker embedder) and a real pipeline (VAD → embedding)
//! over committed and generated audio, with peaks held to 1.5× the figures measured for them;
//! the error categories a suite must cover (bad input, oversized model); and the degradation
//! ladder run to its last step. One test at a time. With `MASP_TEST_REPORTS` set, each suite's
//! reports go to `<dir>/<suite>/`.
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
use masp_testkit::{MinimalTestFramework, SuiteConfig, SuiteResult};

#[allow(dead_code)]
#[path = "../memory/common.rs"]
mod common;

const LIMIT: Bytes = Bytes::from_gib(2);

/// How far each suite's peak rose above the RSS it started at, measured on 2026-12-04 (release
/// build, 2-core VM, five runs: silero-vad 14.0–14.3 MiB, speaker-embedder 15.8–16.0 MiB, the
/// orchestration suite 92.9–94.1 MiB). The suites allow 1.5× these ([`allowance`]): a model or
/// pipeline that comes to take twice as much fails "peak below budget", naming the rise. When a
/// model or the runtime changes on purpose, measure again and update them here.
const SILERO_PEAK_RISE: Bytes = Bytes::from_mib(15);
const EMBEDDER_PEAK_RISE: Bytes = Bytes::from_mib(16);
const PIPELINE_PEAK_RISE: Bytes = Bytes::from_mib(94);

/// The largest working memory of one task per model in the orchestration suite below,
/// measured on 2026-12-08 (release build, three runs: silero-vad 1.3–1.5 MiB,
/// speaker-embedder 79.4–80.0 MiB). The suite allows 1.5× these, and at least 1 MiB more
/// ([`working_allowance`]): a model whose working set doubles fails "working memory" although
/// the pipeline's peak, set by the embedder, does not move. Measure again when a model changes.
const SILERO_TASK_WORKING: Bytes = Bytes::from_kib(1536);
const EMBEDDER_TASK_WORKING: Bytes = Bytes::from_mib(80);

/// 1.5× a measured task working memory, and at least 1 MiB above it (a figure of 1 MiB moves by
/// a few hundred KiB between runs).
fn working_allowance(measured: Bytes) -> Bytes {
    Bytes::new(measured.get() / 2 * 3).max(measured.saturating_add(Bytes::from_mib(1)))
}

/// 1.5× a measured peak rise: the suites' [`SuiteConfig::peak_allowance`].
fn allowance(measured: Bytes) -> SuiteConfig {
    SuiteConfig {
        peak_allowance: Some(Bytes::new(measured.get() / 2 * 3)),
        ..SuiteConfig::default()
    }
}

/// The suites measure the whole process: one at a time, whatever `--test-threads` says.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn framework(measured_rise: Bytes) -> MinimalTestFramework {
    MinimalTestFramework::builtin(LIMIT)
        .with_config(allowance(measured_rise))
        .with_reports_from_env()
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
    let result = framework(SILERO_PEAK_RISE).model_tests("silero-vad");
    conclude(&result);
    assert_eq!(result.checks.len(), 6, "{result}");
}

#[test]
fn model_suite_speaker_embedder() {
    let _serial = serial();
    let result = framework(EMBEDDER_PEAK_RISE).model_tests("speaker-embedder");
    conclude(&result);
    assert_eq!(result.checks.len(), 6, "{result}");
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
    let result = MinimalTestFramework::builtin(LIMIT)
        .with_config(SuiteConfig {
            working_allowances: vec![
                ("silero-vad".into(), working_allowance(SILERO_TASK_WORKING)),
                (
                    "speaker-embedder".into(),
                    working_allowance(EMBEDDER_TASK_WORKING),
                ),
            ],
            ..allowance(PIPELINE_PEAK_RISE)
        })
        .with_reports_from_env()
        .orchestration_tests(&["silero-vad", "speaker-embedder"], &inputs);
    conclude(&result);
    assert_eq!(result.checks.len(), 5, "{result}");
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

/// The degradation ladder to its last step, with two intra-op threads so that "one thread" is a
/// step it can take: a task that fits at a smaller chunk goes down to it and completes; a task
/// that fits at no chunk is cut to one thread, then skipped, and says which steps it tried; the
/// batch goes on.
#[test]
fn the_degradation_ladder_runs_to_its_last_step_with_two_threads() {
    let _serial = serial();
    let mut models = common::Models::new();
    // 16 KiB of activations per input sample: a 2 s chunk needs ~500 MiB, more than the budget
    // leaves; 1 s fits.
    models.activation("grows", 16 * 1024);
    // 128 KiB per sample: even the smallest chunk (a quarter second) needs ~500 MiB.
    models.activation("explodes", 128 * 1024);
    let mut config = masp_orchestrator::OrchestratorConfig {
        record_events: true,
        ..masp_orchestrator::OrchestratorConfig::default()
    };
    config.session.intra_op_threads = 2;
    let limit = Bytes::from_mib(512);
    let mut orch = common::orchestrator(models.registry(), limit, config);
    let a = common::tone(models.dir.path(), "a.wav", 4.0);
    let out = models.dir.path().join("out");
    let generic = |model: &str| AudioTask {
        label: format!("{model} a.wav"),
        model: model.into(),
        input: a.clone(),
        params: TaskParams::Generic {
            output: masp_orchestrator::task::ResultFiles::new(
                &out,
                &masp_run::name::result_name(&a),
            )
            .unwrap(),
        },
    };
    let steps_of = |orch: &SequentialOrchestrator, model: &str| -> Vec<String> {
        orch.events()
            .iter()
            .filter_map(|e| match e {
                masp_orchestrator::RunEvent::Degraded { model: m, step, .. } if m == model => {
                    Some(step.clone())
                }
                _ => None,
            })
            .collect()
    };

    // Step 1, smaller chunks: enough for this one.
    orch.process_task(&generic("grows"))
        .unwrap_or_else(|e| panic!("{e}"));
    let grows = steps_of(&orch, "grows");
    println!("grows: {grows:?}");
    assert!(!grows.is_empty(), "grows should have degraded");
    assert!(grows.iter().all(|s| s == "smaller chunks"), "{grows:?}");

    // Smaller chunks, then step 2, one thread, then step 3, skip. The watchdog stops each call
    // as it crosses the limit, so a stopped call says only that its chunk does not fit, not by
    // how much: the ladder halves down to the quarter-second minimum before it takes a thread
    // away.
    let err = orch.process_task(&generic("explodes")).unwrap_err();
    println!("explodes: {err}");
    let Error::TaskSkipped { steps, reason, .. } = &err else {
        panic!("expected a skip, got {err}");
    };
    let (last, before) = steps.split_last().expect("steps were tried");
    assert_eq!(last, "one intra-op thread instead of 2", "{err}");
    assert!(
        before.iter().all(|s| s.starts_with("smaller chunks")),
        "{err}"
    );
    let taken = steps_of(&orch, "explodes");
    assert_eq!(
        taken.last().map(String::as_str),
        Some("one thread"),
        "{taken:?}"
    );
    assert_eq!(taken.len(), steps.len(), "{taken:?}");
    assert!(reason.contains("512 MiB"), "{reason}");
    assert!(
        err.to_string().contains("one intra-op thread instead of 2"),
        "{err}"
    );

    // The batch goes on: the next task runs, at the chunk calibrated for it.
    orch.process_task(&generic("grows"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(steps_of(&orch, "grows"), grows, "no second degradation");
    orch.unload_all();
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
}
