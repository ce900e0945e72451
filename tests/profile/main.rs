//! `cargo xtask test-profile`: the profiler's own verdicts on real runs (silero VAD in ONNX
//! Runtime), each with the case that must pass and the case that must fail.
//!
//! - A leaked ONNX Runtime session, and nothing else, is flagged as a leak of about its size;
//!   a clean load/unload cycle is not.
//! - Cleanup effectiveness below the threshold fails the model suite; a clean run passes it.
//! - The cleanup after a task gives freed heap back (the allocator trim); a task that keeps its
//!   memory gets nothing back.
//! - A run whose memory grows steadily is judged growing, at about the rate it grew; the same
//!   run without the growth is judged flat.
//! - The reports are written and parse: JSON back into a `Report`, the SVG as XML.
//!
//! Each test runs in a process of its own (what one leaks must not move another's baseline).
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../memory/fresh.rs"]
mod fresh;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::manifest::{ModelKind, ModelSpec, Registry};
use masp_models::adapters::VadAdapter;
use masp_models::vad::VadParams;
use masp_orchestrator::adapter::{AdapterConstructor, AdapterRegistry, ModelAdapter, TaskContext};
use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::task::{TaskOutput, TaskParams};
use masp_orchestrator::{AudioTask, Error, Result, SequentialOrchestrator};
use masp_profiler::{Event, LeakVerdict, MemoryProfiler, ProfilerConfig, Report, TrendVerdict};
use masp_testkit::fixtures::{self, AudioSpec};
use masp_testkit::{MinimalTestFramework, SuiteResult};

use fresh::in_fresh_process;

const LIMIT: Bytes = Bytes::from_gib(2);
const MODEL: &str = "silero-vad";

/// Holds nothing: the session it loaded was leaked, so unloading frees nothing. No ballast:
/// the session alone is what the profiler must see.
#[derive(Debug)]
struct LeakedSession;

fn leaking_vad(
    admitted: &Admitted<'_>,
    spec: &ModelSpec,
    path: &Path,
    options: SessionOptions,
) -> Result<Box<dyn ModelAdapter>> {
    let session = admitted.session(&spec.name, path, options)?;
    Box::leak(Box::new(session));
    Ok(Box::new(LeakedSession))
}

impl ModelAdapter for LeakedSession {
    fn reset(&mut self) {}

    fn run(
        &mut self,
        _input: &Path,
        _params: &TaskParams,
        _ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        Err(Error::InvalidParameter {
            name: "input",
            reason: "the leaking adapter only loads".into(),
        })
    }
}

fn framework() -> MinimalTestFramework {
    MinimalTestFramework::builtin(LIMIT).with_reports_from_env()
}

fn leaking_framework() -> MinimalTestFramework {
    let mut adapters = masp_models::registry();
    adapters.register(ModelKind::Vad, leaking_vad);
    MinimalTestFramework::builtin(LIMIT).with_adapters(adapters)
}

fn model_summary(result: &SuiteResult) -> &masp_profiler::ModelSummary {
    let report = result
        .report
        .as_ref()
        .expect("the suite got as far as a report");
    report
        .models
        .iter()
        .find(|m| m.model == MODEL)
        .expect("the model's summary")
}

/// The clean suite passes and the profiler sees no leak; then, in the same process, a session
/// leaked on every load is flagged by the profiler as a leak per cycle within ±25% of what a
/// clean load of the model takes, and the suite fails naming it.
#[test]
fn a_leaked_session_is_flagged_with_its_size_and_a_clean_cycle_is_not() {
    if !in_fresh_process("a_leaked_session_is_flagged_with_its_size_and_a_clean_cycle_is_not") {
        return;
    }
    let clean = framework().model_tests(MODEL);
    println!("{clean}");
    clean.assert_success();
    let summary = model_summary(&clean);
    assert_eq!(summary.leak.verdict, LeakVerdict::NoLeak, "{clean}");
    let session = summary
        .mean_load_growth
        .expect("loads grew RSS by 1 MiB or more")
        .get();
    assert!(
        session > 1 << 20,
        "a silero session is several MiB: {session}"
    );

    let leaky = leaking_framework().model_tests(MODEL);
    println!("{leaky}");
    let summary = model_summary(&leaky);
    let LeakVerdict::Suspected { per_cycle, cycles } = summary.leak.verdict else {
        panic!("the profiler must flag the leaked sessions: {leaky}");
    };
    let error = (per_cycle.get() as f64 - session as f64) / session as f64;
    println!(
        "leak: profiler {per_cycle} per cycle over {cycles} cycles; a clean load takes {} \
         ({:+.0}%)",
        Bytes::new(session as u64),
        error * 100.0
    );
    assert!(
        error.abs() <= 0.25,
        "the leak per cycle ({per_cycle}) should be the session's size ({}) within ±25%: \
         {:+.0}%",
        Bytes::new(session as u64),
        error * 100.0
    );
    // The report's overall verdict says it too, and the suite fails on the leak.
    let report = leaky.report.as_ref().unwrap();
    assert!(matches!(report.leak.verdict, LeakVerdict::Suspected { .. }));
    let leak = leaky.check("no leak").unwrap();
    assert!(!leak.passed, "{leaky}");
    assert!(
        leak.failure
            .as_deref()
            .is_some_and(|m| m.contains("silero-vad leaks")),
        "{leaky}"
    );
}

