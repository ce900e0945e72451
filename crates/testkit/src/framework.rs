//! [`MinimalTestFramework`]: prove that a model, and a pipeline of models, behave under a
//! memory budget — the seed's `modelTests()` and `orchestrationTests()` as a Rust API.
//!
//! Every suite runs the real orchestrator (and the real ONNX Runtime) under a
//! [`MemoryProfiler`]: its checks read the profiler's report, so the verdicts are the same ones
//! `masp --report` would give. A suite never panics: each check passes or fails with its
//! figures in a [`SuiteResult`], which prints as a table ending in `N passed, N failed`.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::estimate::CalibrationStore;
use masp_model_registry::manifest::Registry;
use masp_orchestrator::adapter::AdapterRegistry;
use masp_orchestrator::batch::BatchTask;
use masp_orchestrator::{OrchestratorConfig, RunEvent, SequentialOrchestrator};
use masp_profiler::{Event, MemoryProfiler, ProfilerConfig, ProfilerHandle, Report};
use serde::Serialize;

use crate::assert::{self, AssertionFailure};
use crate::{Error, Result};

/// The environment variable naming a directory for suite reports (`cargo xtask test-profile`
/// sets it to `target/masp-reports`); see [`MinimalTestFramework::with_reports_from_env`].
pub const REPORTS_ENV: &str = "MASP_TEST_REPORTS";

/// Thresholds of the suites. Every field has a working default for masp's built-in models;
/// the crate docs' table lists each check with the fields that judge it.
///
/// Tolerances scale with the model where they can: a fixed allowance that is larger than the
/// model itself lets the failure it is meant to catch pass. Size [`Self::peak_allowance`] to
/// your model (1.5× its known peak) so that a regression of 2× fails.
///
/// # Examples
///
/// ```
/// use masp_testkit::{Bytes, SuiteConfig};
/// let config = SuiteConfig {
///     cycles: 50,
///     peak_allowance: Some(Bytes::from_mib(21)),
///     ..SuiteConfig::default()
/// };
/// assert_eq!(config.repeats, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteConfig {
    /// Load/unload cycles of [`MinimalTestFramework::model_tests`] after the warm-up cycle.
    /// Default 20: enough for the leak fit to see ~100 KiB per cycle; 1000 hunts slow drifts.
    pub cycles: usize,
    /// Growth per cycle tolerated as noise by the leak verdict. Default 1 MiB (the profiler's).
    pub leak_tolerance: Bytes,
    /// The most RSS may end above where it started (after the warm-up), however large the
    /// model. Default 16 MiB. The tolerance used is the smaller of this and
    /// [`Self::baseline_share`] of the model's resident size.
    pub baseline_tolerance: Bytes,
    /// How far RSS may end above where it started, as a share of the model's resident size
    /// (in an orchestration suite, of the smallest model's). Default 0.5: a session left alive
    /// keeps nearly all of its resident size and fails, while the allocator's and runtime's
    /// leftovers (under 2 MiB over 20 cycles with the built-in models) pass.
    pub baseline_share: f64,
    /// How far the first (metadata) estimate of the load peak may fall below the measured peak,
    /// in percent. Default 25. Under-estimates are what make a budget unsafe: the load is
    /// admitted and then takes more than was reserved (calibration corrects it after one load).
    pub estimate_under_pct: f64,
    /// How far the metadata estimate may exceed the measured peak, in percent. Default 200:
    /// over-estimates are safe but refuse loads that would fit; beyond 3× the estimator
    /// misjudges the model.
    pub estimate_over_pct: f64,
    /// Absolute error always tolerated, for models whose peak is a few MiB of noise. Default
    /// 1 MiB, far below any real model's peak, so the percentages decide.
    pub estimate_slack: Bytes,
    /// The most a suite's peak RSS may rise above the RSS it started at. Default `None`: only
    /// the budget's limit bounds the peak, which a budget of GiB makes insensitive to a model of
    /// MiB. Set it to 1.5× the model's (or pipeline's) known peak rise; masp's own suites do.
    pub peak_allowance: Option<Bytes>,
    /// The least share of what a load took that unloading must give back, averaged over the
    /// model suite's cycles (the profiler's cleanup effectiveness). Default 0.75; a clean cycle
    /// of the built-in models returns about all of it, a leaked session about a third.
    pub min_cleanup_effectiveness: f64,
    /// Times [`MinimalTestFramework::orchestration_tests`] runs the batch. Default 3.
    pub repeats: usize,
    /// How far peaks and end RSS of the repeated batches may spread. Default 16 MiB.
    pub stability_tolerance: Bytes,
    /// Per model, the most working memory any one of its tasks may take in the orchestration
    /// suite (the task's peak above the loaded model, as the orchestrator measures it). Default
    /// empty: each model's largest task is reported, not judged. Set each to 1.5× the model's
    /// known figure so that a model whose working set doubles fails "working memory" — the
    /// pipeline's peak alone cannot show it when another stage sets the peak.
    pub working_allowances: Vec<(String, Bytes)>,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            cycles: 20,
            leak_tolerance: Bytes::from_mib(1),
            baseline_tolerance: Bytes::from_mib(16),
            baseline_share: 0.5,
            estimate_under_pct: 25.0,
            estimate_over_pct: 200.0,
            estimate_slack: Bytes::from_mib(1),
            peak_allowance: None,
            min_cleanup_effectiveness: 0.75,
            repeats: 3,
            stability_tolerance: Bytes::from_mib(16),
            working_allowances: Vec::new(),
        }
    }
}

