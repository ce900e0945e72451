//! Orchestrator integration tests with the real ONNX Runtime and real models
//! (`cargo xtask setup` provides them).
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod profiled;
mod quantize;
mod sequential;
