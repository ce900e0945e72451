//! Integration tests of masp-audio, one binary (see STYLE.md): each module is a topic.

// clippy's test exemption covers `#[test]` functions only, not the shared helpers here; in this
// binary a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod common;
mod decode;
mod features;
mod memory;
mod resample;
mod special_files;
