//! Model adapters: what each kind of model must provide to run an audio task.
//!
//! Like symphonia's codec registry: [`ModelAdapter`] is what an adapter must provide, and
//! [`AdapterRegistry`] maps a [`ModelKind`] to the constructor that loads a model of that kind.
//! The orchestrator knows this trait, not the models: the adapters masp ships live in
//! `masp-models`, and a downstream crate can register its own. Adapters call
//! [`TaskContext::check`] between chunks; that is where the orchestrator cancels a task whose
//! memory crosses the budget. Within a chunk, an adapter runs its session with
//! [`TaskContext::run_options`], which the [`watchdog`](crate::watchdog) terminates when RSS
//! crosses the limit mid-call.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use masp_budget::Bytes;
use ort::session::RunOptions;

use masp_model_registry::manifest::{ModelKind, ModelSpec};

use crate::runtime::{Admitted, SessionOptions};
use crate::task::{TaskOutput, TaskParams};
use crate::{Error, Result};

/// Control of a running task: the chunk size to use, the cancellation check between chunks, and
/// the run options every model call of the task passes to ONNX Runtime.
pub struct TaskContext<'a> {
    chunk_samples: usize,
    check: &'a mut dyn FnMut(u64) -> Result<()>,
    run_options: Option<Arc<RunOptions>>,
    memory_limit: Option<Bytes>,
}

impl std::fmt::Debug for TaskContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("chunk_samples", &self.chunk_samples)
            .finish()
    }
}

impl<'a> TaskContext<'a> {
    /// A context with a chunk size (samples at the model's rate) and a check called between
    /// chunks with the samples done so far.
    pub fn new(chunk_samples: usize, check: &'a mut dyn FnMut(u64) -> Result<()>) -> Self {
        Self {
            chunk_samples: chunk_samples.max(1),
            check,
            run_options: None,
            memory_limit: None,
        }
    }

    /// The RSS limit the task runs under (this process and its workers together): a worker
    /// adapter hands its worker its share, for the worker's own watchdog.
    #[must_use]
    pub fn with_memory_limit(mut self, limit: Bytes) -> Self {
        self.memory_limit = Some(limit);
        self
    }

    /// The RSS limit the task runs under, when the caller set one (the orchestrator does).
    pub fn memory_limit(&self) -> Option<Bytes> {
        self.memory_limit
    }

    /// The run options the task's model calls pass to ONNX Runtime
    /// (`Session::run_with_options`): the orchestrator's watchdog terminates them when RSS
    /// crosses the limit during a call.
    #[must_use]
    pub fn with_run_options(mut self, run_options: Arc<RunOptions>) -> Self {
        self.run_options = Some(run_options);
        self
    }

    /// The run options to pass to every model call of this task, when the caller watches its
    /// calls (the orchestrator always does). An adapter that runs a session without them cannot
    /// be stopped mid-call.
    pub fn run_options(&self) -> Option<&Arc<RunOptions>> {
        self.run_options.as_ref()
    }

    /// Samples per chunk the orchestrator chose (from budget headroom and calibration).
    pub fn chunk_samples(&self) -> usize {
        self.chunk_samples
    }

    /// Call between chunks; an error means stop now (cancelled).
    ///
    /// # Errors
    /// Whatever the orchestrator's check returns, typically [`Error::Cancelled`].
    pub fn check(&mut self, samples_done: u64) -> Result<()> {
        (self.check)(samples_done)
    }
}

/// What every model adapter provides.
pub trait ModelAdapter: Send + std::fmt::Debug {
    /// Forget per-stream state (between files).
    fn reset(&mut self);
    /// Run one task on the file at `input`.
    ///
    /// # Errors
    /// Audio, inference or output errors, or the context's cancellation.
    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput>;

    /// The worker process running the model, when it runs in one (process isolation).
    fn worker(&self) -> Option<crate::worker::status::WorkerStatus> {
        None
    }

    /// Whether the model can no longer run (its worker died or was killed) and must be
    /// unloaded.
    fn is_dead(&self) -> bool {
        false
    }
}

/// Loads a model of one kind and wraps it in its adapter.
pub type AdapterConstructor =
    fn(&Admitted<'_>, &ModelSpec, &Path, SessionOptions) -> Result<Box<dyn ModelAdapter>>;

/// Maps model kinds to adapter constructors.
#[derive(Debug, Clone, Default)]
pub struct AdapterRegistry {
    constructors: BTreeMap<ModelKind, AdapterConstructor>,
}

impl AdapterRegistry {
    /// A registry with no adapters (`masp_models::registry()` has the ones masp ships).
    pub fn new() -> Self {
        Self {
            constructors: BTreeMap::new(),
        }
    }

    /// Add or replace the constructor for `kind`.
    pub fn register(&mut self, kind: ModelKind, constructor: AdapterConstructor) {
        self.constructors.insert(kind, constructor);
    }

    /// The kinds that can be loaded.
    pub fn supported(&self) -> Vec<ModelKind> {
        self.constructors.keys().copied().collect()
    }

    /// Load `spec` from `path` with the adapter for its kind.
    ///
    /// # Errors
    /// [`Error::ModelInterface`] when no adapter handles the kind; the constructor's errors.
    pub fn load(
        &self,
        admitted: &Admitted<'_>,
        spec: &ModelSpec,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Box<dyn ModelAdapter>> {
        let constructor =
            self.constructors
                .get(&spec.kind)
                .ok_or_else(|| Error::ModelInterface {
                    model: spec.name.clone(),
                    reason: format!(
                        "no adapter for kind {} (supported: {:?})",
                        spec.kind,
                        self.supported()
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                    ),
                })?;
        constructor(admitted, spec, path, options)
    }
}
