//! Model manifests, pinned assets and memory estimates: what masp knows about a model before
//! ONNX Runtime ever sees it.
//!
//! This crate owns the catalogue of pinned third-party assets (the ONNX Runtime library and the
//! built-in models) and where they live on disk ([`assets`]), and reads ONNX files without ONNX
//! Runtime ([`onnx`]): metadata, weight sizes, validation, external data. It never loads a
//! model: loading is the orchestrator's job, and it is the only crate that talks to ONNX Runtime.
//!
//! [`manifest::Registry`] is the entry point: the built-in models plus those of your manifests,
//! each with its file, kind and settings; [`onnx::OnnxMetadata::read`] and
//! [`estimate::from_metadata`] say what a model's file holds and what loading it would cost.
//!
//! ```
//! use masp_model_registry::manifest::{ModelKind, Registry};
//! use masp_model_registry::onnx::{
//!     GraphProto, ModelProto, OnnxMetadata, OperatorSetIdProto, TensorProto, write_model,
//! };
//! use masp_model_registry::estimate;
//!
//! // A model file of 1 MiB of float32 weights, and a manifest naming it.
//! let dir = tempfile::tempdir()?;
//! let weights = TensorProto {
//!     name: "w".into(),
//!     dims: vec![256 * 1024],
//!     data_type: 1, // float
//!     raw_data: vec![0u8; 1 << 20].into(),
//!     ..Default::default()
//! };
//! let graph = GraphProto { initializer: vec![weights], ..Default::default() };
//! let model = ModelProto {
//!     ir_version: 8,
//!     opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
//!     graph: Some(graph),
//!     ..Default::default()
//! };
//! write_model(&dir.path().join("denoiser.onnx"), &model)?;
//! std::fs::write(
//!     dir.path().join("masp.toml"),
//!     "[[model]]\nname = \"my-denoiser\"\nkind = \"generic\"\npath = \"denoiser.onnx\"\n\
//!      [model.generic]\ninput = \"audio\"\n",
//! )?;
//!
//! let mut registry = Registry::builtin();
//! registry.add_manifest(&dir.path().join("masp.toml"))?;
//! let spec = registry.get("my-denoiser").ok_or("not registered")?;
//! assert_eq!(spec.kind, ModelKind::Generic);
//! assert!(registry.get("silero-vad").is_some(), "the built-ins stay");
//!
//! let meta = OnnxMetadata::read(&spec.path()?)?;
//! assert_eq!(meta.embedded_weight_bytes.to_string(), "1 MiB");
//! let cost = estimate::from_metadata(&meta, true);
//! assert!(cost.load_peak > cost.resident, "weights are copied once while loading");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod assets;
pub mod atomic;
mod error;
pub mod estimate;
pub mod file;
pub mod lean;
pub mod manifest;
pub mod onnx;
pub mod path;

pub use error::{Error, Result};
