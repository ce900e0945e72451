//! Model manifests, pinned assets and memory estimates: what masp knows about a model before
//! ONNX Runtime ever sees it.
//!
//! This crate owns the catalogue of pinned third-party assets (the ONNX Runtime library and the
//! built-in models) and where they live on disk ([`assets`]), and reads ONNX files without ONNX
//! Runtime ([`onnx`]): metadata, weight sizes, validation, external data. It never loads a
//! model: loading is the orchestrator's job, and it is the only crate that talks to ONNX Runtime.
#![warn(missing_docs)]

pub mod assets;
pub mod atomic;
mod error;
pub mod estimate;
pub mod lean;
pub mod manifest;
pub mod onnx;

pub use error::{Error, Result};
