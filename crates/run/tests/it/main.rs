//! masp-run's integration tests: runs through the library, with the real VAD model.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod names;
