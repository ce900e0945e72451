//! The sequential orchestrator: it loads ONNX models one at a time, runs audio through them, and
//! unloads and cleans up between them.
//!
//! With `masp-models` it is one of the two crates that talk to ONNX Runtime (through `ort`).
//! [`runtime`] finds and initialises the runtime library; [`adapter`] is the trait a model kind
//! implements (the implementations live in `masp-models`, like symphonia's codecs); [`task`] is
//! the vocabulary of tasks and their outputs; [`plan`] and [`batch`] plan a batch so each model
//! is loaded as few times as possible; [`worker`] runs a model in its own process.
#![warn(missing_docs)]

pub mod adapter;
pub mod batch;
mod error;
pub mod orchestrator;
pub mod plan;
pub mod runtime;
pub mod task;
pub mod worker;

pub use error::{Error, Result};
pub use orchestrator::{
    AudioTask, OrchestratorBuilder, OrchestratorConfig, RunEvent, SequentialOrchestrator,
};
