//! The sequential orchestrator: it loads ONNX models one at a time, runs audio through them, and
//! unloads and cleans up between them.
//!
//! With `masp-models` it is one of the two crates that talk to ONNX Runtime (through `ort`).
//! [`runtime`] finds and initialises the runtime library; [`adapter`] is the trait a model kind
//! implements (the implementations live in `masp-models`, like symphonia's codecs); [`task`] is
//! the vocabulary of tasks and their outputs; [`plan`] and [`batch`] plan a batch so each model
//! is loaded as few times as possible; [`worker`] runs a model in its own process.
//!
//! [`SequentialOrchestrator`] is the entry point. It needs ONNX Runtime at run time, and the
//! adapters that say how to feed each model kind come from a crate above this one
//! (`masp_models::registry()`, or your own [`adapter::AdapterRegistry`]). The example is
//! `no_run` for that reason only: doc tests have neither the runtime library (`cargo xtask
//! setup` fetches it) nor the models. `masp-models`' crate docs run a task end to end.
//!
//! ```no_run
//! use masp_budget::{Budget, BudgetConfig, Bytes};
//! use masp_model_registry::manifest::Registry;
//! use masp_orchestrator::adapter::AdapterRegistry;
//! use masp_orchestrator::batch::BatchTask;
//! use masp_orchestrator::task::{TaskParams, VadParams};
//! use masp_orchestrator::{AudioTask, SequentialOrchestrator};
//!
//! // Planning needs no adapter; running does: register yours, or use `masp_models::registry()`.
//! let adapters = AdapterRegistry::new();
//! let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(512)));
//! let orch = SequentialOrchestrator::builder(budget, Registry::builtin(), adapters).build()?;
//! let vad = |input: &str| BatchTask {
//!     task: AudioTask {
//!         label: format!("vad {input}"),
//!         model: "silero-vad".into(),
//!         input: input.into(),
//!         params: TaskParams::Vad(VadParams::default()),
//!     },
//!     depends_on: Vec::new(),
//!     priority: 0,
//! };
//! let batch = orch.plan_batch(&[vad("a.wav"), vad("b.wav")])?;
//! assert_eq!(batch.plan.n_loads, 1); // one model, loaded once for both files
//! # Ok::<(), masp_orchestrator::Error>(())
//! ```
//!
//! What the orchestrator decides before it loads anything is pure logic over estimates, and
//! runs anywhere: the [`plan`]ner orders a batch so it stays under the budget with the fewest
//! loads.
//!
//! ```
//! use masp_budget::Bytes;
//! use masp_orchestrator::plan::{ModelCost, ModelId, PlanTask, Policy, TaskId, plan};
//!
//! let models = [
//!     ModelCost::new("vad", Bytes::from_mib(40), Bytes::from_mib(25), Bytes::from_mib(2)),
//!     ModelCost::new("embed", Bytes::from_mib(600), Bytes::from_mib(400), Bytes::from_mib(100)),
//! ];
//! // VAD then embeddings for three files, interleaved as a naive loop would run them.
//! let mut tasks = Vec::new();
//! for i in 0..3 {
//!     tasks.push(PlanTask::new(TaskId(2 * i), ModelId(0), format!("vad {i}.wav")));
//!     tasks.push(
//!         PlanTask::new(TaskId(2 * i + 1), ModelId(1), format!("embed {i}.wav"))
//!             .with_depends_on([TaskId(2 * i)]),
//!     );
//! }
//! let p = plan(&models, &tasks, Bytes::from_gib(1), Bytes::from_mib(100), Policy::OneResident)?;
//! assert_eq!(p.n_loads, 2); // not 6
//! assert!(p.expected_peak <= Bytes::from_gib(1));
//! # Ok::<(), masp_orchestrator::plan::PlanError>(())
//! ```
#![warn(missing_docs)]

pub mod adapter;
pub mod batch;
mod error;
pub mod orchestrator;
pub mod plan;
pub mod runtime;
pub mod task;
pub mod watchdog;
pub mod worker;

pub use error::{Error, Result};
pub use orchestrator::{
    AudioTask, OrchestratorBuilder, OrchestratorConfig, RunEvent, SequentialOrchestrator,
};