impl SuiteConfig {
    /// The "returns to baseline" tolerance for a model (or pipeline) whose smallest resident
    /// size is `resident`: [`Self::baseline_share`] of it, at most [`Self::baseline_tolerance`]
    /// and at least 1 MiB (below that, RSS moves by itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_testkit::{Bytes, SuiteConfig};
    /// let config = SuiteConfig::default();
    /// assert_eq!(config.baseline_tolerance_for(Bytes::from_mib(10)), Bytes::from_mib(5));
    /// assert_eq!(config.baseline_tolerance_for(Bytes::from_gib(1)), Bytes::from_mib(16));
    /// ```
    #[must_use]
    pub fn baseline_tolerance_for(&self, resident: Bytes) -> Bytes {
        let share = Bytes::new((resident.get() as f64 * self.baseline_share.max(0.0)) as u64);
        share
            .min(self.baseline_tolerance)
            .max(Bytes::from_mib(1).min(self.baseline_tolerance))
    }
}

/// One check of a suite: its verdict and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The check, e.g. `no leak`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// The measured figures, one line.
    pub figures: String,
    /// Why it failed (with the evidence: timeline summary, cycle table), when it did.
    pub failure: Option<String>,
}

/// Files written by [`SuiteResult::write_reports`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuiteReportPaths {
    /// The directory.
    pub dir: PathBuf,
    /// `suite.txt`: the result table.
    pub suite_text: PathBuf,
    /// `suite.json`: the result as JSON.
    pub suite_json: PathBuf,
    /// The profiler's `report.txt`, `report.json`, `timeline.svg`, when the suite was profiled.
    pub profile: Option<[PathBuf; 3]>,
}

/// The outcome of a suite: every check with its figures, and the profiler's report.
///
/// Prints (`Display`) as a table ending with the line `N passed, N failed`; serialises to JSON.
///
/// # Examples
///
/// ```
/// use masp_testkit::SuiteResult;
/// let mut result = SuiteResult::new("demo");
/// result.record("answer", Ok("42".into()));
/// assert!(result.is_success());
/// assert!(result.to_string().ends_with("1 passed, 0 failed\n"));
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct SuiteResult {
    /// The suite's name (also its report directory's name), e.g. `model-silero-vad`.
    pub suite: String,
    /// The checks, in the order run.
    pub checks: Vec<CheckResult>,
    /// The profiler's report of the suite's run, when it got that far.
    #[serde(skip)]
    pub report: Option<Report>,
    /// Where the reports were written, if they were.
    pub reports: Option<SuiteReportPaths>,
}

impl SuiteResult {
    /// An empty result for `suite`.
    #[must_use]
    pub fn new(suite: &str) -> Self {
        Self {
            suite: suite.to_owned(),
            checks: Vec::new(),
            report: None,
            reports: None,
        }
    }

    /// Records a check: `Ok(figures)` passed, `Err(failure)` failed.
    pub fn record(&mut self, name: &str, outcome: std::result::Result<String, String>) {
        let (passed, figures, failure) = match outcome {
            Ok(figures) => (true, figures, None),
            Err(failure) => {
                let figures = failure.lines().next().unwrap_or_default().to_owned();
                (false, figures, Some(failure))
            }
        };
        self.checks.push(CheckResult {
            name: name.to_owned(),
            passed,
            figures,
            failure,
        });
    }

