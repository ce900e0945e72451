//! [`SequentialOrchestrator`]: load, run, unload — one model at a time by default — under the
//! hard budget.
//!
//! Every load is admitted by the budget first (a [`Reservation`] of the model's estimated load
//! peak, held as long as the session lives and resized to the measured resident size after the
//! load). A model whose estimate cannot fit even alone is refused before ONNX Runtime sees it.
//! Every unload drops the session, trims the allocator, and checks that resident memory came
//! back; a shortfall is recorded as a suspected leak. While a task runs, the RSS is checked
//! between chunks (and the profiler's watch fires when it crosses the budget): the task is
//! cancelled, and retried down a degradation ladder — smaller chunks, then one intra-op thread —
//! before it is skipped with a typed error. The batch goes on either way.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use masp_budget::{Budget, Bytes, Reservation, probe, trim};
use masp_model_registry::estimate::{self, CalibrationStore, EstimateSource, MemoryEstimate};
use masp_model_registry::manifest::{Isolation, ModelSpec, Registry};
use masp_model_registry::onnx::OnnxMetadata;
use masp_profiler::{Event, ProfilerHandle};
use serde::Serialize;

use crate::adapter::{AdapterRegistry, ModelAdapter, TaskContext};
use crate::runtime::{FIRST_SESSION_ALLOWANCE, Runtime, SessionOptions};
use crate::task::{TaskOutput, TaskParams};
use crate::worker::protocol::LoadRequest;
use crate::worker::{WorkerAdapter, WorkerConfig, WorkerFailure};
use crate::{Error, Result};

/// What a worker process holds before its model: the process itself (binary, libraries,
/// heap) once ONNX Runtime is initialised. Measured here at 23.5 MiB (release); reserved on
/// top of the
/// model's estimate and the runtime's first-session allowance when a model loads in a worker.
pub const WORKER_BASE_RSS: Bytes = Bytes::from_mib(24);

/// How the orchestrator behaves; the defaults follow the seed (one resident model).
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestratorConfig {
    /// Session options for every model (intra-op threads…).
    pub session: SessionOptions,
    /// Models that may stay resident at once. Default 1: loading a model unloads the current
    /// one. More keeps models loaded while they fit in the budget (evicting the least recently
    /// used, or what a plan says is needed farthest in the future).
    pub max_resident: usize,
    /// How far RSS may stay above its pre-load level after an unload and cleanup before a leak is
    /// suspected. Default 16 MiB: allocator and runtime caches legitimately keep a little.
    pub cleanup_tolerance: Bytes,
    /// How long to wait for the system to free memory when the budget has room but the machine
    /// does not (another process is using it). Default 10 s.
    pub system_wait: Duration,
    /// Whether a task cancelled for crossing the budget is retried down the degradation ladder.
    /// Default true.
    pub degrade: bool,
    /// Audio per chunk before any calibration, in seconds. Default 2 s: small buffers, few calls.
    pub chunk_s: f64,
    /// Where models run: in this process (default) or each in a worker process of its own
    /// ([`Isolation::Process`]). A model's manifest entry may say otherwise for that model.
    pub isolation: Isolation,
    /// How worker processes are started, capped, timed and retried (process isolation).
    pub worker: WorkerConfig,
    /// Keep every [`RunEvent`] in memory ([`SequentialOrchestrator::events`]). Default false:
    /// a batch of many files must not grow memory with its length, and small long-lived
    /// allocations between model loads fragment the heap. Per-model statistics
    /// ([`SequentialOrchestrator::stats`]) are always kept; to keep every event, set an
    /// [`EventSink`] (e.g. one that appends JSON lines to a file) or turn this on for tests.
    pub record_events: bool,
    /// Where lean copies of models marked `lean = true` are written. Default `None`: `lean/`
    /// in the asset cache.
    pub lean_dir: Option<PathBuf>,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            session: SessionOptions::default(),
            max_resident: 1,
            cleanup_tolerance: Bytes::from_mib(16),
            system_wait: Duration::from_secs(10),
            degrade: true,
            chunk_s: 2.0,
            isolation: Isolation::InProcess,
            worker: WorkerConfig::new(crate::worker::default_program()),
            record_events: false,
            lean_dir: None,
        }
    }
}

/// An audio task: one input through one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioTask {
    /// Name in reports, e.g. `vad a.wav`.
    pub label: String,
    /// The model (registry name).
    pub model: String,
    /// The input file.
    pub input: PathBuf,
    /// What to do with it.
    pub params: TaskParams,
}

