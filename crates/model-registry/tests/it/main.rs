//! Integration tests of masp-model-registry, one binary (see STYLE.md): each module is a topic.

// clippy's test exemption covers `#[test]` functions only, not the shared helpers here; in this
// binary a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod files;
mod onnx;
mod sizes;