    /// Checks that passed.
    #[must_use]
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.passed).count()
    }

    /// Checks that failed.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// Whether there was at least one check and every check passed.
    #[must_use]
    pub fn is_success(&self) -> bool {
        !self.checks.is_empty() && self.failed() == 0
    }

    /// The check named `name`, if it ran.
    #[must_use]
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Panics with the whole table unless [`Self::is_success`].
    ///
    /// # Panics
    /// When a check failed or none ran.
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(self.is_success(), "suite {} failed:\n{self}", self.suite);
    }

    /// The result as pretty-printed JSON.
    ///
    /// # Errors
    /// [`Error::Json`] if encoding fails (it does not for results built by this crate).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Json(e.to_string()))
    }

    /// Writes `suite.txt` and `suite.json` and, when the suite was profiled, the profiler's
    /// `report.txt`, `report.json` and `timeline.svg` into `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file that could not be written; [`Error::Report`].
    pub fn write_reports(&mut self, dir: &Path) -> Result<SuiteReportPaths> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let profile = match &self.report {
            Some(report) => {
                let p = report
                    .write_all(dir)
                    .map_err(|e| Error::Report(e.to_string()))?;
                Some([p.text, p.json, p.svg])
            }
            None => None,
        };
        let paths = SuiteReportPaths {
            dir: dir.to_path_buf(),
            suite_text: dir.join("suite.txt"),
            suite_json: dir.join("suite.json"),
            profile,
        };
        self.reports = Some(paths.clone());
        std::fs::write(&paths.suite_text, self.to_string()).map_err(io(&paths.suite_text))?;
        std::fs::write(&paths.suite_json, self.to_json()? + "\n").map_err(io(&paths.suite_json))?;
        Ok(paths)
    }
}

