//! [`SequentialOrchestrator`]: load, run, unload — one model at a time by default — under the
//! hard budget.
//!
//! Every load is admitted by the budget first (a [`Reservation`] of the model's estimated load
//! peak, held as long as the session lives and resized to the measured resident size after the
//! load). A model whose estimate cannot fit even alone is refused before ONNX Runtime sees it.
//! Every unload drops the session, trims the allocator, and checks that resident memory came
//! back; a shortfall is recorded as a suspected leak. While a task runs, the RSS is checked
//! between chunks, and within a model call by the [`watchdog`](crate::watchdog), which stops the
//! call when RSS crosses the limit: the task is
//! cancelled, and retried down a degradation ladder — smaller chunks, then one intra-op thread —
//! before it is skipped with a typed error. The batch goes on either way.
//!
//! One file per phase, each an `impl SequentialOrchestrator` block: `prepare` (find, verify,
//! estimate), `admit` (what to reserve, and reserving it), `load` (in-process or in a worker),
//! `unload` (cleanup and leak checks), `task` (running a task, the degradation ladder, worker
//! retries). `config`, `events` and `model` hold plain types and `measure` the RSS helpers;
//! none of those four imports a phase, and no phase imports another.
//!
//! [`Reservation`]: masp_budget::Reservation

mod admit;
mod config;
mod events;
mod load;
mod measure;
mod model;
mod prepare;
mod task;
mod unload;

use std::collections::BTreeMap;

use masp_budget::{Budget, Bytes, probe};
use masp_model_registry::estimate::CalibrationStore;
use masp_model_registry::manifest::Registry;
use masp_profiler::ProfilerHandle;

pub use config::{AudioTask, OrchestratorConfig, WORKER_BASE_RSS};
pub use events::{EventSink, ModelStats, RunEvent, TaskFailure};
pub use model::Prepared;

use crate::Result;
use crate::adapter::AdapterRegistry;
use crate::runtime::Runtime;
use crate::watchdog::Watchdog;
use model::Resident;

/// Builds a [`SequentialOrchestrator`]: [`SequentialOrchestrator::builder`], optional parts
/// with `with_*`, then [`OrchestratorBuilder::build`].
#[derive(Debug)]
#[must_use]
pub struct OrchestratorBuilder {
    budget: Budget,
    registry: Registry,
    adapters: AdapterRegistry,
    profiler: ProfilerHandle,
    calibration: CalibrationStore,
    config: OrchestratorConfig,
}

impl OrchestratorBuilder {
    /// Mark load, task and unload phases on `profiler`. Default: none
    /// ([`ProfilerHandle::disabled`]).
    pub fn with_profiler(mut self, profiler: ProfilerHandle) -> Self {
        self.profiler = profiler;
        self
    }

    /// Learn estimates into `calibration` and use what it holds. Default: an in-memory store
    /// that starts empty ([`CalibrationStore::in_memory`]), so estimates come from metadata.
    pub fn with_calibration(mut self, calibration: CalibrationStore) -> Self {
        self.calibration = calibration;
        self
    }

    /// The configuration. Default: [`OrchestratorConfig::default`].
    pub fn with_config(mut self, config: OrchestratorConfig) -> Self {
        self.config = config;
        self
    }

    /// The orchestrator, with ONNX Runtime initialised and the budget's baseline measured.
    ///
    /// # Errors
    /// [`Error::RuntimeMissing`] / [`Error::RuntimeInit`] when ONNX Runtime is unavailable.
    ///
    /// [`Error::RuntimeMissing`]: crate::Error::RuntimeMissing
    /// [`Error::RuntimeInit`]: crate::Error::RuntimeInit
    pub fn build(self) -> Result<SequentialOrchestrator> {
        SequentialOrchestrator::from_builder(self)
    }
}

/// Loads, runs and unloads models one at a time under a [`Budget`].
pub struct SequentialOrchestrator {
    runtime: &'static Runtime,
    registry: Registry,
    adapters: AdapterRegistry,
    budget: Budget,
    profiler: ProfilerHandle,
    calibration: CalibrationStore,
    config: OrchestratorConfig,
    resident: Vec<Resident>,
    events: Vec<RunEvent>,
    sink: Option<EventSink>,
    stats: BTreeMap<String, ModelStats>,
    failures: Vec<TaskFailure>,
    tick: u64,
    /// Highest kernel high-water mark seen before each reset (loads reset it to measure peaks).
    peak_rss: Bytes,
    /// Intra-op threads per model after a degradation.
    thread_override: Vec<(String, usize)>,
    /// Highest RSS of any one worker process (its kernel high-water mark).
    worker_peak: Bytes,
    /// Stops a model call whose RSS crosses the limit ([`OrchestratorConfig::watchdog`]).
    watchdog: Option<Watchdog>,
}

