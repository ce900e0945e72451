//! masp-testkit: the test framework for masp and for crates that use it — prove that a model
//! and a pipeline behave under a memory budget.
//!
//! - [`MinimalTestFramework`]: the seed's `modelTests()` / `orchestrationTests()` as a Rust API.
//!   [`MinimalTestFramework::model_tests`] runs load/unload cycles with cleanup and checks loads,
//!   leaks, peak, return to baseline and the memory estimate;
//!   [`MinimalTestFramework::orchestration_tests`] runs a pipeline as repeated batches and checks
//!   sequential execution, stability and cleanup. Results are a [`SuiteResult`] table (and JSON,
//!   and the profiler's text/JSON/SVG reports).
//! - [`assert`](mod@assert): memory assertions over the profiler's report — [`assert_no_leak!`],
//!   [`assert_peak_below!`], [`assert_returns_to_baseline!`] — whose failures print the timeline
//!   summary.
//! - [`fixtures`]: the committed speech sample, generated tones/noise/silence/long files
//!   (streamed to disk), and the bad-input corpus with what masp must say about each file.
//! - [`synthetic`] writes small and large ONNX models from Rust code, deterministically and
//!   cached by their parameters: weights of a chosen size ([`synthetic::weights_model`]),
//!   activations that grow with the input ([`synthetic::activation_model`]), and broken files
//!   for error paths ([`synthetic::faulty_model`], [`synthetic::corrupt_model`]).
//! - [`memory`] measures a phase's resident memory: before, after and peak.
//!
//! The types a test needs from masp's crates are re-exported ([`Bytes`], [`Budget`],
//! [`Registry`], [`Report`]…), so a downstream crate's tests can depend on this crate alone.
//!
//! [`MinimalTestFramework`] is the entry point. Its example is `no_run` only because it loads a
//! real model with the real ONNX Runtime, which doc tests do not have (`cargo xtask setup`
//! fetches both; the crate's own tests run it):
//!
//! ```no_run
//! use masp_testkit::{Bytes, MinimalTestFramework};
//!
//! let result = MinimalTestFramework::builtin(Bytes::from_gib(2)).model_tests("silero-vad");
//! println!("{result}"); // the table, ending with `5 passed, 0 failed`
//! result.assert_success();
//! ```
//!
//! The memory assertions work on any profiled code, a model of yours or not:
//!
//! ```
//! use masp_profiler::{Event, MemoryProfiler};
//! use masp_testkit::{Bytes, ProfilerConfig};
//!
//! let profiler = MemoryProfiler::start(ProfilerConfig::default())?;
//! let h = profiler.handle();
//! for _ in 0..4 {
//!     h.mark(Event::load_start("buffer"));
//!     let loaded = vec![1u8; 16 << 20];
//!     h.mark(Event::load_end("buffer"));
//!     h.mark(Event::unload("buffer"));
//!     drop(loaded);
//!     let trimmed = masp_budget::trim::release_freed_memory();
//!     h.mark(Event::Cleanup { returned: trimmed.returned });
//! }
//! let report = profiler.stop().report();
//! masp_testkit::assert_no_leak!(report, Bytes::from_mib(4));
//! masp_testkit::assert_peak_below!(report, Bytes::from_gib(4));
//! # Ok::<(), masp_profiler::Error>(())
//! ```
//!
//! **Architecture Invariant:** only ever a dev-dependency of library crates.
#![warn(missing_docs)]

pub mod assert;
mod error;
pub mod fixtures;
mod framework;
pub mod hostile;
pub mod memory;
pub mod results;
pub mod synthetic;

pub use error::{Error, Result};
pub use framework::{
    CheckResult, MinimalTestFramework, REPORTS_ENV, SuiteConfig, SuiteReportPaths, SuiteResult,
};

pub use masp_budget::{Budget, BudgetConfig, Bytes};
pub use masp_model_registry::manifest::Registry;
pub use masp_orchestrator::OrchestratorConfig;
pub use masp_orchestrator::adapter::AdapterRegistry;
pub use masp_profiler::{LeakVerdict, ProfilerConfig, Report};
