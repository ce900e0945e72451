//! Integration tests of masp-run, one binary (see STYLE.md): each module is a topic.

// clippy's test exemption covers `#[test]` functions only, not the shared helpers here; in this
// binary a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod names;
mod special_files;