/// Cleanup effectiveness: a clean cycle gives back about everything its load took and passes;
/// a leaked session gives back little of it, and "cleanup effectiveness" fails naming the share.
#[test]
fn cleanup_effectiveness_below_the_threshold_fails_the_suite() {
    if !in_fresh_process("cleanup_effectiveness_below_the_threshold_fails_the_suite") {
        return;
    }
    let clean = framework().model_tests(MODEL);
    let check = clean.check("cleanup effectiveness").unwrap();
    println!("clean: {}", check.figures);
    assert!(check.passed, "{clean}");
    let clean_share = model_summary(&clean).mean_effectiveness.unwrap();
    assert!(clean_share >= 0.9, "{clean}");

    let leaky = leaking_framework().model_tests(MODEL);
    let check = leaky.check("cleanup effectiveness").unwrap();
    println!("leaked session: {}", check.figures);
    assert!(!check.passed, "{leaky}");
    assert!(
        check.figures.contains("unloading gives back too little"),
        "{}",
        check.figures
    );
    let leaky_share = model_summary(&leaky).mean_effectiveness.unwrap();
    assert!(leaky_share < 0.75, "{leaky}");
}

/// Bytes each task of the growing run keeps, touched, until the model is unloaded.
static GROWTH_PER_TASK: AtomicUsize = AtomicUsize::new(0);

/// What a [`VadThen`] adapter does after each of masp's VAD tasks: the blocks it returns stay
/// alive, touched, until the model is unloaded.
trait AfterTask: std::fmt::Debug + Send + 'static {
    fn after_task() -> Vec<Box<[u8]>>;
}

/// masp's VAD adapter, then [`AfterTask::after_task`] after every task.
#[derive(Debug)]
struct VadThen<A> {
    inner: Box<dyn ModelAdapter>,
    kept: Vec<Vec<Box<[u8]>>>,
    _after: PhantomData<A>,
}

fn vad_then<A: AfterTask>(
    admitted: &Admitted<'_>,
    spec: &ModelSpec,
    path: &Path,
    options: SessionOptions,
) -> Result<Box<dyn ModelAdapter>> {
    Ok(Box::new(VadThen::<A> {
        inner: VadAdapter::load(admitted, spec, path, options)?,
        kept: Vec::new(),
        _after: PhantomData,
    }))
}

impl<A: AfterTask> ModelAdapter for VadThen<A> {
    fn reset(&mut self) {
        self.inner.reset();
    }

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let output = self.inner.run(input, params, ctx)?;
        self.kept.push(A::after_task());
        Ok(output)
    }
}

/// Silero loaded through `constructor` under a profiler started first, and a VAD task on
/// `input`.
fn profiled_vad(
    constructor: AdapterConstructor,
    input: PathBuf,
) -> (MemoryProfiler, SequentialOrchestrator, AudioTask) {
    let mut adapters: AdapterRegistry = masp_models::registry();
    adapters.register(ModelKind::Vad, constructor);
    let profiler = MemoryProfiler::start(ProfilerConfig::default()).unwrap();
    let orch = SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(LIMIT)),
        Registry::builtin(),
        adapters,
    )
    .with_profiler(profiler.handle())
    .build()
    .unwrap();
    let task = AudioTask {
        label: "vad noise.wav".into(),
        model: MODEL.into(),
        input,
        params: TaskParams::Vad(VadParams::default()),
    };
    (profiler, orch, task)
}

