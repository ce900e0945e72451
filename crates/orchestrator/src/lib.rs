//! The sequential orchestrator: it loads ONNX models one at a time, runs audio through them, and
//! unloads and cleans up between them.
//!
//! This is the only crate that talks to ONNX Runtime (through `ort`). [`runtime`] finds and
//! initialises the runtime library; model adapters such as [`silero`] and [`embedder`] turn audio
//! into model calls;
//! [`vad`] turns speech probabilities into segments.
#![warn(missing_docs)]

pub mod adapter;
pub mod batch;
pub mod diarize;
pub mod embedder;
mod error;
pub mod journal;
pub mod npy;
pub mod orchestrator;
pub mod plan;
pub mod quantize;
pub mod runtime;
pub mod silero;
pub mod vad;
pub mod worker;

pub use error::{Error, Result};
pub use orchestrator::{AudioTask, OrchestratorConfig, RunEvent, SequentialOrchestrator};
