//! What the orchestrator holds per model: [`Prepared`] (checked and estimated, ready to load)
//! and `Resident` (loaded, with its reservation).

use std::path::PathBuf;

use masp_budget::{Bytes, Reservation};
use masp_model_registry::estimate::MemoryEstimate;
use masp_model_registry::manifest::ModelSpec;

use crate::adapter::ModelAdapter;

/// A model in memory.
#[derive(Debug)]
pub(super) struct Resident {
    pub(super) name: String,
    pub(super) adapter: Box<dyn ModelAdapter>,
    pub(super) _reservation: Reservation,
    pub(super) rss_before_load: Bytes,
    pub(super) estimate: MemoryEstimate,
    pub(super) key: String,
    pub(super) last_used: u64,
    pub(super) threads: usize,
    /// The worker process, under process isolation.
    pub(super) worker_pid: Option<u32>,
    /// What the model adds to this process's RSS (zero when it runs in a worker).
    pub(super) in_process: Bytes,
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
    ///
    /// [`SequentialOrchestrator::load_model`]: super::SequentialOrchestrator::load_model
    pub lean_pending: bool,
}
