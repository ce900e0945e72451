//! Integration tests of masp-testkit, one binary (see STYLE.md): each module is a topic. Every
//! generated model is loaded and run in the real ONNX Runtime.

// clippy's test exemption covers `#[test]` functions only, not the shared helpers here; in this
// binary a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assertions;
mod common;
mod fixtures;
mod memory;
mod synthetic;