impl fmt::Display for SuiteResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "suite {}", self.suite)?;
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "  {:<width$}  {:<6}  figures", "check", "result")?;
        for c in &self.checks {
            let verdict = if c.passed { "ok" } else { "FAILED" };
            writeln!(f, "  {:<width$}  {verdict:<6}  {}", c.name, c.figures)?;
            if let Some(failure) = &c.failure {
                for line in failure.lines().skip(1) {
                    writeln!(f, "  {:<width$}          {line}", "")?;
                }
            }
        }
        if let Some(paths) = &self.reports {
            writeln!(f, "  reports in {}", paths.dir.display())?;
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// The seed's minimal test framework: `model_tests` and `orchestration_tests` over a model
/// registry and a budget, for masp's own suites and for downstream crates' tests.
///
/// Run suites one at a time in their own test process (`--test-threads=1`): they measure the
/// whole process's memory.
///
/// # Examples
///
/// ```no_run
/// use masp_testkit::{Bytes, MinimalTestFramework};
///
/// let framework = MinimalTestFramework::builtin(Bytes::from_gib(2)).with_reports_from_env();
/// let result = framework.model_tests("silero-vad");
/// println!("{result}");
/// result.assert_success();
/// ```
#[derive(Debug)]
pub struct MinimalTestFramework {
    registry: Registry,
    budget: Budget,
    orchestrator: OrchestratorConfig,
    adapters: Option<AdapterRegistry>,
    profiler: ProfilerConfig,
    report_dir: Option<PathBuf>,
    config: SuiteConfig,
}

/// A running suite: the profiler and the orchestrator it watches.
struct Profiled {
    profiler: MemoryProfiler,
    handle: ProfilerHandle,
    orch: SequentialOrchestrator,
}

impl MinimalTestFramework {
    /// A framework over `registry`'s models, admitting loads against `budget`.
    #[must_use]
    pub fn new(registry: Registry, budget: Budget) -> Self {
        Self {
            registry,
            budget,
            orchestrator: OrchestratorConfig::default(),
            adapters: None,
            profiler: ProfilerConfig::default(),
            report_dir: None,
            config: SuiteConfig::default(),
        }
    }

    /// A framework over masp's built-in models (`silero-vad`, `speaker-embedder`) with a budget
    /// of `limit` (bounded by the machine and cgroup as always).
    #[must_use]
    pub fn builtin(limit: Bytes) -> Self {
        Self::new(
            Registry::builtin(),
            Budget::new(BudgetConfig::default().with_limit(limit)),
        )
    }

    /// `self` with other thresholds.
    #[must_use]
    pub fn with_config(mut self, config: SuiteConfig) -> Self {
        self.config = config;
        self
    }

    /// `self` running `cycles` measured load/unload cycles in [`Self::model_tests`].
    #[must_use]
    pub fn with_cycles(mut self, cycles: usize) -> Self {
        self.config.cycles = cycles;
        self
    }

    /// `self` with another orchestrator configuration (resident policy, threads…).
    #[must_use]
    pub fn with_orchestrator_config(mut self, config: OrchestratorConfig) -> Self {
        self.orchestrator = config;
        self
    }

    /// `self` loading models through `adapters` (e.g. with an adapter for a model kind of
    /// yours); default: `masp_models::registry()`.
    #[must_use]
    pub fn with_adapters(mut self, adapters: AdapterRegistry) -> Self {
        self.adapters = Some(adapters);
        self
    }

    /// `self` profiling with `config` (sampling interval, timeline size). Its budget line is
    /// set to the budget's limit and its leak tolerance to the suite's.
    #[must_use]
    pub fn with_profiler(mut self, config: ProfilerConfig) -> Self {
        self.profiler = config;
        self
    }

    /// `self` writing each suite's reports into `dir/<suite name>/`.
    #[must_use]
    pub fn with_report_dir(mut self, dir: &Path) -> Self {
        self.report_dir = Some(dir.to_path_buf());
        self
    }

    /// `self` writing reports under the directory named by `MASP_TEST_REPORTS`, if it is set.
    #[must_use]
    pub fn with_reports_from_env(mut self) -> Self {
        if let Some(dir) = std::env::var_os(REPORTS_ENV).filter(|d| !d.is_empty()) {
            self.report_dir = Some(PathBuf::from(dir));
        }
        self
    }

    /// The thresholds in use.
    #[must_use]
    pub fn config(&self) -> &SuiteConfig {
        &self.config
    }

    /// The budget suites run under.
    #[must_use]
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    fn orchestrator(
        &self,
        profiler: ProfilerHandle,
        calibration: CalibrationStore,
        record_events: bool,
    ) -> Result<SequentialOrchestrator, String> {
        let config = OrchestratorConfig {
            record_events: record_events || self.orchestrator.record_events,
            ..self.orchestrator.clone()
        };
        let adapters = self.adapters.clone().unwrap_or_else(masp_models::registry);
        SequentialOrchestrator::builder(self.budget.clone(), self.registry.clone(), adapters)
            .with_profiler(profiler)
            .with_calibration(calibration)
            .with_config(config)
            .build()
            .map_err(|e| e.to_string())
    }

    /// Start the profiler, then an orchestrator that marks its phases on it (the profiler
    /// resets the kernel's peak first, so the orchestrator's peak covers only the suite).
    fn profiled(
        &self,
        calibration: CalibrationStore,
        record_events: bool,
    ) -> Result<Profiled, String> {
        let config = self
            .profiler
            .clone()
            .with_budget_limit(self.budget.effective_limit())
            .with_leak_tolerance(self.config.leak_tolerance);
        let profiler = MemoryProfiler::start(config).map_err(|e| e.to_string())?;
        let handle = profiler.handle();
        let orch = self.orchestrator(handle.clone(), calibration, record_events)?;
        Ok(Profiled {
            profiler,
            handle,
            orch,
        })
    }

    fn finish(&self, mut result: SuiteResult) -> SuiteResult {
        if let Some(root) = &self.report_dir {
            let dir = root.join(&result.suite);
            if let Err(e) = result.write_reports(&dir) {
                result.record("reports written", Err(e.to_string()));
            }
        }
        result
    }

    /// The model suite: load/unload `model` in cycles with cleanup and check that
    ///
    /// - **loads**: a warm-up load and every measured load succeed;
    /// - **no leak**: the leak fit ([`assert::leak_verdict`]) over the profiler's measured cycles
    ///   (default 20) stays under [`SuiteConfig::leak_tolerance`] per cycle, and the
    ///   orchestrator's own post-unload check flagged no unload;
    /// - **peak below budget**: the run's peak RSS stays under the budget's limit and, when
    ///   [`SuiteConfig::peak_allowance`] is set, rises at most that much above the start;
    /// - **returns to baseline**: after the last cleanup RSS is within
    ///   [`SuiteConfig::baseline_tolerance_for`] the model's resident size of where it was after
    ///   the warm-up, nothing is reserved and nothing resident;
    /// - **estimate vs measured**: the metadata estimate of the load peak is within
    ///   [`SuiteConfig::estimate_under_pct`] below and [`SuiteConfig::estimate_over_pct`] above
    ///   the largest load peak measured over the cycles (or within
    ///   [`SuiteConfig::estimate_slack`] of it). The warm-up load is left out: the first session
    ///   of a process also pays ONNX Runtime's one-time globals;
    /// - **cleanup effectiveness**: unloading gives back at least
    ///   [`SuiteConfig::min_cleanup_effectiveness`] of what the load took, on average.
    ///
    /// The suite is named `model-<model>`.
    #[must_use]
    pub fn model_tests(&self, model: &str) -> SuiteResult {
        let mut result = SuiteResult::new(&format!("model-{model}"));
        // The warm-up cycle, outside the profiled run: the first session of a process pays for
        // ONNX Runtime's globals, which never come back and are not a leak.
        let mut warm = match self.orchestrator(
            ProfilerHandle::disabled(),
            CalibrationStore::in_memory(),
            false,
        ) {
            Ok(o) => o,
            Err(e) => {
                result.record("loads", Err(format!("{model}: {e}")));
                return self.finish(result);
            }
        };
        let metadata = warm.prepare(model).map(|p| p.metadata_estimate.load_peak);
        if let Err(e) = warm.load_model(model) {
            result.record("loads", Err(format!("{model} does not load: {e}")));
            return self.finish(result);
        }
        warm.unload_model(model);
        let first = warm.stats().get(model).cloned().unwrap_or_default();
        drop(warm);

        let Profiled {
            profiler,
            handle: _,
            mut orch,
        } = match self.profiled(CalibrationStore::in_memory(), false) {
            Ok(p) => p,
            Err(e) => {
                result.record("loads", Err(e));
                return self.finish(result);
            }
        };
        let mut load_errors = Vec::new();
        for _ in 0..self.config.cycles {
            match orch.load_model(model) {
                Ok(()) => {
                    orch.unload_model(model);
                }
                Err(e) => load_errors.push(e.to_string()),
            }
        }
        let reserved = orch.budget().reserved();
        let resident: Vec<String> = orch
            .resident_models()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let stats = orch.stats().get(model).cloned().unwrap_or_default();
        let report = finish_profile(orch, profiler);

        result.record(
            "loads",
            if load_errors.is_empty() {
                Ok(format!(
                    "{} loads; first load peak {} (with the runtime's one-time globals), \
                     then at most {}; resident {}",
                    self.config.cycles + 1,
                    first.measured_peak_max,
                    stats.measured_peak_max,
                    stats.resident
                ))
            } else {
                Err(format!(
                    "{model}: {} of {} loads failed; first: {}",
                    load_errors.len(),
                    self.config.cycles,
                    load_errors[0]
                ))
            },
        );

        let cycles: Vec<masp_profiler::Cycle> = report
            .cycles
            .iter()
            .filter(|c| c.model == model)
            .cloned()
            .collect();
        let (verdict, growth) = assert::leak_verdict(&cycles, self.config.leak_tolerance);
        let leak_figures = format!(
            "{verdict}; fitted {} per cycle over {} cycles; orchestrator's post-unload check \
             flagged {} (largest shortfall {})",
            growth.map_or_else(|| "n/a".to_owned(), |g| g.to_string()),
            cycles.len(),
            stats.leaks_suspected,
            stats.shortfall_max
        );
        result.record(
            "no leak",
            match assert::assert_no_leak(&cycles, self.config.leak_tolerance) {
                Err(failure) => Err(format!(
                    "{}\n{}",
                    failure.message,
                    assert::timeline_summary(&report)
                )),
                Ok(()) if stats.leaks_suspected > 0 => Err(format!(
                    "{model}: the orchestrator's post-unload check flagged {} of {} unloads \
                     (largest shortfall {}, tolerance {}): {leak_figures}\n{}",
                    stats.leaks_suspected,
                    self.config.cycles,
                    stats.shortfall_max,
                    self.orchestrator.cleanup_tolerance,
                    assert::timeline_summary(&report)
                )),
                Ok(()) => Ok(leak_figures),
            },
        );

        result.record("peak below budget", self.peak_check(model, &report));

        result.record(
            "returns to baseline",
            baseline_check(
                model,
                &report,
                self.config.baseline_tolerance_for(stats.resident),
                reserved,
                &resident,
            ),
        );

        result.record(
            "cleanup effectiveness",
            effectiveness_check(model, &report, self.config.min_cleanup_effectiveness),
        );

        result.record(
            "estimate vs measured",
            match metadata {
                Ok(estimate) => {
                    // Against the measured cycles, not the warm-up: the first session of a
                    // process also pays ONNX Runtime's one-time globals (code pages, thread
                    // pools), ~10 MiB that no per-model estimate should carry and that the
                    // baseline absorbs once paid.
                    estimate_check(model, estimate, stats.measured_peak_max, &self.config)
                }
                Err(e) => Err(format!("{model}: cannot estimate: {e}")),
            },
        );
        result.report = Some(report);
        self.finish(result)
    }

    /// The orchestration suite: `pipeline` (model names, in stage order) over every input
    /// (each file goes through the stages in order, a stage depending on the previous one), as
    /// one batch run [`SuiteConfig::repeats`] times (default 3), checking
    ///
    /// - **sequential execution**: every task succeeds, each model is loaded once per batch
    ///   (as planned), and no more models are ever resident together than the policy allows
    ///   (one by default);
    /// - **memory stability**: the batches' peaks and end RSS spread by at most
    ///   [`SuiteConfig::stability_tolerance`];
    /// - **peak below budget**: as in [`Self::model_tests`];
    /// - **working memory**: each model's largest task working peak is within its
    ///   [`SuiteConfig::working_allowances`] entry (reported for every model);
    /// - **resource cleanup**: at the end nothing is reserved or resident, RSS is within
    ///   [`SuiteConfig::baseline_tolerance_for`] the smallest model's resident size of where it
    ///   started (after each model's warm-up load), and the orchestrator's post-unload check
    ///   flagged no unload.
    ///
    /// The suite is named `orchestration-<stage>+<stage>…`.
    #[must_use]
    pub fn orchestration_tests(&self, pipeline: &[&str], inputs: &[PathBuf]) -> SuiteResult {
        let mut result = SuiteResult::new(&format!("orchestration-{}", pipeline.join("+")));
        if pipeline.is_empty() || inputs.is_empty() {
            result.record(
                "sequential execution",
                Err("an orchestration suite needs at least one stage and one input".into()),
            );
            return self.finish(result);
        }
        let work = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                result.record("sequential execution", Err(format!("no work dir: {e}")));
                return self.finish(result);
            }
        };
        let tasks = match self.pipeline_tasks(pipeline, inputs, work.path()) {
            Ok(tasks) => tasks,
            Err(e) => {
                result.record("sequential execution", Err(e));
                return self.finish(result);
            }
        };
        let models: BTreeSet<&str> = pipeline.iter().copied().collect();

        // Warm up every model once outside the profiled run (ONNX Runtime's per-process globals).
        match self.orchestrator(
            ProfilerHandle::disabled(),
            CalibrationStore::in_memory(),
            false,
        ) {
            Ok(mut warm) => {
                for m in &models {
                    if let Err(e) = warm.load_model(m) {
                        result.record(
                            "sequential execution",
                            Err(format!("{m} does not load: {e}")),
                        );
                        return self.finish(result);
                    }
                    warm.unload_model(m);
                }
            }
            Err(e) => {
                result.record("sequential execution", Err(e));
                return self.finish(result);
            }
        }

        let Profiled {
            profiler,
            handle,
            mut orch,
        } = match self.profiled(CalibrationStore::in_memory(), true) {
            Ok(p) => p,
            Err(e) => {
                result.record("sequential execution", Err(e));
                return self.finish(result);
            }
        };
        let repeats = self.config.repeats.max(1);
        let mut problems: Vec<String> = Vec::new();
        let mut loads_per_run = Vec::new();
        for run in 1..=repeats {
            handle.note(&format!("run {run} start"));
            let mut failures: Vec<String> = Vec::new();
            let outcome = orch.run_batch(&tasks, &mut |i, r| {
                if let Err(e) = r {
                    failures.push(format!("{}: {e}", tasks[i].task.label));
                }
            });
            handle.note(&format!("run {run} end"));
            match outcome {
                Ok(summary) => {
                    loads_per_run.push(summary.n_loads);
                    if summary.n_loads != models.len() || summary.planned_loads != models.len() {
                        problems.push(format!(
                            "run {run}: {} loads ({} planned) for {} models",
                            summary.n_loads,
                            summary.planned_loads,
                            models.len()
                        ));
                    }
                }
                Err(e) => problems.push(format!("run {run}: the batch cannot run: {e}")),
            }
            for f in failures.into_iter().take(5) {
                problems.push(format!("run {run}: {f}"));
            }
        }
        let max_resident = max_resident(orch.events());
        let allowed = self.orchestrator.max_resident.max(1);
        if max_resident > allowed {
            problems.push(format!(
                "{max_resident} models were resident at once; the policy allows {allowed}"
            ));
        }
        let reserved = orch.budget().reserved();
        let resident: Vec<String> = orch
            .resident_models()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let smallest_resident = orch
            .stats()
            .iter()
            .filter(|(m, _)| models.contains(m.as_str()))
            .map(|(_, s)| s.resident)
            .min()
            .unwrap_or_default();
        let leaks: Vec<String> = orch
            .stats()
            .iter()
            .filter(|(_, s)| s.leaks_suspected > 0)
            .map(|(m, s)| {
                format!(
                    "{m}: {} (largest shortfall {})",
                    s.leaks_suspected, s.shortfall_max
                )
            })
            .collect();
        let working: Vec<(String, Bytes)> = models
            .iter()
            .map(|m| {
                let peak = orch.stats().get(*m).map(|s| s.working_peak_max);
                ((*m).to_owned(), peak.unwrap_or_default())
            })
            .collect();
        let report = finish_profile(orch, profiler);

        result.record(
            "sequential execution",
            if problems.is_empty() {
                Ok(format!(
                    "{repeats} runs × {} tasks ok; loads per run {loads_per_run:?} for {} \
                     models; at most {max_resident} resident",
                    tasks.len(),
                    models.len()
                ))
            } else {
                Err(format!(
                    "{}\n{}",
                    problems.join("; "),
                    assert::timeline_summary(&report)
                ))
            },
        );

        let runs = run_figures(&report, repeats);
        result.record(
            "memory stability",
            stability_check(&runs, self.config.stability_tolerance, &report),
        );

        result.record(
            "peak below budget",
            self.peak_check(&pipeline.join("+"), &report),
        );

        result.record(
            "working memory",
            working_check(&working, &self.config.working_allowances),
        );

        let mut cleanup = baseline_check(
            &pipeline.join("+"),
            &report,
            self.config.baseline_tolerance_for(smallest_resident),
            reserved,
            &resident,
        );
        // The orchestrator's own check after each unload (it trims twice before it suspects a
        // leak): a flag fails the suite, with the shortfalls.
        if !leaks.is_empty() {
            cleanup = Err(format!(
                "{}: the orchestrator's post-unload check flagged {} (tolerance {}){}\n{}",
                pipeline.join("+"),
                leaks.join(", "),
                self.orchestrator.cleanup_tolerance,
                cleanup
                    .as_ref()
                    .map_or_else(|e| format!("; also {e}"), |f| format!("; {f}")),
                assert::timeline_summary(&report)
            ));
        }
        result.record("resource cleanup", cleanup);
        result.report = Some(report);
        self.finish(result)
    }

    /// "peak below budget": the run's peak under the budget's limit and, when
    /// [`SuiteConfig::peak_allowance`] is set, its rise above the suite's starting RSS within it.
    fn peak_check(&self, subject: &str, report: &Report) -> std::result::Result<String, String> {
        let limit = self.budget.effective_limit();
        assert::assert_peak_below(report, limit).map_err(|f| explain(subject, &f))?;
        let peak = assert::peak_of(report);
        let start = report.rss_start.unwrap_or_default();
        let rise = peak.saturating_sub(start);
        let figures = format!("{}; rose {rise} above {start}", peak_figures(report, limit));
        match self.config.peak_allowance {
            Some(allowance) if rise > allowance => Err(format!(
                "{subject}: the peak rose {rise} above the suite's start ({start} → {peak}), \
                 {} more than the {allowance} allowed (SuiteConfig::peak_allowance)\n{}",
                rise.saturating_sub(allowance),
                assert::timeline_summary(report)
            )),
            Some(allowance) => Ok(format!("{figures}, allowance {allowance}")),
            None => Ok(figures),
        }
    }

    /// Every input through `pipeline`'s models in order, as `masp run` plans them
    /// (`masp_run::pipeline`): one way to turn stages into tasks.
    fn pipeline_tasks(
        &self,
        pipeline: &[&str],
        inputs: &[PathBuf],
        work: &Path,
    ) -> Result<Vec<BatchTask>, String> {
        let tasks = masp_run::pipeline::Pipeline::of_models(pipeline)
            .and_then(|p| p.tasks(&self.registry, inputs, work))
            .map_err(|e| e.to_string())?;
        Ok(tasks.into_iter().map(|t| t.batch).collect())
    }
}