/// What happened during a run, in order; the report's raw material.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEvent {
    /// A model was loaded.
    Loaded {
        /// Model name.
        model: String,
        /// Where the estimate came from.
        source: EstimateSource,
        /// Estimated load peak (RSS growth).
        estimated_peak: Bytes,
        /// Measured load peak (RSS growth).
        measured_peak: Bytes,
        /// Measured RSS growth once loaded.
        resident: Bytes,
        /// Session creation time in ms.
        load_ms: f64,
        /// Intra-op threads of the session.
        threads: usize,
        /// The worker process running it, under process isolation.
        #[serde(skip_serializing_if = "Option::is_none")]
        worker_pid: Option<u32>,
    },
    /// A model was unloaded and memory cleaned up.
    Unloaded {
        /// Model name.
        model: String,
        /// Why: `switch`, `evict`, `degrade`, `end`, `explicit`.
        reason: String,
        /// RSS the allocator trim returned.
        trimmed: Bytes,
        /// RSS freed by unload + cleanup.
        freed: Bytes,
        /// RSS above the expected post-unload level.
        shortfall: Bytes,
        /// Whether `shortfall` exceeded the tolerance.
        leak_suspected: bool,
        /// Under process isolation: the worker's RSS when it was told to exit, all returned
        /// (the process was reaped). Zero in-process.
        worker_returned: Bytes,
    },
    /// A lean copy of a model marked `lean = true` was written before its load (once per model
    /// file; later loads use it).
    LeanCopyWritten {
        /// Model name.
        model: String,
        /// The copy's model file (its weights sit beside it in `model.onnx.data`).
        path: PathBuf,
        /// Weight bytes moved to the data file.
        bytes_moved: Bytes,
        /// Time taken to write it.
        ms: f64,
    },
    /// A load was refused before it was attempted.
    LoadRefused {
        /// Model name.
        model: String,
        /// The error.
        reason: String,
    },
    /// A task finished.
    TaskDone {
        /// Task label.
        task: String,
        /// Model name.
        model: String,
        /// Wall time in ms.
        ms: f64,
        /// Measured RSS above the loaded model while it ran.
        working_peak: Bytes,
        /// Chunk size used.
        chunk_samples: usize,
    },
    /// A task was cancelled and retried with less memory.
    Degraded {
        /// Task label.
        task: String,
        /// Model name.
        model: String,
        /// The step taken: `smaller chunks`, `one thread`.
        step: String,
        /// Numbers behind it.
        detail: String,
    },
    /// A task failed; the batch went on.
    TaskFailed {
        /// Task label.
        task: String,
        /// Model name.
        model: String,
        /// The error.
        reason: String,
    },
}

/// Receives every [`RunEvent`] as it happens (e.g. to append it to a JSON-lines file).
pub type EventSink = Box<dyn FnMut(&RunEvent) + Send>;

/// What happened to one model over the run; bounded however long the batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelStats {
    /// Times loaded.
    pub loads: u64,
    /// Times unloaded.
    pub unloads: u64,
    /// Loads refused or failed.
    pub refused: u64,
    /// Lean copies written for this model (`lean = true`).
    pub lean_copies_written: u64,
    /// Total session creation time, ms.
    pub load_ms_total: f64,
    /// Latest estimate reserved for a load, and its source.
    pub estimated_peak: Option<(Bytes, EstimateSource)>,
    /// Largest measured load peak.
    pub measured_peak_max: Bytes,
    /// Latest measured resident size.
    pub resident: Bytes,
    /// Total RSS freed by unloads + cleanup.
    pub freed_total: Bytes,
    /// Total RSS the allocator trim returned at unloads.
    pub trimmed_total: Bytes,
    /// Total RSS of worker processes returned by ending them at unloads (process isolation).
    pub worker_returned_total: Bytes,
    /// Largest shortfall after an unload (RSS above the expected level).
    pub shortfall_max: Bytes,
    /// Unloads after which a leak was suspected.
    pub leaks_suspected: u64,
    /// Tasks completed.
    pub tasks_done: u64,
    /// Tasks failed or skipped.
    pub tasks_failed: u64,
    /// Degradation steps taken.
    pub degradations: u64,
    /// Largest measured task working memory.
    pub working_peak_max: Bytes,
}

/// A task that failed, kept for the report (the batch went on).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskFailure {
    /// Task label.
    pub task: String,
    /// Model name.
    pub model: String,
    /// The error.
    pub reason: String,
}

/// A model in memory.
#[derive(Debug)]
struct Resident {
    name: String,
    adapter: Box<dyn ModelAdapter>,
    _reservation: Reservation,
    rss_before_load: Bytes,
    estimate: MemoryEstimate,
    key: String,
    last_used: u64,
    threads: usize,
    /// The worker process, under process isolation.
    worker_pid: Option<u32>,
    /// What the model adds to this process's RSS (zero when it runs in a worker).
    in_process: Bytes,
}

