//! masp-run: durable runs over masp's orchestrator and models.
//!
//! Everything a Rust project needs to run "VAD, then speaker embeddings, under a budget,
//! resumable" without masp's command line:
//! - [`name`]: the one function that names an input's results;
//! - [`job`] and [`run_dir`]: inputs through stages, and the run directory that keeps their
//!   results with a [`journal`], so a stopped run resumes without losing or redoing work;
//! - [`lock`]: the lock that keeps a run directory to one masp at a time;
//! - [`stages`]: the VAD and embedding stages, each one batch with its model loaded once;
//! - [`pipeline`]: pipeline files of stages over many inputs, planned and resumable;
//! - [`shard`]: shards of a job's inputs, and merging their run directories;
//! - [`diarize`]: speech windows, clustering and speaker turns from segments and embeddings;
//! - [`mod@format`]: every format results are written in (segments, turns, embeddings);
//! - [`config`]: what identifies a stage's configuration.
//!
//! ```no_run
//! use masp_budget::{Budget, BudgetConfig, Bytes};
//! use masp_model_registry::manifest::Registry;
//! use masp_orchestrator::SequentialOrchestrator;
//! use masp_run::job::Job;
//! use masp_run::run_dir::RunDir;
//! use masp_run::stages::{self, Quiet, Ranges, StageKeys, Stages};
//!
//! let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(512)));
//! let mut orch =
//!     SequentialOrchestrator::builder(budget, Registry::builtin(), masp_models::registry())
//!         .build()?;
//! let stages = Stages::default();
//! let keys = StageKeys::new(orch.registry(), &stages, Ranges::Segments);
//! let mut run = RunDir::open("work".as_ref())?;
//! let mut jobs = Job::all(&["a.wav".into(), "b.wav".into()])?;
//! stages::vad_stage(&mut orch, &mut jobs, &mut run, &stages.vad_model, &keys.vad, &mut Quiet)?;
//! stages::embed_stage(
//!     &mut orch,
//!     &mut jobs,
//!     &mut run,
//!     &stages,
//!     Ranges::Segments,
//!     &keys.embed,
//!     &mut |job, embeddings| {
//!         println!("{}: {} embeddings", job.path.display(), embeddings.len());
//!         Ok(())
//!     },
//!     &mut Quiet,
//! )?;
//! # Ok::<(), masp_run::Error>(())
//! ```
//! (`no_run`: it needs ONNX Runtime and the models, which `cargo xtask setup` fetches; the
//! downstream project `downstream/vad-embed` runs the same code in CI.)
#![warn(missing_docs)]

pub mod config;
pub mod diarize;
mod error;
pub mod format;
pub mod job;
pub mod journal;
pub mod lock;
pub mod name;
pub mod pipeline;
pub mod run_dir;
pub mod shard;
pub mod stages;

pub use error::{Error, Result};

/// Write `bytes` to `path` atomically and durably (temporary file, sync, rename, directory
/// sync), as every result and record is written.
///
/// # Errors
/// [`Error::Output`] naming the file.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    masp_model_registry::atomic::write_atomic(path, bytes).map_err(|e| Error::io(path, &e))
}

/// Create the output directory `path` (and its parents) if it is missing, so a run that cannot
/// write its results fails before any work.
///
/// # Errors
/// [`Error::Output`] naming the directory.
pub fn create_output_dir(path: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, &e))
}
