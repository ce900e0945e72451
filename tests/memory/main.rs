//! Memory-intensive scenarios with synthetic models of 1–3 GiB under tight budgets, run by
//! `cargo xtask test-memory` one at a time (the figures must not mix with other tests).
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sequential_budget;