/// Keeps [`GROWTH_PER_TASK`] more bytes after every task: memory that grows steadily while the
/// model stays resident, as a cache without a bound would.
#[derive(Debug)]
struct Hoard;

impl AfterTask for Hoard {
    fn after_task() -> Vec<Box<[u8]>> {
        // Non-zero bytes, so every page is written and resident.
        vec![vec![0xA5; GROWTH_PER_TASK.load(Ordering::Relaxed)].into_boxed_slice()]
    }
}

const TASKS: usize = 48;

/// A real run: silero loaded once, then [`TASKS`] VAD tasks, profiled. The trend is judged over
/// the tasks (from the end of the load), with `growth` bytes kept per task.
fn vad_run(growth: usize) -> (Report, f64) {
    GROWTH_PER_TASK.store(growth, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures::write_audio(dir.path(), "noise.wav", &AudioSpec::noise(6.0, 3)).unwrap();
    let started = Instant::now();
    let (profiler, mut orch, task) = profiled_vad(vad_then::<Hoard>, input);
    orch.load_model(MODEL).unwrap();
    let loaded_at = started.elapsed().as_secs_f64();
    let tasks_started = Instant::now();
    for _ in 0..TASKS {
        orch.process_task(&task).unwrap();
    }
    let tasks_s = tasks_started.elapsed().as_secs_f64();
    let mut profile = profiler.stop();
    drop(orch);
    // Judge the trend over the tasks alone: the load before them is a step, not a trend.
    profile.trend_window_s = (profile.duration_s - loaded_at).max(0.0);
    (profile.report(), tasks_s)
}

/// Growing: 1 MiB kept per task is judged growing, at a rate within ±25% of the kept bytes per
/// second of the tasks. Flat: the same run keeping nothing is judged flat.
#[test]
fn a_steadily_growing_run_is_judged_growing_and_a_flat_run_flat() {
    if !in_fresh_process("a_steadily_growing_run_is_judged_growing_and_a_flat_run_flat") {
        return;
    }
    let (flat, flat_s) = vad_run(0);
    println!(
        "flat run: {TASKS} tasks in {flat_s:.2} s, trend {} ({} points in the window)",
        flat.trend.verdict,
        flat.timeline.len()
    );
    assert_eq!(flat.trend.verdict, TrendVerdict::Flat, "{flat}");

    let per_task = 1 << 20;
    let (growing, tasks_s) = vad_run(per_task);
    let expected = (per_task * TASKS) as f64 / tasks_s;
    println!(
        "growing run: {TASKS} tasks in {tasks_s:.2} s keeping {}/s, trend {}",
        masp_profiler::ByteDelta::from_f64(expected),
        growing.trend.verdict
    );
    let TrendVerdict::Growing { bytes_per_s } = growing.trend.verdict else {
        panic!("a run keeping 1 MiB per task must be judged growing: {growing}");
    };
    let error = (bytes_per_s - expected) / expected;
    assert!(
        error.abs() <= 0.25,
        "the fitted rate should be the kept bytes per second within ±25%: {error:+.2}"
    );
    // The text report says it.
    assert!(growing.to_string().contains("growing"), "{growing}");
}

/// The reports a profiled suite writes exist and parse: `report.json` back into the same
/// `Report` (verdicts, cycles), `timeline.svg` as well-formed XML with the timeline drawn,
/// `suite.json` with one entry per check.
#[test]
fn the_reports_are_written_and_parse() {
    if !in_fresh_process("the_reports_are_written_and_parse") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = MinimalTestFramework::builtin(LIMIT)
        .with_cycles(5)
        .with_report_dir(dir.path())
        .model_tests(MODEL);
    println!("{result}");
    result.assert_success();
    let paths = result.reports.as_ref().expect("reports written");
    let [text, json, svg] = paths.profile.clone().expect("the suite was profiled");

    let parsed: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let report = result.report.as_ref().unwrap();
    assert_eq!(parsed.leak.verdict, report.leak.verdict);
    assert_eq!(parsed.trend.verdict, report.trend.verdict);
    assert_eq!(parsed.cycles.len(), 5);
    assert_eq!(parsed.models[0].model, MODEL);

    let svg_text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg_text).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let drawn = doc
        .descendants()
        .filter(|n| matches!(n.tag_name().name(), "polyline" | "path" | "line" | "rect"))
        .count();
    assert!(drawn > 0, "the SVG draws nothing");

    let text = std::fs::read_to_string(&text).unwrap();
    for needle in ["peak", "trend", "leak", "cleanup"] {
        assert!(
            text.contains(needle),
            "report.txt has no {needle:?}: {text}"
        );
    }
    let suite: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths.suite_json).unwrap()).unwrap();
    assert_eq!(
        suite["checks"].as_array().map(Vec::len),
        Some(result.checks.len())
    );
}

