//! What the orchestrator reports: [`RunEvent`]s as they happen, and the bounded per-model
//! statistics and failure list kept over a run.

use std::path::PathBuf;

use masp_budget::Bytes;
use masp_model_registry::estimate::EstimateSource;
use serde::Serialize;

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
    /// A load measured more than twice the `memory` its manifest entry gives: the override
    /// is wrong (the measurement is calibrated and wins from now on).
    OverrideExceeded {
        /// Model name.
        model: String,
        /// The manifest's `memory`.
        stated: Bytes,
        /// The load peak measured.
        measured: Bytes,
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
    /// The watchdog saw RSS cross the limit during a model call and told the runtime to stop
    /// the call (it stops at the next graph node).
    WatchdogFired {
        /// Task label.
        task: String,
        /// Model name.
        model: String,
        /// The first RSS sample over the limit.
        rss: Bytes,
        /// The highest RSS sampled before the call ended.
        peak: Bytes,
        /// The limit.
        limit: Bytes,
        /// How long RSS stayed over the limit, in ms (first to last sample over it).
        over_ms: f64,
        /// Chunk size of the call.
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
    /// Model calls the watchdog stopped.
    pub watchdog_stops: u64,
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
