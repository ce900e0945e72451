//! masp-profiler: where memory went during a run, per phase and per model, and whether it leaks.
//!
//! A [`MemoryProfiler`] samples the process's RSS on a background thread (default every
//! 10 ms) into a bounded timeline ([`SampleBuffer`]). The program marks what it is doing
//! through a cheap [`ProfilerHandle`] ([`Event::LoadStart`], [`Event::TaskEnd`], …); each
//! mark is stamped with the RSS at that instant and the exact peak since the previous mark.
//! [`MemoryProfiler::stop`] returns the raw [`Profile`]; [`generate_report`] turns it into a
//! [`Report`] with phases, per-model attribution, load/unload cycles, trend, a leak verdict and
//! cleanup effectiveness, printable as text ([`Report`]'s `Display`), JSON
//! ([`Report::to_json`]) and an SVG timeline ([`Report::to_svg`]), or all three at once with
//! [`Report::write_all`]. [`ProfilerHandle::watch`] alerts within one interval when RSS
//! crosses a threshold, so an orchestrator can abort a task.
//!
//! ```
//! use masp_budget::{Bytes, trim};
//! use masp_profiler::{Event, MemoryProfiler, ProfilerConfig};
//!
//! let config = ProfilerConfig::default().with_budget_limit(Bytes::from_gib(1));
//! let profiler = MemoryProfiler::start(config)?;
//! let h = profiler.handle();
//! for _ in 0..3 {
//!     h.mark(Event::load_start("demo"));
//!     let model = vec![1u8; 32 << 20];
//!     h.mark(Event::load_end("demo"));
//!     h.mark(Event::unload("demo"));
//!     drop(model);
//!     let outcome = trim::release_freed_memory();
//!     h.mark(Event::Cleanup { returned: outcome.returned });
//! }
//! let report = profiler.stop().report();
//! println!("{report}");
//! assert_eq!(report.cycles.len(), 3);
//! # Ok::<(), masp_profiler::Error>(())
//! ```
//!
//! # Definitions
//!
//! - **Phases** split the run at every mark except notes: `LoadStart` opens a *load* phase,
//!   `TaskStart` a *task* phase, `Unload` a *cleanup* phase; `LoadEnd`, `TaskEnd` and `Cleanup`
//!   return to *idle*. Phases cover the run without gaps. A phase's peak is exact (sampler and
//!   marks), whatever the timeline's resolution.
//! - A **cycle** is `LoadStart{m}` → `LoadEnd{m}` → `Unload{m}` → the next `Cleanup` (or the
//!   next load/task start). Its *residual* is RSS after cleanup minus RSS before the load.
//! - **Leak verdict**: the first cycle is ignored as warm-up; the cumulative residuals of
//!   cycles 2..N are fitted by least squares over the cycle index. Growth above
//!   [`ProfilerConfig::leak_tolerance`], confirmed by a median residual above half of it
//!   (so a one-off step does not count), is "leak suspected: +X per cycle over N cycles".
//!   Needs at least 3 cycles.
//! - **Cleanup effectiveness** of a cycle = (RSS at `LoadEnd` − RSS after cleanup) ÷ (RSS at
//!   `LoadEnd` − RSS at `LoadStart`): the share of what the load took that came back.
//! - **Trend**: least-squares slope of the timeline (bytes/s) over the run and over the last
//!   [`ProfilerConfig::trend_window`], and a verdict over that window — growing, shrinking,
//!   flat or unsteady against [`ProfilerConfig::trend_tolerance`] (rules: [`TrendVerdict`]).
//!
//! # JSON schema (`report.json`, `schema_version` 1)
//!
//! All sizes are integers of bytes ([`Bytes`](masp_budget::Bytes), [`ByteDelta`] signed);
//! times are seconds since the profiler started (`*_s`); optional values are `null`.
//!
//! ```text
//! {
//!   "schema_version": 1, "duration_s": f64, "interval_ms": f64,
//!   "n_samples": u64, "samples_per_bucket": u64,
//!   "budget_limit": bytes|null, "rss_start": bytes|null, "rss_end": bytes|null,
//!   "peak": { "sampled": {"t_s": f64, "rss": bytes}|null, "kernel_hwm": bytes|null,
//!             "kernel_hwm_since_start": bool, "percent_of_budget": f64|null },
//!   "trend": { "overall_bytes_per_s": f64|null, "recent_bytes_per_s": f64|null,
//!              "recent_window_s": f64,
//!              "verdict": {"kind": "growing"|"shrinking", "bytes_per_s": f64}
//!                       | {"kind": "flat"|"unsteady"|"not_enough_samples"} },
//!   "leak": { "verdict": {"kind": "no_leak"}
//!                      | {"kind": "suspected", "per_cycle": bytes, "cycles": usize}
//!                      | {"kind": "not_enough_cycles", "cycles": usize},
//!             "growth_per_cycle": signed bytes|null, "n_cycles": usize, "tolerance": bytes },
//!   "cleanup": { "mean_effectiveness": f64|null, "n_cycles": usize },
//!   "sampler": { "cpu_s": f64|null, "overhead_pct": f64|null },
//!   "phases": [ { "kind": "idle"|"load"|"task"|"cleanup", "label": str, "model": str|null,
//!                 "start_s": f64, "end_s": f64, "rss_start": bytes, "rss_end": bytes,
//!                 "delta": signed bytes, "peak": bytes } ],
//!   "models": [ { "model": str, "n_loads": usize, "mean_load_growth": signed bytes|null,
//!                 "peak": bytes, "mean_effectiveness": f64|null, "leak": <as "leak"> } ],
//!   "cycles": [ { "model": str, "index": usize, "start_s": f64, "end_s": f64,
//!                 "baseline": bytes, "loaded": bytes, "load_growth": signed bytes,
//!                 "after_cleanup": bytes, "residual": signed bytes, "returned": signed bytes,
//!                 "trim_returned": bytes|null, "effectiveness": f64|null } ],
//!   "marks": [ { "t_s": f64, "rss": bytes, "peak_since_previous": bytes,
//!                "event": {"kind": "load_start"|"load_end"|"unload", "model": str}
//!                       | {"kind": "task_start"|"task_end", "task": str}
//!                       | {"kind": "cleanup", "returned": bytes}
//!                       | {"kind": "note", "text": str} } ],
//!   "timeline": [ { "t_start_s": f64, "t_end_s": f64, "min": bytes, "max": bytes,
//!                   "last": bytes, "n_samples": u64 } ]
//! }
//! ```
//!
//! # Architecture invariants
//!
//! - Depends on no masp crate but `masp-budget` (for [`Bytes`](masp_budget::Bytes) and the
//!   probes); it never trims the allocator itself.
//! - Memory is bounded for any run length: the timeline has a fixed capacity; only marks grow,
//!   one per event the program records.
//! - The sampler never blocks on the program: alerts go through bounded channels with
//!   `try_send`.

#![warn(missing_docs)]

mod buffer;
mod delta;
mod error;
mod event;
mod profile;
mod profiler;
mod report;
mod svg;
mod text;
mod write;

pub use buffer::{Bucket, SampleBuffer};
pub use delta::ByteDelta;
pub use error::{ConfigError, Error, Result};
pub use event::{Event, Mark};
pub use profile::{PeakSample, Profile};
pub use profiler::{MemoryProfiler, ProfilerConfig, ProfilerHandle, WatchAlert};
pub use report::{
    CleanupSummary, Cycle, LeakSummary, LeakVerdict, ModelSummary, PeakSummary, Phase, PhaseKind,
    Report, SCHEMA_VERSION, SamplerStats, Trend, TrendVerdict, generate_report,
};
pub use svg::xml_escape;
pub use write::ReportPaths;
