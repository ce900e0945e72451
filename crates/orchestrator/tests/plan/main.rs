//! Tests of the batch planner (`masp_orchestrator::plan`): one binary, one module per topic.

// Test helpers fail loudly; clippy.toml's test exemption does not reach helper functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod basic;
mod budgeted;
mod common;
mod props;