/// A failed assertion as a check's failure text: the subject and message on the first line (the
/// table's figures), the evidence below.
fn explain(subject: &str, failure: &AssertionFailure) -> String {
    format!("{subject}: {}\n{}", failure.message, failure.summary)
}

fn peak_figures(report: &Report, limit: Bytes) -> String {
    let peak = assert::peak_of(report);
    format!(
        "peak {peak} of {limit} ({:.0}%)",
        100.0 * peak.as_mib_f64() / limit.as_mib_f64().max(f64::MIN_POSITIVE)
    )
}

/// The orchestration suite's "working memory": each model's largest task working peak
/// within its allowance (models without one are reported only).
fn working_check(
    working: &[(String, Bytes)],
    allowances: &[(String, Bytes)],
) -> std::result::Result<String, String> {
    let mut figures = Vec::new();
    let mut over = Vec::new();
    for (model, peak) in working {
        match allowances.iter().find(|(m, _)| m == model) {
            Some((_, allowed)) if peak > allowed => over.push(format!(
                "{model}: a task took {peak} of working memory, {} more than the {allowed} \
                 allowed (SuiteConfig::working_allowances)",
                peak.saturating_sub(*allowed)
            )),
            Some((_, allowed)) => figures.push(format!("{model} {peak} (allowance {allowed})")),
            None => figures.push(format!("{model} {peak} (not judged)")),
        }
    }
    if over.is_empty() {
        Ok(format!("largest task per model: {}", figures.join(", ")))
    } else {
        Err(over.join("; "))
    }
}

