//! Workspace-level scenarios: real ONNX Runtime, real models, real speech. Run
//! `cargo xtask setup` first (`cargo xtask test` does it for you).
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod diarize;
mod embed_parity;
mod vad_parity;
