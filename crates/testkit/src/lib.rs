//! masp-testkit: synthetic ONNX models and memory measurements for masp's tests and benchmarks.
//!
//! - [`synthetic`] writes small and large ONNX models from Rust code, deterministically and
//!   cached by their parameters: weights of a chosen size ([`synthetic::weights_model`]),
//!   activations that grow with the input ([`synthetic::activation_model`]), and broken files
//!   for error paths ([`synthetic::faulty_model`], [`synthetic::corrupt_model`]).
//! - [`memory`] measures a phase's resident memory: before, after and peak.
//!
//! The library does not create ONNX Runtime sessions itself (only the orchestrator depends on
//! `ort`); its tests load every generated model in the real runtime to prove it valid.
//!
//! **Architecture Invariant:** only ever a dev-dependency of library crates.
#![warn(missing_docs)]

mod error;
pub mod memory;
pub mod synthetic;

pub use error::{Error, Result};