fn baseline_check(
    subject: &str,
    report: &Report,
    tolerance: Bytes,
    reserved: Bytes,
    resident: &[String],
) -> std::result::Result<String, String> {
    if reserved > Bytes::ZERO || !resident.is_empty() {
        return Err(format!(
            "{subject}: after cleanup {reserved} is still reserved and {resident:?} resident"
        ));
    }
    assert::assert_returns_to_baseline(report, tolerance)
        .map(|()| {
            let start = report.rss_start.unwrap_or_default();
            let end = report.rss_end.unwrap_or_default();
            format!(
                "RSS {start} → {end} ({}, tolerance {tolerance}), 0 B reserved, nothing resident",
                masp_profiler::ByteDelta::between(start, end)
            )
        })
        .map_err(|f| explain(subject, &f))
}

/// "cleanup effectiveness": the profiler's mean over `model`'s cycles against `min`.
fn effectiveness_check(
    model: &str,
    report: &Report,
    min: f64,
) -> std::result::Result<String, String> {
    let summary = report.models.iter().find(|m| m.model == model);
    let Some(mean) = summary.and_then(|m| m.mean_effectiveness) else {
        return Err(format!(
            "{model}: no cycle grew RSS by 1 MiB or more, so the profiler has no cleanup \
             effectiveness to judge"
        ));
    };
    let figures = format!(
        "{:.0}% of load growth returned on average (at least {:.0}% required)",
        mean * 100.0,
        min * 100.0
    );
    if mean >= min {
        Ok(figures)
    } else {
        Err(format!(
            "{model}: unloading gives back too little: {figures}\n{}",
            assert::timeline_summary(report)
        ))
    }
}

