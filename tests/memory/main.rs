//! Memory-intensive scenarios with synthetic models of 1–3 GiB under tight budgets, run by
//! `cargo xtask test-memory` one at a time (the figures must not mix with other tests): the
//! orchestrator's acceptance cases, resource exhaustion by another process, 1000-cycle drift,
//! recovery after every kind of failure, and the calibrated estimates' accuracy. (A leaking
//! adapter that the model suite must catch is `cargo xtask test-profile`'s.)
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod drift;
mod exhaustion;
#[allow(dead_code)] // shared with profile/ by `#[path]`: each uses part of it
mod fresh;
mod recovery;
mod sequential_budget;
mod silence;
