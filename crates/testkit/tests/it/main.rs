//! Integration tests of masp-testkit, one binary (see STYLE.md): each module is a topic.
//! The generated models are loaded and run in the real ONNX Runtime by masp-models' tests
//! (`synthetic`, `synthetic_memory`): only masp-orchestrator and masp-models use `ort`.

// clippy's test exemption covers `#[test]` functions only, not the shared helpers here; in this
// binary a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assertions;
mod fixtures;
