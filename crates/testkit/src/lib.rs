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
//! println!("{result}"); // the table, ending with `6 passed, 0 failed`
//! result.assert_success();
//! ```
//!
//! # The checks and their thresholds
//!
//! Every check reads the profiler's report of the suite's own run (the warm-up load is left
//! out: a process's first ONNX Runtime session also pays the runtime's one-time globals). The
//! thresholds are [`SuiteConfig`] fields; the defaults suit masp's built-in models.
//!
//! | suite | check | fails when | judged by (default) |
//! |---|---|---|---|
//! | model | loads | a load of the warm-up or of a cycle fails | — |
//! | model | no leak | RSS after cleanup grows from cycle to cycle, or the orchestrator's post-unload check flags an unload | [`SuiteConfig::leak_tolerance`] (1 MiB per cycle), [`OrchestratorConfig::cleanup_tolerance`] (16 MiB) |
//! | both | peak below budget | the peak passes the budget's limit, or rises more than the allowance above the suite's start | the budget; [`SuiteConfig::peak_allowance`] (none) |
//! | model | returns to baseline | RSS ends above its start by more than a share of the model's resident size, or anything stays reserved or resident | [`SuiteConfig::baseline_share`] (0.5), capped by [`SuiteConfig::baseline_tolerance`] (16 MiB) |
//! | model | estimate vs measured | the metadata estimate of the load peak is too far below or above the measured peak | [`SuiteConfig::estimate_under_pct`] (25%), [`SuiteConfig::estimate_over_pct`] (200%), [`SuiteConfig::estimate_slack`] (1 MiB) |
//! | model | cleanup effectiveness | unloading gives back less than this share of what the load took, on average | [`SuiteConfig::min_cleanup_effectiveness`] (0.75) |
//! | orchestration | sequential execution | a task fails, a model is loaded more often than planned, or more models are resident at once than the policy allows | [`OrchestratorConfig::max_resident`] (1) |
//! | orchestration | memory stability | the repeated batches' peaks or end RSS spread too far | [`SuiteConfig::repeats`] (3), [`SuiteConfig::stability_tolerance`] (16 MiB) |
//! | orchestration | working memory | a model's largest task takes more working memory (its peak above the loaded model) than its allowance | [`SuiteConfig::working_allowances`] (none: reported only) |
//! | orchestration | resource cleanup | as "returns to baseline" (against the smallest model), or a post-unload flag | as above |
//!
//! A check that cannot fail for the reason it is named after is worse than none, so size the
//! ones that depend on your model: the peak allowance, and the working allowances, whose
//! figures "working memory" prints for every model. The budget a suite runs under bounds admission, not the
//! check: a 2 GiB budget never notices a 15 MiB model doubling. Measure your model's peak rise
//! once (the "peak below budget" figures print it: `rose X above Y`), then allow 1.5× it:
//!
//! ```no_run
//! use masp_testkit::{Bytes, MinimalTestFramework, SuiteConfig};
//!
//! let config = SuiteConfig {
//!     peak_allowance: Some(Bytes::from_mib(15 * 3 / 2)), // measured: 14 MiB
//!     min_cleanup_effectiveness: 0.9,
//!     ..SuiteConfig::default()
//! };
//! let result = MinimalTestFramework::builtin(Bytes::from_gib(2))
//!     .with_config(config)
//!     .model_tests("silero-vad");
//! result.assert_success();
//! ```
//!
//! masp's own suites are examples of each case: `tests/suites` (`cargo xtask test-sequential`)
//! runs both suites on the built-in models with allowances of 1.5× the measured rise, and
//! `tests/profile` (`cargo xtask test-profile`) shows each verdict fail for a leaked session, a
//! poor cleanup and a growing run.
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
