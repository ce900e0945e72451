//! Errors of the orchestrator.

use std::path::PathBuf;

use masp_budget::Bytes;
use masp_model_registry::estimate::EstimateSource;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while loading a model or processing audio with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ONNX Runtime library is not where masp looked.
    #[error(
        "ONNX Runtime library not found at {path} ({origin}): run `cargo xtask setup`, \
         or set ORT_DYLIB_PATH to a libonnxruntime.so of version >= 1.31"
    )]
    RuntimeMissing {
        /// Where it was looked for.
        path: PathBuf,
        /// Which setting named that path.
        origin: &'static str,
    },
    /// The library exists but could not be loaded or initialised.
    #[error("cannot initialise ONNX Runtime from {path}: {reason}")]
    RuntimeInit {
        /// The library file.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// ONNX Runtime refused to create a session for a model.
    #[error("cannot load model {model} from {path}: {reason}")]
    Load {
        /// Model name.
        model: String,
        /// Model file.
        path: PathBuf,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// The model's inputs or outputs are not what its adapter needs.
    #[error("model {model} does not fit its adapter: {reason}")]
    ModelInterface {
        /// Model name.
        model: String,
        /// What is missing or different.
        reason: String,
    },
    /// A model call failed.
    #[error("inference with {model} failed: {reason}")]
    Inference {
        /// Model name.
        model: String,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// Invalid parameters, e.g. a threshold outside 0..1.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name as the user knows it.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// No model of that name in the registry.
    #[error("unknown model {name:?} (known: {known})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names the registry has.
        known: String,
    },
    /// The model's estimated load peak cannot fit the budget even with nothing else loaded; it
    /// was refused before loading.
    #[error(
        "model {model} is too large for the budget: its load peak is estimated at {estimate} \
         ({estimate_source}), and {baseline} baseline + {estimate} exceeds the {limit} limit"
    )]
    ModelTooLarge {
        /// Model name.
        model: String,
        /// Estimated load peak.
        estimate: Bytes,
        /// Where the estimate came from.
        estimate_source: EstimateSource,
        /// The process's memory outside any reservation.
        baseline: Bytes,
        /// The effective budget.
        limit: Bytes,
    },
    /// A load went over the limit while the session was created (its estimate was too low):
    /// the model was unloaded again, and the measurement calibrated, so the next attempt is
    /// refused before loading.
    #[error(
        "model {model} peaked at {peak} while loading, {over} over the {limit} limit; its estimate was {estimate} ({estimate_source})"
    )]
    LoadOvershoot {
        /// Model name.
        model: String,
        /// The process's RSS at the load's peak (its workers' included).
        peak: Bytes,
        /// `peak` above `limit`.
        over: Bytes,
        /// The effective budget.
        limit: Bytes,
        /// The load-peak estimate it was admitted with.
        estimate: Bytes,
        /// Where that estimate came from.
        estimate_source: EstimateSource,
    },
    /// The budget had room but the machine did not, even after evicting and waiting.
    #[error(
        "cannot load {model}: it needs {requested} but the system has {available} available \
         ({margin} kept free) after evicting resident models and waiting {waited:.1?}"
    )]
    SystemMemoryLow {
        /// Model name.
        model: String,
        /// Bytes requested.
        requested: Bytes,
        /// System memory available at the last try.
        available: Bytes,
        /// Safety margin kept free.
        margin: Bytes,
        /// How long masp waited.
        waited: std::time::Duration,
    },
    /// A running task crossed the budget and was stopped between chunks.
    #[error("task {task} cancelled: RSS {rss} crossed the {limit} budget")]
    Cancelled {
        /// Task label.
        task: String,
        /// RSS when it was stopped.
        rss: Bytes,
        /// The effective budget.
        limit: Bytes,
    },
    /// The watchdog saw RSS cross the limit during a model call and stopped the call.
    #[error(
        "task {task}: the watchdog stopped {model} at RSS {rss} (peak {peak}), over the {limit} limit, running a chunk of {chunk_samples} samples"
    )]
    Terminated {
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
        /// The chunk the call was running.
        chunk_samples: usize,
    },
    /// The memory watchdog's thread could not be started.
    #[error("cannot start the memory watchdog: {reason}")]
    Watchdog {
        /// The OS's reason.
        reason: String,
    },
    /// A task could not be run within the budget even after degrading; it was skipped.
    #[error("task {task} skipped: {reason}{}", if steps.is_empty() { String::new() } else { format!(" (after: {})", steps.join("; ")) })]
    TaskSkipped {
        /// Task label.
        task: String,
        /// Why.
        reason: String,
        /// The degradation steps tried.
        steps: Vec<String>,
    },
    /// A batch cannot be planned (unknown dependency, cycle).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The budget refused a reservation.
    #[error(transparent)]
    Budget(#[from] masp_budget::Error),
    /// Writing a task's output failed.
    #[error("cannot write output {path}: {reason}")]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Reading or decoding audio failed.
    #[error(transparent)]
    Audio(#[from] masp_audio::Error),
    /// Locating or verifying a model or asset failed.
    #[error(transparent)]
    Registry(#[from] masp_model_registry::Error),
    /// A model's worker process failed (`--isolation process`): it crashed, hit its memory
    /// cap, hung, broke the protocol or could not start. The worker is gone; the orchestrator
    /// and the rest of the batch go on.
    #[error("model {model}: worker {failure}")]
    Worker {
        /// Model name.
        model: String,
        /// What happened, with the memory figures.
        failure: crate::worker::status::WorkerFailure,
    },
    /// A load or task failed inside a worker, which lives on; the message is the worker's own
    /// (it names the file and the reason, as in-process).
    #[error("{message}")]
    Remote {
        /// How the worker classed it.
        class: crate::worker::status::FailureClass,
        /// The worker's error message.
        message: String,
    },
}