fn estimate_check(
    model: &str,
    estimate: Bytes,
    measured: Bytes,
    config: &SuiteConfig,
) -> std::result::Result<String, String> {
    let error_pct =
        (estimate.get() as f64 - measured.get() as f64) / measured.get().max(1) as f64 * 100.0;
    let figures =
        format!("metadata estimate {estimate}, measured load peak {measured} ({error_pct:+.0}%)");
    let within = (-config.estimate_under_pct..=config.estimate_over_pct).contains(&error_pct)
        || estimate.get().abs_diff(measured.get()) <= config.estimate_slack.get();
    if within {
        Ok(figures)
    } else if error_pct < 0.0 {
        Err(format!(
            "{model}: {figures}: the estimate is more than {}% (and {}) too low, so the budget \
             admits loads that take more than was reserved",
            config.estimate_under_pct, config.estimate_slack
        ))
    } else {
        Err(format!(
            "{model}: {figures}: the estimate is more than {}% (and {}) too high",
            config.estimate_over_pct, config.estimate_slack
        ))
    }
}

/// Most models resident at once, from the orchestrator's events.
fn max_resident(events: &[RunEvent]) -> usize {
    let mut now: BTreeSet<&str> = BTreeSet::new();
    let mut most = 0;
    for e in events {
        match e {
            RunEvent::Loaded { model, .. } => {
                now.insert(model);
                most = most.max(now.len());
            }
            RunEvent::Unloaded { model, .. } => {
                now.remove(model.as_str());
            }
            _ => {}
        }
    }
    most
}

