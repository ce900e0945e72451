//! The orchestrator with masp's models, and testkit's synthetic models, in the real ONNX
//! Runtime (`cargo xtask setup` provides the runtime and the models).
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod profiled;
mod quantize;
mod sequential;
mod sessions;
mod synthetic;
mod synthetic_memory;