impl std::fmt::Debug for SequentialOrchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequentialOrchestrator")
            .field("budget", &self.budget)
            .field("resident", &self.resident_models())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SequentialOrchestrator {
    /// Start building an orchestrator over `registry`'s models, admitting loads against
    /// `budget` and loading each model with the adapter `adapters` has for its kind
    /// (`masp_models::registry()` has the ones masp ships). The profiler, the calibration store
    /// and the configuration are optional ([`OrchestratorBuilder`]).
    pub fn builder(
        budget: Budget,
        registry: Registry,
        adapters: AdapterRegistry,
    ) -> OrchestratorBuilder {
        OrchestratorBuilder {
            budget,
            registry,
            adapters,
            profiler: ProfilerHandle::disabled(),
            calibration: CalibrationStore::in_memory(),
            config: OrchestratorConfig::default(),
        }
    }

    fn from_builder(b: OrchestratorBuilder) -> Result<Self> {
        let runtime = Runtime::get()?;
        let watchdog = b
            .config
            .watchdog
            .map(Watchdog::start)
            .transpose()
            .map_err(|e| crate::Error::Watchdog {
                reason: e.to_string(),
            })?;
        b.budget.measure_baseline();
        Ok(Self {
            runtime,
            registry: b.registry,
            adapters: b.adapters,
            budget: b.budget,
            profiler: b.profiler,
            calibration: b.calibration,
            config: b.config,
            resident: Vec::new(),
            events: Vec::new(),
            sink: None,
            stats: BTreeMap::new(),
            failures: Vec::new(),
            tick: 0,
            peak_rss: probe::process_peak_rss().unwrap_or_default(),
            thread_override: Vec::new(),
            worker_peak: Bytes::ZERO,
            watchdog,
        })
    }

    /// Send every event to `sink` as it happens.
    pub fn with_event_sink(mut self, sink: EventSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OrchestratorConfig {
        &self.config
    }

    /// The budget loads are admitted against.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The model registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The calibration store (save it with [`CalibrationStore::save`] at the end of a run).
    pub fn calibration(&self) -> &CalibrationStore {
        &self.calibration
    }

    /// Every event so far — only when [`OrchestratorConfig::record_events`] is on.
    pub fn events(&self) -> &[RunEvent] {
        &self.events
    }

    /// Per-model statistics of the run so far.
    pub fn stats(&self) -> &BTreeMap<String, ModelStats> {
        &self.stats
    }

    /// Tasks that failed so far, in order.
    pub fn failures(&self) -> &[TaskFailure] {
        &self.failures
    }

    /// Record an event: fold it into the statistics, pass it to the sink, keep it if asked.
    fn record(&mut self, event: RunEvent) {
        let model = match &event {
            RunEvent::Loaded { model, .. }
            | RunEvent::Unloaded { model, .. }
            | RunEvent::LoadRefused { model, .. }
            | RunEvent::LeanCopyWritten { model, .. }
            | RunEvent::OverrideExceeded { model, .. }
            | RunEvent::TaskDone { model, .. }
            | RunEvent::TaskFailed { model, .. } => model.as_str(),
            RunEvent::Degraded { model, .. } | RunEvent::WatchdogFired { model, .. } => {
                model.as_str()
            }
        };
        // One entry per model, created once: no allocation per event in the steady state.
        if !self.stats.contains_key(model) {
            self.stats.insert(model.to_string(), ModelStats::default());
        }
        if let Some(stats) = self.stats.get_mut(model) {
            match &event {
                RunEvent::Loaded {
                    source,
                    estimated_peak,
                    measured_peak,
                    resident,
                    load_ms,
                    ..
                } => {
                    stats.loads += 1;
                    stats.load_ms_total += load_ms;
                    stats.estimated_peak = Some((*estimated_peak, *source));
                    stats.measured_peak_max = stats.measured_peak_max.max(*measured_peak);
                    stats.resident = *resident;
                }
                RunEvent::Unloaded {
                    trimmed,
                    freed,
                    shortfall,
                    leak_suspected,
                    worker_returned,
                    ..
                } => {
                    stats.unloads += 1;
                    stats.worker_returned_total =
                        stats.worker_returned_total.saturating_add(*worker_returned);
                    stats.freed_total = stats.freed_total.saturating_add(*freed);
                    stats.trimmed_total = stats.trimmed_total.saturating_add(*trimmed);
                    stats.shortfall_max = stats.shortfall_max.max(*shortfall);
                    stats.leaks_suspected += u64::from(*leak_suspected);
                }
                RunEvent::LoadRefused { .. } => stats.refused += 1,
                RunEvent::LeanCopyWritten { .. } => stats.lean_copies_written += 1,
                RunEvent::OverrideExceeded { .. } => {}
                RunEvent::TaskDone { working_peak, .. } => {
                    stats.tasks_done += 1;
                    stats.working_peak_max = stats.working_peak_max.max(*working_peak);
                }
                RunEvent::Degraded { .. } => stats.degradations += 1,
                RunEvent::WatchdogFired { .. } => stats.watchdog_stops += 1,
                RunEvent::TaskFailed { .. } => stats.tasks_failed += 1,
            }
        }
        if let RunEvent::TaskFailed {
            task,
            model,
            reason,
        } = &event
        {
            self.failures.push(TaskFailure {
                task: task.clone(),
                model: model.clone(),
                reason: reason.clone(),
            });
        }
        if let Some(sink) = &mut self.sink {
            sink(&event);
        }
        if self.config.record_events {
            self.events.push(event);
        }
    }

    /// Names of the models currently loaded, oldest first.
    pub fn resident_models(&self) -> Vec<&str> {
        self.resident.iter().map(|r| r.name.as_str()).collect()
    }

    /// The process's peak RSS over the orchestrator's life (the kernel's high-water mark,
    /// including the marks read before each per-load reset).
    pub fn peak_rss(&self) -> Bytes {
        self.peak_rss
            .max(probe::process_peak_rss().unwrap_or_default())
    }

    /// The highest RSS any one worker process reached (its kernel high-water mark, read at
    /// the end of its load and of each task); zero when no model ran in a worker. With one
    /// model resident at a time, the run's total peak is at most [`Self::peak_rss`] plus this.
    pub fn worker_peak_rss(&self) -> Bytes {
        self.worker_peak
    }
}