/// A model's file, checked and estimated, ready to load.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The registry's spec.
    pub spec: ModelSpec,
    /// The verified file.
    pub path: PathBuf,
    /// The estimate that will be reserved (override > calibrated > metadata).
    pub estimate: MemoryEstimate,
    /// The metadata-only estimate (kept to report estimate error).
    pub metadata_estimate: MemoryEstimate,
    /// Calibration key.
    pub key: String,
    /// Weight bytes in external-data files (memory-mapped when pre-packing is off).
    pub external_weight_bytes: Bytes,
    /// The model is marked `lean = true` and its lean copy is yet to be written: `path` is the
    /// original, the figures are those of the copy, and [`SequentialOrchestrator::load_model`]
    /// writes it first.
    pub lean_pending: bool,
}

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
    stats: std::collections::BTreeMap<String, ModelStats>,
    failures: Vec<TaskFailure>,
    tick: u64,
    /// Highest kernel high-water mark seen before each reset (loads reset it to measure peaks).
    peak_rss: Bytes,
    /// Intra-op threads per model after a degradation.
    thread_override: Vec<(String, usize)>,
    /// Highest RSS of any one worker process (its kernel high-water mark).
    worker_peak: Bytes,
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

fn rss() -> Bytes {
    probe::process_rss().unwrap_or_default()
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
            stats: std::collections::BTreeMap::new(),
            failures: Vec::new(),
            tick: 0,
            peak_rss: probe::process_peak_rss().unwrap_or_default(),
            thread_override: Vec::new(),
            worker_peak: Bytes::ZERO,
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
    pub fn stats(&self) -> &std::collections::BTreeMap<String, ModelStats> {
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
            | RunEvent::TaskDone { model, .. }
            | RunEvent::TaskFailed { model, .. } => model.as_str(),
            RunEvent::Degraded { model, .. } => model.as_str(),
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
                RunEvent::TaskDone { working_peak, .. } => {
                    stats.tasks_done += 1;
                    stats.working_peak_max = stats.working_peak_max.max(*working_peak);
                }
                RunEvent::Degraded { .. } => stats.degradations += 1,
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

    /// Find, verify (sha256 before every load) and estimate a model without loading it.
    ///
    /// # Errors
    /// [`Error::UnknownModel`], registry errors (missing file, checksum mismatch, not ONNX),
    /// [`Error::ModelInterface`] when the file's inputs or outputs do not fit the manifest.
    pub fn prepare(&self, name: &str) -> Result<Prepared> {
        let spec = self
            .registry
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownModel {
                name: name.to_string(),
                known: self.registry.names().join(", "),
            })?;
        let original = spec.verified_path()?;
        let (path, meta, lean_pending) = self.lean_layout(&spec, original)?;
        // A model whose file does not fit its manifest entry fails here, before any memory is
        // reserved for it.
        spec.check_interface(&meta)
            .map_err(|reason| Error::ModelInterface {
                model: spec.name.clone(),
                reason,
            })?;
        let prepacking = self.prepacking_for(&meta);
        let metadata_estimate = estimate::from_metadata(&meta, prepacking);
        let mut key = CalibrationStore::key(name, spec.sha256.as_deref(), meta.file_bytes);
        if spec.lean {
            // The same file loads very differently in each layout: calibrate them apart.
            key.push_str("+lean");
        }
        let first = self.is_first_session(&spec);
        let estimate = match (
            spec.memory_override,
            self.calibration.estimate_for(&key, first),
        ) {
            (Some(peak), calibrated) => MemoryEstimate {
                load_peak: peak,
                resident: calibrated.map_or(peak, |c| c.resident.min(peak)),
                source: EstimateSource::Override,
                includes_runtime_globals: false,
                ..calibrated.unwrap_or(metadata_estimate)
            },
            (None, Some(calibrated)) => calibrated,
            (None, None) => metadata_estimate,
        };
        Ok(Prepared {
            spec,
            path,
            estimate,
            metadata_estimate,
            key,
            external_weight_bytes: meta.external_weight_bytes,
            lean_pending,
        })
    }

    /// The file a model loads from and its metadata. For a model marked `lean`: its lean copy
    /// if written; else, while there are embedded weights to move, the original with the
    /// metadata the copy will have (weights external) and `lean_pending`.
    fn lean_layout(
        &self,
        spec: &ModelSpec,
        original: PathBuf,
    ) -> Result<(PathBuf, OnnxMetadata, bool)> {
        if spec.lean {
            let dir = self.lean_dir()?;
            if let Some(copy) = masp_model_registry::lean::existing(
                &spec.name,
                &original,
                spec.sha256.as_deref(),
                &dir,
            )? {
                let meta = OnnxMetadata::read(&copy)?;
                return Ok((copy, meta, false));
            }
        }
        let mut meta = OnnxMetadata::read(&original)?;
        if spec.lean && meta.embedded_weight_bytes > Bytes::ZERO {
            meta.external_weight_bytes = meta
                .external_weight_bytes
                .saturating_add(meta.embedded_weight_bytes);
            meta.embedded_weight_bytes = Bytes::ZERO;
            return Ok((original, meta, true));
        }
        Ok((original, meta, false))
    }

    /// Whether loading `spec` now creates the first ONNX Runtime session of its process: in
    /// this process until one session exists, and always in a worker (a new process per load).
    fn is_first_session(&self, spec: &ModelSpec) -> bool {
        match self.isolation_for(spec) {
            Isolation::InProcess => self.runtime.first_session_allowance() > Bytes::ZERO,
            Isolation::Process => true,
        }
    }

    fn lean_dir(&self) -> Result<PathBuf> {
        match &self.config.lean_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(masp_model_registry::assets::masp_home()?.join("lean")),
        }
    }

    /// Write the lean copy `prepared` is waiting for, then prepare again from it.
    fn write_lean_copy(&mut self, prepared: Prepared) -> Result<Prepared> {
        let dir = self.lean_dir()?;
        let (path, written) = masp_model_registry::lean::ensure(
            &prepared.spec.name,
            &prepared.path,
            prepared.spec.sha256.as_deref(),
            &dir,
        )?;
        if let Some(written) = written {
            self.record(RunEvent::LeanCopyWritten {
                model: prepared.spec.name.clone(),
                path,
                bytes_moved: written.report.bytes_moved,
                ms: written.ms,
            });
        }
        self.prepare(&prepared.spec.name)
    }

    /// Pre-packing copies weights into new buffers; for weights in an external-data file that
    /// defeats the memory map (measured: a 500 MiB model then loads in ~1 s with a 2× peak
    /// instead of ~1 ms and no peak). So it is off for such models whatever the config says.
    fn prepacking_for(&self, meta: &OnnxMetadata) -> bool {
        self.config.session.prepacking && meta.external_weight_bytes == Bytes::new(0)
    }

    fn refresh_baseline(&self) {
        self.budget.measure_baseline_with(self.workers_rss());
    }

    /// Where `spec` runs: its manifest's choice, else the run's.
    pub fn isolation_for(&self, spec: &ModelSpec) -> Isolation {
        spec.isolation.unwrap_or(self.config.isolation)
    }

    /// What loading `prepared` reserves: its estimated load peak, plus what comes with it.
    /// In-process, the first session of the process also pays the runtime's one-time globals.
    /// In a worker, every load pays for a whole process: its base and the runtime's globals.
    fn load_reservation(&self, prepared: &Prepared) -> Bytes {
        // A peak measured as a first session already holds the runtime's globals.
        let globals = |allowance: Bytes| {
            if prepared.estimate.includes_runtime_globals {
                Bytes::ZERO
            } else {
                allowance
            }
        };
        let extra = match self.isolation_for(&prepared.spec) {
            Isolation::InProcess => globals(self.runtime.first_session_allowance()),
            Isolation::Process => WORKER_BASE_RSS.saturating_add(globals(FIRST_SESSION_ALLOWANCE)),
        };
        prepared.estimate.load_peak.saturating_add(extra)
    }

    /// RSS of the resident models' worker processes, together.
    fn workers_rss(&self) -> Bytes {
        self.resident
            .iter()
            .filter_map(|r| r.worker_pid.and_then(probe::process_rss_of))
            .fold(Bytes::ZERO, Bytes::saturating_add)
    }

    fn threads_for(&self, name: &str) -> usize {
        self.thread_override
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.config.session.intra_op_threads, |(_, t)| *t)
    }

    /// Make `name` resident, unloading or evicting others as the policy requires.
    ///
    /// # Errors
    /// [`Error::ModelTooLarge`] (refused before loading), [`Error::SystemMemoryLow`] (the machine
    /// has no room even after evicting and waiting), [`Error::Budget`], load errors.
    pub fn load_model(&mut self, name: &str) -> Result<()> {
        self.tick += 1;
        if let Some(r) = self.resident.iter_mut().find(|r| r.name == name) {
            r.last_used = self.tick;
            return Ok(());
        }
        let prepared = match self.prepare(name).and_then(|p| {
            if p.lean_pending {
                self.write_lean_copy(p)
            } else {
                Ok(p)
            }
        }) {
            Ok(p) => p,
            Err(e) => {
                self.record(RunEvent::LoadRefused {
                    model: name.into(),
                    reason: e.to_string(),
                });
                return Err(e);
            }
        };
        let limit = self.budget.effective_limit();
        let baseline = self.budget.snapshot().baseline;
        if prepared.estimate.load_peak.saturating_add(baseline) > limit {
            let err = Error::ModelTooLarge {
                model: name.to_string(),
                estimate: prepared.estimate.load_peak,
                estimate_source: prepared.estimate.source,
                baseline,
                limit,
            };
            self.record(RunEvent::LoadRefused {
                model: name.into(),
                reason: err.to_string(),
            });
            return Err(err);
        }
        while self.resident.len() >= self.config.max_resident.max(1) {
            self.evict_one("switch");
        }
        let needed = self.load_reservation(&prepared);
        let reservation = self.admit(name, needed)?;
        self.load_admitted(prepared, reservation)
    }

    /// Reserve `bytes` for loading `name`: evict while the ledger is full, and when the system
    /// is short of memory evict everything and wait a bounded time.
    fn admit(&mut self, name: &str, bytes: Bytes) -> Result<Reservation> {
        let purpose = format!("load {name}");
        let started = Instant::now();
        loop {
            match self.budget.try_reserve(bytes, &purpose) {
                Ok(reservation) => return Ok(reservation),
                Err(masp_budget::Error::OverBudget { .. }) if !self.resident.is_empty() => {
                    self.evict_one("evict");
                }
                Err(masp_budget::Error::SystemMemoryLow {
                    available, margin, ..
                }) => {
                    while !self.resident.is_empty() {
                        self.evict_one("evict");
                    }
                    if started.elapsed() >= self.config.system_wait {
                        let err = Error::SystemMemoryLow {
                            model: name.to_string(),
                            requested: bytes,
                            available,
                            margin,
                            waited: started.elapsed(),
                        };
                        self.record(RunEvent::LoadRefused {
                            model: name.into(),
                            reason: err.to_string(),
                        });
                        return Err(err);
                    }
                    // Another process holds the memory: give it a moment to finish.
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    self.record(RunEvent::LoadRefused {
                        model: name.into(),
                        reason: e.to_string(),
                    });
                    return Err(e.into());
                }
            }
        }
    }

    fn load_admitted(&mut self, prepared: Prepared, mut reservation: Reservation) -> Result<()> {
        let name = prepared.spec.name.clone();
        let threads = self.threads_for(&name);
        let options = SessionOptions {
            intra_op_threads: threads,
            prepacking: self.config.session.prepacking
                && prepared.external_weight_bytes == Bytes::new(0),
        };
        // Give back what verifying and reading the file left on the heap, so the pre-load
        // baseline that the unload is checked against is honest.
        trim::release_freed_memory();
        self.profiler.mark(Event::load_start(&name));
        self.peak_rss = self.peak_rss();
        probe::reset_peak_rss();
        let rss_before = rss();
        let started = Instant::now();
        let isolation = self.isolation_for(&prepared.spec);
        let first_in_process = self.is_first_session(&prepared.spec);
        let loaded = match isolation {
            Isolation::InProcess => {
                self.adapters
                    .load(self.runtime, &prepared.spec, &prepared.path, options)
            }
            Isolation::Process => {
                let request = LoadRequest {
                    name: name.clone(),
                    kind: prepared.spec.kind,
                    path: prepared.path.clone(),
                    sample_rate_hz: prepared.spec.sample_rate_hz,
                    generic: prepared.spec.generic.clone(),
                    intra_op_threads: u32::try_from(threads).unwrap_or(u32::MAX),
                    prepacking: options.prepacking,
                };
                // The cap covers the load, the task that follows it, and weights mapped from
                // an external-data file (address space the reservation does not count).
                let working = prepared.estimate.working_for(
                    (self.config.chunk_s * f64::from(prepared.spec.sample_rate_hz)) as u64,
                );
                let cap = self
                    .config
                    .worker
                    .cap
                    .cap_for(reservation.bytes().saturating_add(working), threads)
                    .saturating_add(prepared.external_weight_bytes);
                WorkerAdapter::spawn(&self.config.worker, request, cap)
                    .map(|w| Box::new(w) as Box<dyn ModelAdapter>)
            }
        };
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let rss_after = rss();
        let peak = probe::process_peak_rss()
            .unwrap_or(rss_after)
            .max(rss_after);
        self.profiler.mark(Event::load_end(&name));
        let adapter = match loaded {
            Ok(adapter) => adapter,
            Err(e) => {
                drop(reservation);
                self.cleanup();
                self.record(RunEvent::LoadRefused {
                    model: name,
                    reason: e.to_string(),
                });
                return Err(e);
            }
        };
        let worker = adapter.worker();
        // In a worker the model's growth is measured by the worker itself; what it holds is
        // the whole process.
        let (measured_peak, resident, whole, load_ms) = match worker {
            Some(w) => (
                w.load.peak.saturating_sub(w.load.rss_before),
                w.load.rss_after.saturating_sub(w.load.rss_before),
                w.load.rss_after,
                load_ms,
            ),
            None => {
                let resident = rss_after.saturating_sub(rss_before);
                (peak.saturating_sub(rss_before), resident, resident, load_ms)
            }
        };
        self.calibration.record_load(
            &prepared.key,
            prepared.metadata_estimate.load_peak,
            measured_peak,
            resident,
            first_in_process,
        );
        if let Some(w) = worker {
            self.profiler.follow(w.pid);
            self.worker_peak = self.worker_peak.max(w.load.peak);
        }
        self.record(RunEvent::Loaded {
            model: name.clone(),
            source: prepared.estimate.source,
            estimated_peak: prepared.estimate.load_peak,
            measured_peak,
            resident,
            load_ms,
            threads,
            worker_pid: worker.map(|w| w.pid),
        });
        // Hold what the model really costs from now on (the load peak has passed). Mapped
        // external weights are not resident yet but will be after the first run: count them.
        let held = whole.max(prepared.external_weight_bytes);
        if let Err(e) = reservation.resize(held) {
            // The estimate was too low and the model does not fit: give the memory back now.
            // The calibration just recorded makes the next estimate right.
            if let Some(w) = worker {
                self.profiler.unfollow(w.pid);
            }
            drop(adapter);
            drop(reservation);
            self.cleanup();
            self.record(RunEvent::LoadRefused {
                model: name,
                reason: e.to_string(),
            });
            return Err(e.into());
        }
        let mut estimate = prepared.estimate;
        estimate.resident = held;
        self.resident.push(Resident {
            name,
            adapter,
            _reservation: reservation,
            rss_before_load: rss_before,
            estimate,
            key: prepared.key,
            last_used: self.tick,
            threads,
            worker_pid: worker.map(|w| w.pid),
            in_process: if worker.is_some() { Bytes::ZERO } else { held },
        });
        if worker.is_some() {
            self.refresh_baseline();
        }
        Ok(())
    }

    /// Load several models to be resident at the same time (the "load everything" strategy the
    /// sequential one is compared with). The whole set is admitted first — the sum of their
    /// resident estimates plus the largest extra load peak — so a set that cannot fit is refused
    /// before anything is loaded.
    ///
    /// # Errors
    /// [`Error::Budget`] naming the total when the set does not fit; load errors.
    pub fn load_together(&mut self, names: &[&str]) -> Result<()> {
        let mut prepared = Vec::new();
        for name in names {
            prepared.push(self.prepare(name)?);
        }
        let resident: Bytes = prepared.iter().map(|p| p.estimate.resident).sum();
        let extra = prepared
            .iter()
            .map(|p| p.estimate.load_peak.saturating_sub(p.estimate.resident))
            .max()
            .unwrap_or_default();
        let purpose = format!("load together {}", names.join(" + "));
        while !self.resident.is_empty() {
            self.evict_one("switch");
        }
        let whole = self
            .budget
            .try_reserve(resident.saturating_add(extra), &purpose)?;
        drop(whole);
        self.config.max_resident = self.config.max_resident.max(names.len());
        for p in prepared {
            let needed = self.load_reservation(&p);
            let reservation = self.admit(&p.spec.name.clone(), needed)?;
            self.load_admitted(p, reservation)?;
        }
        Ok(())
    }

    /// Unload `name` if it is resident; returns whether it was.
    pub fn unload_model(&mut self, name: &str) -> bool {
        match self.resident.iter().position(|r| r.name == name) {
            Some(i) => {
                self.unload_at(i, "explicit");
                true
            }
            None => false,
        }
    }

    /// Unload every resident model.
    pub fn unload_all(&mut self) {
        while !self.resident.is_empty() {
            self.unload_at(self.resident.len() - 1, "end");
        }
    }

    fn evict_one(&mut self, reason: &str) {
        if let Some((i, _)) = self
            .resident
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| r.last_used)
        {
            self.unload_at(i, reason);
        }
    }

    fn unload_at(&mut self, index: usize, reason: &str) {
        let model = self.resident.remove(index);
        self.profiler.mark(Event::unload(&model.name));
        let rss_loaded = rss();
        // Models loaded after this one are still resident and still count.
        let later: Bytes = self
            .resident
            .iter()
            .filter(|r| r.rss_before_load >= model.rss_before_load)
            .fold(Bytes::new(0), |acc, r| acc.saturating_add(r.in_process));
        // A worker's memory comes back whole when it is reaped: what it held at the end.
        let worker_rss = model.worker_pid.and_then(probe::process_rss_of);
        if let Some(pid) = model.worker_pid {
            self.profiler.unfollow(pid);
        }
        drop(model.adapter);
        drop(model._reservation);
        let worker_returned = match (model.worker_pid, worker_rss) {
            // Dropping the adapter reaped the process: if /proc still shows it, it is not gone.
            (Some(pid), Some(rss)) if probe::process_rss_of(pid).is_none() => rss,
            _ => Bytes::ZERO,
        };
        let mut trimmed = self.cleanup();
        let mut rss_after = rss();
        let expected = model.rss_before_load.saturating_add(later);
        if rss_after.saturating_sub(expected) > self.config.cleanup_tolerance {
            // Freed memory sometimes reaches the OS only at a later trim (measured with the
            // speaker embedder: ~20 MiB high after the first trim, back at the next one). Trim
            // once more before suspecting a leak.
            trimmed = trimmed.saturating_add(trim::release_freed_memory().returned);
            rss_after = rss();
        }
        let shortfall = rss_after.saturating_sub(expected);
        let leak_suspected = shortfall > self.config.cleanup_tolerance;
        if leak_suspected {
            self.profiler.note(&format!(
                "{}: RSS {} above its pre-load level after cleanup",
                model.name, shortfall
            ));
        }
        self.record(RunEvent::Unloaded {
            model: model.name,
            reason: reason.to_string(),
            trimmed,
            freed: rss_loaded.saturating_sub(rss_after),
            shortfall,
            leak_suspected,
            worker_returned,
        });
        self.refresh_baseline();
    }

    /// Return freed heap to the OS and mark it; the forced cleanup between models and tasks.
    fn cleanup(&self) -> Bytes {
        let outcome = trim::release_freed_memory();
        self.profiler.mark(Event::Cleanup {
            returned: outcome.returned,
        });
        outcome.returned
    }

    /// Samples per chunk for `task` on its (resident) model: the configured default, reduced so
    /// the calibrated working memory fits the budget's headroom.
    fn chunk_for(&self, model: &Resident, sample_rate_hz: u32) -> usize {
        let default = (self.config.chunk_s * f64::from(sample_rate_hz)).max(512.0) as usize;
        let per_sample = model.estimate.working_per_sample;
        if per_sample <= 0.0 {
            return default;
        }
        let headroom = self.budget.snapshot().headroom();
        let room = headroom.saturating_sub(model.estimate.working_fixed).get() as f64;
        let fits = (room / per_sample * 0.8) as usize;
        fits.clamp(512, default)
    }

    /// The largest chunk up to `at_most` samples whose calibrated working memory fits the
    /// budget's headroom with the model loaded (at 80% of it, for noise).
    fn fitting_chunk(&self, model: &str, at_most: usize) -> usize {
        let Ok(prepared) = self.prepare(model) else {
            return at_most;
        };
        let per_sample = prepared.estimate.working_per_sample;
        if per_sample <= 0.0 {
            return at_most;
        }
        let snapshot = self.budget.snapshot();
        let room = snapshot
            .limit
            .saturating_sub(snapshot.baseline)
            .saturating_sub(snapshot.reserved)
            .saturating_sub(prepared.estimate.resident)
            .saturating_sub(prepared.estimate.working_fixed);
        ((room.get() as f64 * 0.8 / per_sample) as usize).min(at_most)
    }

    /// Run `task`: load its model if needed (switching per the policy), run, clean up. A task
    /// that crosses the budget is cancelled between chunks and retried down the degradation
    /// ladder; if it still cannot fit it is skipped with [`Error::TaskSkipped`].
    ///
    /// # Errors
    /// Load errors, the adapter's errors (audio, inference, output), [`Error::TaskSkipped`].
    pub fn process_task(&mut self, task: &AudioTask) -> Result<TaskOutput> {
        let result = self.process_task_inner(task);
        if let Err(e) = &result {
            self.record(RunEvent::TaskFailed {
                task: task.label.clone(),
                model: task.model.clone(),
                reason: e.to_string(),
            });
        }
        result
    }

    fn process_task_inner(&mut self, task: &AudioTask) -> Result<TaskOutput> {
        let sample_rate_hz = self
            .registry
            .get(&task.model)
            .map_or(16_000, |spec| spec.sample_rate_hz);
        let mut chunk: Option<usize> = None;
        let mut halvings = 0;
        let mut steps: Vec<String> = Vec::new();
        let (mut crash_retries, mut cap_retries) = (0, 0);
        loop {
            if let Err(e) = self.load_model(&task.model) {
                match self.retry_after_worker_failure(
                    task,
                    &e,
                    &mut crash_retries,
                    &mut cap_retries,
                ) {
                    true => continue,
                    false => return Err(e),
                }
            }
            let index = self
                .resident
                .iter()
                .position(|r| r.name == task.model)
                .ok_or_else(|| Error::ModelInterface {
                    model: task.model.clone(),
                    reason: "not resident after load".into(),
                })?;
            let chunk_samples =
                *chunk.get_or_insert_with(|| self.chunk_for(&self.resident[index], sample_rate_hz));
            match self.run_once(index, task, chunk_samples) {
                Ok(output) => return Ok(output),
                Err(Error::Cancelled { rss, limit, .. }) => {
                    let cancelled = format!("RSS {rss} crossed the {limit} budget");
                    let threads = self.resident.get(index).map_or(1, |r| r.threads);
                    // Unload before anything else: the runtime's arenas keep what the task took.
                    self.unload_at(index, "cancel");
                    if !self.config.degrade {
                        return Err(Error::TaskSkipped {
                            task: task.label.clone(),
                            reason: cancelled,
                            steps,
                        });
                    }
                    let min_chunk = (sample_rate_hz / 4).max(512) as usize;
                    // What the cancelled run measured says how large a chunk fits; halving is
                    // the fallback when it says nothing.
                    let next = self.fitting_chunk(&task.model, chunk_samples / 2);
                    if halvings < 3 && next >= min_chunk {
                        halvings += 1;
                        chunk = Some(next);
                        let step = format!("smaller chunks: {chunk_samples} → {next} samples");
                        self.degraded(task, "smaller chunks", &format!("{cancelled}; {step}"));
                        steps.push(step);
                    } else if threads > 1 {
                        self.thread_override.retain(|(n, _)| n != &task.model);
                        self.thread_override.push((task.model.clone(), 1));
                        let step = format!("one intra-op thread instead of {threads}");
                        self.degraded(task, "one thread", &format!("{cancelled}; {step}"));
                        steps.push(step);
                    } else {
                        return Err(Error::TaskSkipped {
                            task: task.label.clone(),
                            reason: cancelled,
                            steps,
                        });
                    }
                }
                Err(e) => {
                    // A dead worker cannot run the next task: unload it now (it is reaped).
                    if self
                        .resident
                        .get(index)
                        .is_some_and(|r| r.adapter.is_dead())
                    {
                        self.unload_at(index, "worker failed");
                    }
                    if self.retry_after_worker_failure(
                        task,
                        &e,
                        &mut crash_retries,
                        &mut cap_retries,
                    ) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Whether `error` is a worker failure the retry policy retries (counting the retry).
    fn retry_after_worker_failure(
        &mut self,
        task: &AudioTask,
        error: &Error,
        crash_retries: &mut u32,
        cap_retries: &mut u32,
    ) -> bool {
        let Error::Worker { failure, .. } = error else {
            return false;
        };
        if matches!(failure, WorkerFailure::Spawn { .. }) {
            return false;
        }
        let (used, allowed, what) = if failure.is_cap() {
            (cap_retries, self.config.worker.retries_after_cap, "cap")
        } else {
            (
                crash_retries,
                self.config.worker.retries_after_crash,
                "crash",
            )
        };
        if *used >= allowed {
            return false;
        }
        *used += 1;
        self.degraded(
            task,
            &format!("retry after worker {what}"),
            &format!("{error}; retry {used} of {allowed} in a new worker"),
        );
        true
    }

    fn degraded(&mut self, task: &AudioTask, step: &str, detail: &str) {
        self.profiler.note(&format!("{}: {step}", task.label));
        self.record(RunEvent::Degraded {
            task: task.label.clone(),
            model: task.model.clone(),
            step: step.to_string(),
            detail: detail.to_string(),
        });
    }

    fn run_once(
        &mut self,
        index: usize,
        task: &AudioTask,
        chunk_samples: usize,
    ) -> Result<TaskOutput> {
        let limit = self.budget.effective_limit();
        let working = self.resident[index]
            .estimate
            .working_for(chunk_samples as u64);
        // The task's working memory is admitted like a load. If even that does not fit, running
        // would cross the budget: treat it as a cancellation so the ladder makes it smaller.
        let reservation = match self.budget.try_reserve(working, &task.label) {
            Ok(r) => r,
            Err(masp_budget::Error::OverBudget { .. }) => {
                return Err(Error::Cancelled {
                    task: task.label.clone(),
                    rss: rss().saturating_add(working),
                    limit,
                });
            }
            Err(e) => return Err(e.into()),
        };
        self.profiler.mark(Event::task_start(&task.label));
        self.peak_rss = self.peak_rss();
        probe::reset_peak_rss();
        let rss_before = rss();
        let alerts = self.profiler.watch(limit);
        let label = task.label.clone();
        // Worker processes count with this one: read their RSS here, not from what they say.
        let pids: Vec<u32> = self.resident.iter().filter_map(|r| r.worker_pid).collect();
        let mut check = |_done: u64| -> Result<()> {
            let now = pids
                .iter()
                .filter_map(|&pid| probe::process_rss_of(pid))
                .fold(rss(), Bytes::saturating_add);
            if alerts.try_recv().is_ok() || now > limit {
                return Err(Error::Cancelled {
                    task: label.clone(),
                    rss: now,
                    limit,
                });
            }
            Ok(())
        };
        let started = Instant::now();
        let model = &mut self.resident[index];
        model.adapter.reset();
        let mut ctx = TaskContext::new(chunk_samples, &mut check);
        let result = match model.adapter.run(&task.input, &task.params, &mut ctx) {
            // The runtime could not get memory: that is the budget's business, not a model bug.
            Err(Error::Inference { reason, .. })
                if reason.contains("Failed to allocate memory") =>
            {
                Err(Error::Cancelled {
                    task: task.label.clone(),
                    rss: rss(),
                    limit,
                })
            }
            other => other,
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let Some(peak) = model
            .adapter
            .worker()
            .and_then(|w| probe::process_peak_rss_of(w.pid))
        {
            self.worker_peak = self.worker_peak.max(peak);
        }
        let model = &mut self.resident[index];
        let working_peak = match model.adapter.worker() {
            Some(w) if result.is_ok() => w.last_task_peak,
            _ => probe::process_peak_rss()
                .unwrap_or_default()
                .saturating_sub(rss_before),
        };
        model.last_used = self.tick;
        let (key, name) = (model.key.clone(), model.name.clone());
        // Cancelled runs are measured too: the next estimate then knows better.
        if result.is_ok() || matches!(result, Err(Error::Cancelled { .. })) {
            self.calibration
                .record_task(&key, chunk_samples as u64, working_peak);
        }
        self.profiler.mark(Event::task_end(&task.label));
        drop(reservation);
        self.cleanup();
        if result.is_ok() {
            self.record(RunEvent::TaskDone {
                task: task.label.clone(),
                model: name,
                ms,
                working_peak,
                chunk_samples,
            });
        }
        result
    }
}

impl Drop for SequentialOrchestrator {
    fn drop(&mut self) {
        self.unload_all();
    }
}
