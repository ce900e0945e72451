//! What every command needs: the registry (built-ins + manifest), the budget, the profiler when
//! a report is asked for, the calibration store, and an orchestrator over them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use masp_budget::{Budget, BudgetConfig};
use masp_model_registry::estimate::CalibrationStore;
use masp_model_registry::manifest::Registry;
use masp_orchestrator::runtime::SessionOptions;
use masp_orchestrator::worker::WorkerConfig;
use masp_orchestrator::{OrchestratorConfig, SequentialOrchestrator};
use masp_profiler::{MemoryProfiler, ProfilerConfig, ProfilerHandle};

use crate::flags::Common;

/// Set to `1` to run without the memory watchdog: for the tests that show the overshoot it
/// prevents, never for use (nothing then stops a model call that crosses the budget).
pub const NO_WATCHDOG_VAR: &str = "MASP_TEST_NO_WATCHDOG";

/// A running session of masp: orchestrator plus, when asked, the profiler.
pub struct Session {
    pub orchestrator: SequentialOrchestrator,
    /// The effective configuration.
    pub settings: crate::config::Settings,
    /// Progress bars (drawn on a terminal unless `--quiet`).
    pub progress: crate::progress::Progress,
    profiler: Option<MemoryProfiler>,
    report_dir: Option<PathBuf>,
}

/// The built-in models plus the `[[model]]` entries of the configuration file, as `settings`
/// read it (the file is read once, by `Settings`).
pub fn registry(settings: &crate::config::Settings) -> anyhow::Result<Registry> {
    let mut registry = Registry::builtin();
    if let (Some(path), Some(models)) = (&settings.file, &settings.models) {
        registry.add_manifest_table(models.clone(), path)?;
    }
    Ok(registry)
}

/// The budget: flag, else `MASP_BUDGET`, else masp.toml, else 16 GiB — capped by the machine.
pub fn budget(common: &Common) -> anyhow::Result<Budget> {
    Ok(budget_for(&crate::config::Settings::resolve(common)?))
}

/// The budget of resolved `settings`.
pub fn budget_for(settings: &crate::config::Settings) -> Budget {
    let mut config = BudgetConfig::default();
    if let Some(limit) = settings.budget.value {
        config = config.with_limit(limit);
    }
    Budget::new(config)
}

fn calibration() -> CalibrationStore {
    // Calibration only improves estimates: without a writable cache, run without it.
    CalibrationStore::default_path()
        .and_then(|p| CalibrationStore::open(&p))
        .unwrap_or_else(|_| CalibrationStore::in_memory())
}

impl Session {
    pub fn start(common: &Common) -> anyhow::Result<Self> {
        Self::start_with(common, crate::config::Settings::resolve(common)?)
    }

    /// [`Session::start`] with settings the command already resolved (the configuration is
    /// read once).
    pub fn start_with(common: &Common, settings: crate::config::Settings) -> anyhow::Result<Self> {
        let budget = budget_for(&settings);
        let registry = registry(&settings)?;
        let profiler = match &common.report {
            Some(_) => Some(
                MemoryProfiler::start(
                    ProfilerConfig::default().with_budget_limit(budget.effective_limit()),
                )
                .context("starting the memory profiler")?,
            ),
            None => None,
        };
        let handle = profiler
            .as_ref()
            .map_or_else(ProfilerHandle::disabled, MemoryProfiler::handle);
        let config = OrchestratorConfig {
            session: SessionOptions {
                intra_op_threads: settings.threads.value,
                ..SessionOptions::default()
            },
            max_resident: settings.max_resident.value,
            isolation: settings.isolation.value,
            // This binary is the worker: `masp worker`.
            worker: WorkerConfig::new(masp_orchestrator::worker::default_program()),
            // Test-only: the tests that measure what the watchdog prevents turn it off here.
            watchdog: if crate::setting::env_var(NO_WATCHDOG_VAR).as_deref() == Some("1") {
                None
            } else {
                OrchestratorConfig::default().watchdog
            },
            ..OrchestratorConfig::default()
        };
        crate::logs::init_logs(common.verbose);
        let progress = crate::progress::Progress::new(common.quiet, budget.effective_limit());
        let follow = progress.clone();
        let orchestrator =
            SequentialOrchestrator::builder(budget, registry, masp_models::registry())
                .with_profiler(handle)
                .with_calibration(calibration())
                .with_config(config)
                .build()?
                .with_event_sink(Box::new(move |event| {
                    crate::logs::log_event(event);
                    follow.event(event);
                }));
        Ok(Self {
            orchestrator,
            settings,
            progress,
            profiler,
            report_dir: common.report.clone(),
        })
    }

    /// The run's peak memory for summary lines: this process's, and the largest worker's when
    /// models ran in workers.
    pub fn peak_text(&self) -> String {
        let own = self.orchestrator.peak_rss();
        let worker = self.orchestrator.worker_peak_rss();
        if worker.get() == 0 {
            format!("peak RSS {own}")
        } else {
            format!("peak RSS {own} + {worker} in the largest worker")
        }
    }

    /// Save calibration and write the report; returns the report directory when one was written.
    pub fn finish(mut self) -> anyhow::Result<Option<PathBuf>> {
        self.orchestrator.unload_all();
        let _ = self.orchestrator.calibration().save();
        let (Some(profiler), Some(dir)) = (self.profiler.take(), self.report_dir.take()) else {
            return Ok(None);
        };
        let mut profile = profiler.stop();
        profile.kernel_peak = profile.kernel_peak.max(Some(self.orchestrator.peak_rss()));
        let report = profile.report();
        report
            .write_all(&dir)
            .with_context(|| format!("writing the report into {}", dir.display()))?;
        write_run_json(&dir, &self.orchestrator)?;
        Ok(Some(dir))
    }
}

fn write_run_json(dir: &Path, orch: &SequentialOrchestrator) -> anyhow::Result<()> {
    let run = serde_json::json!({
        "budget": orch.budget().describe(),
        "limit": orch.budget().effective_limit(),
        "peak_rss": orch.peak_rss(),
        "worker_peak_rss": orch.worker_peak_rss(),
        "models": orch.stats(),
        "failures": orch.failures(),
        "estimate_error": orch.calibration().error_table(),
    });
    masp_run::write_file(&dir.join("run.json"), &serde_json::to_vec_pretty(&run)?)?;
    Ok(())
}
