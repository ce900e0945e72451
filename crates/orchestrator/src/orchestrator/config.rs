//! What the orchestrator is told: its configuration ([`OrchestratorConfig`]) and the tasks it
//! runs ([`AudioTask`]).

use std::path::PathBuf;
use std::time::Duration;

use masp_budget::Bytes;
use masp_model_registry::manifest::Isolation;
use serde::Serialize;

use crate::runtime::SessionOptions;
use crate::task::TaskParams;
use crate::worker::WorkerConfig;

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
    ///
    /// [`RunEvent`]: super::RunEvent
    /// [`EventSink`]: super::EventSink
    /// [`SequentialOrchestrator::events`]: super::SequentialOrchestrator::events
    /// [`SequentialOrchestrator::stats`]: super::SequentialOrchestrator::stats
    pub record_events: bool,
    /// How often the memory watchdog reads RSS while a task runs; it stops a model call as soon
    /// as RSS crosses the limit ([`crate::watchdog`]). Default
    /// [`DEFAULT_INTERVAL`](crate::watchdog::DEFAULT_INTERVAL) (2 ms). `None` turns it off,
    /// leaving only the checks between chunks: for measuring what it costs and what it
    /// prevents, not for use.
    pub watchdog: Option<Duration>,
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
            watchdog: Some(crate::watchdog::DEFAULT_INTERVAL),
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