/// What each task of [`heap_run`] allocates in small blocks; it frees 15 of every 16.
const ALLOCATED_PER_TASK: usize = 64 << 20;
/// Small enough to come from the heap (under the 256 KiB mmap threshold masp pins), large
/// enough to skip the allocator's per-thread caches.
const BLOCK: usize = 4 << 10;
/// Whether [`Fragment`] frees its blocks (true) or keeps them (the contrast).
static FREE_BLOCKS: AtomicBool = AtomicBool::new(true);

/// 64 MiB in 4 KiB blocks after every task, of which one in 16 stays: the freed runs between
/// them cannot join the heap's top, so only an allocator trim gives their pages back (a
/// fragmented heap, as a task's many small buffers leave one).
#[derive(Debug)]
struct Fragment;

impl AfterTask for Fragment {
    fn after_task() -> Vec<Box<[u8]>> {
        let mut blocks: Vec<Box<[u8]>> = (0..ALLOCATED_PER_TASK / BLOCK)
            .map(|_| vec![0x5A; BLOCK].into_boxed_slice())
            .collect();
        if FREE_BLOCKS.load(Ordering::Relaxed) {
            // Every 16th block stays; the rest are freed.
            let mut i = 0;
            blocks.retain(|_| {
                i += 1;
                i % 16 == 0
            });
        }
        blocks
    }
}

/// What each cleanup after a task returned, in task order, from the report's marks.
fn returned_after_tasks(report: &Report) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut after_task = false;
    for mark in &report.marks {
        match &mark.event {
            Event::TaskEnd { .. } => after_task = true,
            Event::Cleanup { returned } if after_task => {
                out.push(*returned);
                after_task = false;
            }
            _ => {}
        }
    }
    out
}

/// Silero loaded once, then 3 VAD tasks through [`VadThen<Fragment>`], profiled.
fn heap_run(free: bool) -> Report {
    FREE_BLOCKS.store(free, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures::write_audio(dir.path(), "noise.wav", &AudioSpec::noise(2.0, 5)).unwrap();
    let (profiler, mut orch, task) = profiled_vad(vad_then::<Fragment>, input);
    for _ in 0..3 {
        orch.process_task(&task).unwrap();
    }
    let report = profiler.stop().report();
    drop(orch);
    report
}

/// The cleanup after each task gives freed heap back: a task that frees 60 of the 64 MiB it
/// allocated in small blocks, leaving a fragmented heap, is followed by a cleanup that returns
/// at least half of what it freed (50–56 of 60 MiB here). The contrast: a task that keeps its blocks gets (almost)
/// nothing back from the same cleanup.
#[test]
fn the_cleanup_after_a_task_gives_the_freed_heap_back() {
    if !in_fresh_process("the_cleanup_after_a_task_gives_the_freed_heap_back") {
        return;
    }
    let freed = Bytes::new((ALLOCATED_PER_TASK / 16 * 15) as u64);
    let returned = returned_after_tasks(&heap_run(true));
    let list = |v: &[Bytes]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "freeing tasks: the cleanups returned {} of {freed} each",
        list(&returned)
    );
    assert_eq!(returned.len(), 3, "a cleanup after every task");
    for (i, r) in returned.iter().enumerate() {
        assert!(
            r.get() * 2 >= freed.get(),
            "the cleanup after task {} returned {r} of the {freed} the task freed: the \
             allocator trim (masp_budget::trim::release_freed_memory) did not give the freed \
             heap back to the system",
            i + 1
        );
    }
    let kept = returned_after_tasks(&heap_run(false));
    println!("keeping tasks: the cleanups returned {}", list(&kept));
    assert_eq!(kept.len(), 3);
    for r in &kept {
        assert!(
            r.get() * 10 < freed.get(),
            "nothing freed, yet {r} returned"
        );
    }
}