/// One batch run's memory: its peak and the RSS it ended at.
#[derive(Debug, Clone, Copy)]
struct RunMemory {
    peak: Bytes,
    end: Bytes,
}

/// Per-run peak and end RSS from the `run N start` / `run N end` notes.
fn run_figures(report: &Report, repeats: usize) -> Vec<Option<RunMemory>> {
    let note = |text: &str| {
        report
            .marks
            .iter()
            .position(|m| matches!(&m.event, Event::Note { text: t } if t == text))
    };
    (1..=repeats)
        .map(|run| {
            let start = note(&format!("run {run} start"))?;
            let end = note(&format!("run {run} end"))?;
            let peak = report.marks[start + 1..=end]
                .iter()
                .map(|m| m.peak_since_previous.max(m.rss))
                .max()?;
            Some(RunMemory {
                peak,
                end: report.marks[end].rss,
            })
        })
        .collect()
}

fn stability_check(
    runs: &[Option<RunMemory>],
    tolerance: Bytes,
    report: &Report,
) -> std::result::Result<String, String> {
    let Some(runs) = runs.iter().copied().collect::<Option<Vec<_>>>() else {
        return Err("the profiler lost a run's start or end mark".into());
    };
    let spread = |f: fn(&RunMemory) -> Bytes| {
        let values: Vec<Bytes> = runs.iter().map(f).collect();
        let max = values.iter().copied().max().unwrap_or_default();
        let min = values.iter().copied().min().unwrap_or_default();
        (values, max.saturating_sub(min))
    };
    let (peaks, peak_spread) = spread(|r| r.peak);
    let (ends, end_spread) = spread(|r| r.end);
    let list = |v: &[Bytes]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut figures = String::new();
    let _ = write!(
        figures,
        "peaks {} (spread {peak_spread}); end RSS {} (spread {end_spread})",
        list(&peaks),
        list(&ends)
    );
    if peak_spread <= tolerance && end_spread <= tolerance {
        Ok(figures)
    } else {
        Err(format!(
            "memory is not stable over repeated batches (tolerance {tolerance}): {figures}\n{}",
            assert::timeline_summary(report)
        ))
    }
}

/// End a profiled run: drop the orchestrator (unloading what it holds), stop the profiler, and
/// report with the orchestrator's kernel peak folded in (loads reset the kernel's high-water
/// mark to measure their own peaks, so the profiler alone may miss an earlier one).
fn finish_profile(orch: SequentialOrchestrator, profiler: MemoryProfiler) -> Report {
    let peak = orch.peak_rss();
    drop(orch);
    let mut profile = profiler.stop();
    profile.kernel_peak = profile.kernel_peak.max(Some(peak));
    profile.report()
}
