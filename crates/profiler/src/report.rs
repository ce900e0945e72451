//! The report: phases, cycles, trend and leak analysis computed from a `Profile`.

use std::fmt;

use masp_budget::Bytes;
use serde::{Deserialize, Serialize};

use crate::buffer::Bucket;
use crate::delta::ByteDelta;
use crate::error::{Error, Result};
use crate::event::{Event, Mark};
use crate::profile::{PeakSample, Profile};

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Load growth below which cleanup effectiveness is not computed (the ratio is noise).
const MIN_GROWTH_FOR_EFFECTIVENESS: Bytes = Bytes::from_mib(1);

/// The analysis of one profiling run. See the crate docs for the JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Sampling interval, milliseconds.
    pub interval_ms: f64,
    /// Samples taken.
    pub n_samples: u64,
    /// Samples per timeline bucket at the end.
    pub samples_per_bucket: u64,
    /// The budget line, if one was given.
    pub budget_limit: Option<Bytes>,
    /// RSS at start.
    pub rss_start: Option<Bytes>,
    /// RSS at stop.
    pub rss_end: Option<Bytes>,
    /// Peaks.
    pub peak: PeakSummary,
    /// RSS trend.
    pub trend: Trend,
    /// Leak verdict over all load/unload cycles.
    pub leak: LeakSummary,
    /// Cleanup effectiveness over all cycles.
    pub cleanup: CleanupSummary,
    /// Cost of the sampler.
    pub sampler: SamplerStats,
    /// The run split into phases, in time order, covering it without gaps.
    pub phases: Vec<Phase>,
    /// Per-model summaries, in order of first load.
    pub models: Vec<ModelSummary>,
    /// Every complete load → unload cycle, in time order.
    pub cycles: Vec<Cycle>,
    /// The marks, in time order.
    pub marks: Vec<Mark>,
    /// The downsampled RSS timeline.
    pub timeline: Vec<Bucket>,
}

/// Peak memory of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PeakSummary {
    /// Highest sampled RSS and when.
    pub sampled: Option<PeakSample>,
    /// Kernel high-water mark at stop (sees spikes between samples).
    pub kernel_hwm: Option<Bytes>,
    /// Whether `kernel_hwm` covers only this run (it was reset at start).
    pub kernel_hwm_since_start: bool,
    /// The higher of the two peaks as a percentage of the budget, if a budget was given.
    pub percent_of_budget: Option<f64>,
    /// Highest sampled RSS of the orchestrator's own process (`sampled` counts worker
    /// processes too).
    #[serde(default)]
    pub orchestrator: Option<Bytes>,
    /// Highest sampled RSS of the worker processes together; `None` when none ran.
    #[serde(default)]
    pub workers: Option<Bytes>,
}

/// Least-squares slope of RSS over time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Over the whole run, bytes per second.
    pub overall_bytes_per_s: Option<f64>,
    /// Over the last `recent_window_s` seconds, bytes per second.
    pub recent_bytes_per_s: Option<f64>,
    /// The recent window, seconds.
    pub recent_window_s: f64,
    /// Whether RSS grew, shrank or stayed flat over the recent window.
    #[serde(default)]
    pub verdict: TrendVerdict,
}

/// Where RSS went over the trend window (the last [`ProfilerConfig::trend_window`] of the run,
/// or all of it if shorter), judged against [`ProfilerConfig::trend_tolerance`] *T*.
///
/// The window is cut into six segments by time. RSS is **growing** when the least-squares line
/// rises by at least *T* over the window and each segment's mean RSS is above the one before it
/// by at least a quarter of an even share of that rise — a steady climb, not one step.
/// **Shrinking** is the mirror image. RSS is **flat** when the line moves by less than *T* and
/// the segments' means all lie within *T* of each other. Anything else (a step, a load or a
/// spike inside the window) is **unsteady**.
///
/// [`ProfilerConfig::trend_window`]: crate::ProfilerConfig::trend_window
/// [`ProfilerConfig::trend_tolerance`]: crate::ProfilerConfig::trend_tolerance
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrendVerdict {
    /// RSS climbs steadily.
    Growing {
        /// Fitted slope, bytes per second.
        bytes_per_s: f64,
    },
    /// RSS falls steadily.
    Shrinking {
        /// Fitted slope, bytes per second (negative).
        bytes_per_s: f64,
    },
    /// RSS stays within the tolerance.
    Flat,
    /// RSS moves, but not steadily one way.
    Unsteady,
    /// Fewer than 6 timeline points in the window, or a segment of it without one.
    #[default]
    NotEnoughSamples,
}

impl fmt::Display for TrendVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |b: f64| ByteDelta::from_f64(b);
        match self {
            TrendVerdict::Growing { bytes_per_s } => {
                write!(f, "growing ({}/s)", rate(*bytes_per_s))
            }
            TrendVerdict::Shrinking { bytes_per_s } => {
                write!(f, "shrinking ({}/s)", rate(*bytes_per_s))
            }
            TrendVerdict::Flat => f.write_str("flat"),
            TrendVerdict::Unsteady => f.write_str("unsteady (neither flat nor a steady trend)"),
            TrendVerdict::NotEnoughSamples => f.write_str("not enough samples to judge"),
        }
    }
}

/// Whether memory grows from one load/unload cycle to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeakVerdict {
    /// Growth per cycle is within the tolerance.
    NoLeak,
    /// RSS after cleanup grows by about `per_cycle` every cycle.
    Suspected {
        /// Fitted growth per cycle.
        per_cycle: Bytes,
        /// Cycles observed.
        cycles: usize,
    },
    /// Fewer than 3 cycles: the first is ignored as warm-up, so there is nothing to fit.
    NotEnoughCycles {
        /// Cycles observed.
        cycles: usize,
    },
}

impl fmt::Display for LeakVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeakVerdict::NoLeak => f.write_str("no leak"),
            LeakVerdict::Suspected { per_cycle, cycles } => {
                write!(
                    f,
                    "leak suspected: +{per_cycle} per cycle over {cycles} cycles"
                )
            }
            LeakVerdict::NotEnoughCycles { cycles } => {
                write!(f, "not enough cycles to judge ({cycles}, need 3)")
            }
        }
    }
}

/// Leak analysis over a sequence of cycles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeakSummary {
    /// The verdict.
    pub verdict: LeakVerdict,
    /// Fitted growth per cycle (cycles 2..N), if at least 3 cycles.
    pub growth_per_cycle: Option<ByteDelta>,
    /// Cycles considered.
    pub n_cycles: usize,
    /// Growth per cycle tolerated as noise.
    pub tolerance: Bytes,
}

/// How well unloading gave memory back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CleanupSummary {
    /// Mean of the cycles' effectiveness (see [`Cycle::effectiveness`]).
    pub mean_effectiveness: Option<f64>,
    /// Cycles with an effectiveness figure.
    pub n_cycles: usize,
}

/// Cost of the sampler thread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerStats {
    /// CPU seconds used by the sampler thread.
    pub cpu_s: Option<f64>,
    /// That as a percentage of one core over the run.
    pub overhead_pct: Option<f64>,
}

/// What the program was doing during a [`Phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PhaseKind {
    /// Between other phases.
    Idle,
    /// Loading a model (`LoadStart` → `LoadEnd`).
    Load,
    /// Running a task (`TaskStart` → `TaskEnd`).
    Task,
    /// Unloading and cleaning up (`Unload` → `Cleanup`).
    Cleanup,
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhaseKind::Idle => "idle",
            PhaseKind::Load => "load",
            PhaseKind::Task => "task",
            PhaseKind::Cleanup => "cleanup",
        })
    }
}

/// A stretch of the run between two marks, with the memory it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// What was happening.
    pub kind: PhaseKind,
    /// The model (load, cleanup) or task name; `idle` for idle phases.
    pub label: String,
    /// The model resident or being loaded/unloaded, if any.
    pub model: Option<String>,
    /// Start, seconds since the profiler started.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// RSS at the start.
    pub rss_start: Bytes,
    /// RSS at the end.
    pub rss_end: Bytes,
    /// `rss_end - rss_start`.
    pub delta: ByteDelta,
    /// Highest RSS during the phase (exact sampled peak, from the marks' segment peaks).
    pub peak: Bytes,
}

/// One model's load → unload cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    /// The model.
    pub model: String,
    /// 1-based count of this model's cycles.
    pub index: usize,
    /// `LoadStart` time, seconds.
    pub start_s: f64,
    /// Time of the cycle's end (the `Cleanup` mark, or whatever ended the unload), seconds.
    pub end_s: f64,
    /// RSS at `LoadStart`.
    pub baseline: Bytes,
    /// RSS at `LoadEnd`.
    pub loaded: Bytes,
    /// `loaded - baseline`: what the load cost.
    pub load_growth: ByteDelta,
    /// RSS after cleanup.
    pub after_cleanup: Bytes,
    /// `after_cleanup - baseline`: what the cycle left behind.
    pub residual: ByteDelta,
    /// `loaded - after_cleanup`: what unloading and cleanup gave back.
    pub returned: ByteDelta,
    /// What the `Cleanup` mark said the trim returned, if there was one.
    pub trim_returned: Option<Bytes>,
    /// `returned / load_growth` (1.0 = everything the load took came back; above 1.0 the
    /// task's own memory came back too). `None` if the load grew RSS by less than 1 MiB.
    pub effectiveness: Option<f64>,
}

/// Memory attributed to one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// The model.
    pub model: String,
    /// Times it was loaded (`LoadStart` marks).
    pub n_loads: usize,
    /// Mean RSS growth of its complete loads.
    pub mean_load_growth: Option<ByteDelta>,
    /// Highest RSS in any phase attributed to it (load, its tasks, cleanup).
    pub peak: Bytes,
    /// Mean cleanup effectiveness of its cycles.
    pub mean_effectiveness: Option<f64>,
    /// Leak analysis over its own cycles.
    pub leak: LeakSummary,
}

impl Report {
    /// The report as pretty-printed JSON (schema in the crate docs).
    ///
    /// # Errors
    ///
    /// [`Error::Json`] if encoding fails (it does not for reports built by this crate).
    ///
    /// # Examples
    ///
    /// ```
    /// # let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
    /// let json = report.to_json()?;
    /// assert!(json.contains("\"schema_version\": 1"));
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| Error::Json { source })
    }
}

// Here rather than beside `Profile` so that `profile` need not import the analysis.
impl Profile {
    /// The report of this run; same as [`generate_report`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let profile = masp_profiler::MemoryProfiler::start(Default::default())?.stop();
    /// let report = profile.report();
    /// assert_eq!(report.n_samples, profile.n_samples);
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn report(&self) -> Report {
        generate_report(self)
    }
}

/// Analyses a profile: phases, per-model attribution, cycles, trend, leaks and cleanup.
///
/// # Examples
///
/// ```
/// use masp_profiler::{Event, LeakVerdict, MemoryProfiler, ProfilerConfig, generate_report};
///
/// let profiler = MemoryProfiler::start(ProfilerConfig::default())?;
/// let h = profiler.handle();
/// h.mark(Event::load_start("m"));
/// h.mark(Event::load_end("m"));
/// h.mark(Event::unload("m"));
/// let report = generate_report(&profiler.stop());
/// assert_eq!(report.cycles.len(), 1);
/// assert_eq!(report.leak.verdict, LeakVerdict::NotEnoughCycles { cycles: 1 });
/// # Ok::<(), masp_profiler::Error>(())
/// ```
#[must_use]
pub fn generate_report(profile: &Profile) -> Report {
    let mut marks = profile.marks.clone();
    marks.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let rss_start = profile
        .rss_start
        .or_else(|| profile.timeline.first().map(|b| b.last))
        .unwrap_or(Bytes::ZERO);
    let rss_end = profile
        .rss_end
        .or_else(|| profile.timeline.last().map(|b| b.last))
        .unwrap_or(rss_start);

    let phases = derive_phases(
        &marks,
        rss_start,
        rss_end,
        profile.duration_s,
        profile.tail_peak,
    );
    let cycles = derive_cycles(&marks, rss_end, profile.duration_s);
    let models = summarize_models(&marks, &phases, &cycles, profile.leak_tolerance);
    let leak = leak_summary(&cycles.iter().collect::<Vec<_>>(), profile.leak_tolerance);
    let effectiveness: Vec<f64> = cycles.iter().filter_map(|c| c.effectiveness).collect();

    let kernel_hwm = profile.kernel_peak;
    let top = profile
        .sampled_peak
        .map(|p| p.rss)
        .max(kernel_hwm.filter(|_| profile.kernel_peak_since_start));
    let percent_of_budget = match (top, profile.budget_limit) {
        (Some(top), Some(limit)) if limit > Bytes::ZERO => {
            Some(100.0 * top.as_mib_f64() / limit.as_mib_f64())
        }
        _ => None,
    };

    Report {
        schema_version: SCHEMA_VERSION,
        duration_s: profile.duration_s,
        interval_ms: profile.interval_ms,
        n_samples: profile.n_samples,
        samples_per_bucket: profile.samples_per_bucket,
        budget_limit: profile.budget_limit,
        rss_start: profile.rss_start,
        rss_end: profile.rss_end,
        peak: PeakSummary {
            sampled: profile.sampled_peak,
            kernel_hwm,
            kernel_hwm_since_start: profile.kernel_peak_since_start,
            percent_of_budget,
            orchestrator: profile.own_peak,
            workers: profile.workers_peak,
        },
        trend: trend(
            &profile.timeline,
            profile.duration_s,
            profile.trend_window_s,
            profile.trend_tolerance,
        ),
        leak,
        cleanup: CleanupSummary {
            mean_effectiveness: mean(&effectiveness),
            n_cycles: effectiveness.len(),
        },
        sampler: SamplerStats {
            cpu_s: profile.sampler_cpu_s,
            overhead_pct: profile.sampler_overhead_pct(),
        },
        phases,
        models,
        cycles,
        marks,
        timeline: profile.timeline.clone(),
    }
}

/// The phase state after a (non-note) mark.
#[derive(Debug, Clone, PartialEq)]
struct State {
    kind: PhaseKind,
    label: String,
}

impl State {
    fn idle() -> Self {
        State {
            kind: PhaseKind::Idle,
            label: "idle".to_owned(),
        }
    }
}

/// Splits the run at every non-note mark into phases covering `[0, duration]`.
fn derive_phases(
    marks: &[Mark],
    rss_start: Bytes,
    rss_end: Bytes,
    duration_s: f64,
    tail_peak: Bytes,
) -> Vec<Phase> {
    let mut phases = Vec::new();
    let mut state = State::idle();
    let mut resident: Option<String> = None;
    let mut open = Phase {
        kind: PhaseKind::Idle,
        label: state.label.clone(),
        model: None,
        start_s: 0.0,
        end_s: 0.0,
        rss_start,
        rss_end: rss_start,
        delta: ByteDelta::ZERO,
        peak: rss_start,
    };
    for mark in marks {
        open.peak = open.peak.max(mark.peak_since_previous);
        let (next, model) = match &mark.event {
            Event::Note { .. } => continue,
            Event::LoadStart { model } => {
                resident = Some(model.clone());
                (
                    State {
                        kind: PhaseKind::Load,
                        label: model.clone(),
                    },
                    Some(model.clone()),
                )
            }
            Event::LoadEnd { model } => {
                resident = Some(model.clone());
                (State::idle(), resident.clone())
            }
            Event::TaskStart { task } => (
                State {
                    kind: PhaseKind::Task,
                    label: task.clone(),
                },
                resident.clone(),
            ),
            Event::TaskEnd { .. } => (State::idle(), resident.clone()),
            Event::Unload { model } => {
                resident = None;
                (
                    State {
                        kind: PhaseKind::Cleanup,
                        label: model.clone(),
                    },
                    Some(model.clone()),
                )
            }
            Event::Cleanup { .. } => (State::idle(), resident.clone()),
        };
        if next == state && open.model == model {
            continue;
        }
        let following = Phase {
            kind: next.kind,
            label: next.label.clone(),
            model,
            start_s: mark.t_s,
            end_s: mark.t_s,
            rss_start: mark.rss,
            rss_end: mark.rss,
            delta: ByteDelta::ZERO,
            peak: mark.rss,
        };
        let mut done = std::mem::replace(&mut open, following);
        done.end_s = mark.t_s;
        done.rss_end = mark.rss;
        push_phase(&mut phases, done, false);
        state = next;
    }
    open.end_s = duration_s.max(open.start_s);
    open.rss_end = rss_end;
    open.peak = open.peak.max(tail_peak).max(rss_end);
    // The run is covered by at least one phase, even if it is empty.
    let keep = phases.is_empty();
    push_phase(&mut phases, open, keep);
    phases
}

fn push_phase(phases: &mut Vec<Phase>, mut phase: Phase, keep_empty: bool) {
    phase.delta = ByteDelta::between(phase.rss_start, phase.rss_end);
    phase.peak = phase.peak.max(phase.rss_start).max(phase.rss_end);
    // Marks at the same instant leave empty idle phases; they carry no information.
    if phase.kind == PhaseKind::Idle && phase.end_s <= phase.start_s && !keep_empty {
        return;
    }
    phases.push(phase);
}

/// Builds the complete load → unload cycles of every model.
fn derive_cycles(marks: &[Mark], rss_end: Bytes, duration_s: f64) -> Vec<Cycle> {
    struct Open {
        start_s: f64,
        baseline: Bytes,
        loaded: Option<Bytes>,
    }
    struct Unloading {
        model: String,
        start_s: f64,
        baseline: Bytes,
        loaded: Bytes,
    }
    let mut open: Vec<(String, Open)> = Vec::new();
    let mut unloading: Vec<Unloading> = Vec::new();
    let mut cycles = Vec::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut finish = |u: Unloading, end_s: f64, after: Bytes, trim: Option<Bytes>| {
        let index = match counts.iter_mut().find(|(m, _)| *m == u.model) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((u.model.clone(), 1));
                1
            }
        };
        let load_growth = ByteDelta::between(u.baseline, u.loaded);
        let returned = ByteDelta::between(after, u.loaded);
        let effectiveness = (load_growth.get() > 0
            && load_growth.magnitude() >= MIN_GROWTH_FOR_EFFECTIVENESS)
            .then(|| returned.get() as f64 / load_growth.get() as f64);
        cycles.push(Cycle {
            model: u.model,
            index,
            start_s: u.start_s,
            end_s,
            baseline: u.baseline,
            loaded: u.loaded,
            load_growth,
            after_cleanup: after,
            residual: ByteDelta::between(u.baseline, after),
            returned,
            trim_returned: trim,
            effectiveness,
        });
    };
    for mark in marks {
        // A cleanup, or the start of new work, ends every unload in progress.
        let ends_unloads = match &mark.event {
            Event::Cleanup { returned } => Some(Some(*returned)),
            Event::LoadStart { .. } | Event::LoadEnd { .. } | Event::TaskStart { .. } => Some(None),
            _ => None,
        };
        if let Some(trim) = ends_unloads {
            for u in unloading.drain(..) {
                finish(u, mark.t_s, mark.rss, trim);
            }
        }
        match &mark.event {
            Event::LoadStart { model } => {
                open.retain(|(m, _)| m != model);
                let cycle = Open {
                    start_s: mark.t_s,
                    baseline: mark.rss,
                    loaded: None,
                };
                open.push((model.clone(), cycle));
            }
            Event::LoadEnd { model } => {
                if let Some((_, o)) = open.iter_mut().find(|(m, _)| m == model) {
                    o.loaded = Some(mark.rss);
                }
            }
            Event::Unload { model } => {
                if let Some(pos) = open.iter().position(|(m, _)| m == model) {
                    let (model, o) = open.remove(pos);
                    if let Some(loaded) = o.loaded {
                        unloading.push(Unloading {
                            model,
                            start_s: o.start_s,
                            baseline: o.baseline,
                            loaded,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    for u in unloading {
        finish(u, duration_s, rss_end, None);
    }
    settle(&mut cycles);
    cycles
}

/// Memory an unload frees sometimes reaches the OS only at the next trim (the orchestrator
/// trims again right before the next load), so the RSS right after a cleanup can overstate what
/// a cycle left behind; fitted over cycles, that bounce reads as a leak. A cycle's level after
/// cleanup is therefore the lowest RSS seen before the next cycle's load: the smaller of its
/// own after-cleanup mark and the next cycle's baseline.
fn settle(cycles: &mut [Cycle]) {
    cycles.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    for i in 0..cycles.len().saturating_sub(1) {
        let (next_start_s, next_baseline) = (cycles[i + 1].start_s, cycles[i + 1].baseline);
        let c = &mut cycles[i];
        // Only in sequence: with several models resident, cycles overlap and the next baseline
        // includes other models.
        if next_start_s >= c.end_s && next_baseline < c.after_cleanup {
            c.after_cleanup = next_baseline;
            c.residual = ByteDelta::between(c.baseline, c.after_cleanup);
            c.returned = ByteDelta::between(c.after_cleanup, c.loaded);
            if let Some(e) = c.effectiveness.as_mut() {
                *e = c.returned.get() as f64 / c.load_growth.get() as f64;
            }
        }
    }
}

fn summarize_models(
    marks: &[Mark],
    phases: &[Phase],
    cycles: &[Cycle],
    tolerance: Bytes,
) -> Vec<ModelSummary> {
    let mut names: Vec<&str> = Vec::new();
    for mark in marks {
        if let Event::LoadStart { model } = &mark.event
            && !names.contains(&model.as_str())
        {
            names.push(model);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let own: Vec<&Cycle> = cycles.iter().filter(|c| c.model == name).collect();
            let growths: Vec<f64> = own.iter().map(|c| c.load_growth.get() as f64).collect();
            let effectiveness: Vec<f64> = own.iter().filter_map(|c| c.effectiveness).collect();
            let n_loads = marks
                .iter()
                .filter(|m| matches!(&m.event, Event::LoadStart { model } if model == name))
                .count();
            ModelSummary {
                model: name.to_owned(),
                n_loads,
                mean_load_growth: mean(&growths).map(ByteDelta::from_f64),
                peak: phases
                    .iter()
                    .filter(|p| p.kind != PhaseKind::Idle && p.model.as_deref() == Some(name))
                    .map(|p| p.peak)
                    .max()
                    .unwrap_or(Bytes::ZERO),
                mean_effectiveness: mean(&effectiveness),
                leak: leak_summary(&own, tolerance),
            }
        })
        .collect()
}

/// Fits growth per cycle and judges it against `tolerance`.
///
/// Each cycle's residual (RSS after cleanup minus RSS before its load) is what it left behind.
/// The first cycle is skipped (one-time warm-up: allocator arenas, runtime caches); the
/// cumulative residuals of cycles 2..N, starting from 0 at cycle 1, are fitted by least squares
/// over the cycle index. For back-to-back cycles this equals fitting RSS-after-cleanup itself;
/// with other work interleaved it attributes only the cycles' own growth. A leak is suspected
/// when the slope exceeds `tolerance` and the median residual of cycles 2..N exceeds half of
/// it, so a single step (not repeated) does not count.
fn leak_summary(cycles: &[&Cycle], tolerance: Bytes) -> LeakSummary {
    let n = cycles.len();
    if n < 3 {
        return LeakSummary {
            verdict: LeakVerdict::NotEnoughCycles { cycles: n },
            growth_per_cycle: None,
            n_cycles: n,
            tolerance,
        };
    }
    let mut cumulative = 0.0;
    let points: Vec<(f64, f64)> = std::iter::once((1.0, 0.0))
        .chain(cycles.iter().enumerate().skip(1).map(|(i, c)| {
            cumulative += c.residual.get() as f64;
            ((i + 1) as f64, cumulative)
        }))
        .collect();
    let slope = least_squares_slope(&points).unwrap_or(0.0);
    let growth = ByteDelta::from_f64(slope);
    // A least-squares line is pulled up by one late step (an allocator raising its mmap
    // threshold once, a cache filled once); a leak shows in most cycles, so the median
    // residual must agree.
    let mut residuals: Vec<f64> = cycles[1..]
        .iter()
        .map(|c| c.residual.get() as f64)
        .collect();
    residuals.sort_by(f64::total_cmp);
    let mid = residuals.len() / 2;
    let median = if residuals.len().is_multiple_of(2) {
        (residuals[mid - 1] + residuals[mid]) / 2.0
    } else {
        residuals[mid]
    };
    let tolerance_f = tolerance.get() as f64;
    let verdict = if slope > tolerance_f && median > tolerance_f / 2.0 {
        LeakVerdict::Suspected {
            per_cycle: growth.magnitude(),
            cycles: n,
        }
    } else {
        LeakVerdict::NoLeak
    };
    LeakSummary {
        verdict,
        growth_per_cycle: Some(growth),
        n_cycles: n,
        tolerance,
    }
}

fn trend(timeline: &[Bucket], duration_s: f64, window_s: f64, tolerance: Bytes) -> Trend {
    let points: Vec<(f64, f64)> = timeline
        .iter()
        .map(|b| (b.t_end_s, b.last.get() as f64))
        .collect();
    let from = duration_s - window_s;
    let recent: Vec<(f64, f64)> = points.iter().copied().filter(|(t, _)| *t >= from).collect();
    let recent_bytes_per_s = least_squares_slope(&recent);
    Trend {
        overall_bytes_per_s: least_squares_slope(&points),
        recent_bytes_per_s,
        recent_window_s: window_s,
        verdict: trend_verdict(&recent, recent_bytes_per_s, tolerance.get() as f64),
    }
}

/// Segments of the trend window whose means must climb one after the other.
const TREND_SEGMENTS: usize = 6;

/// The [`TrendVerdict`] of `points` (time, RSS) whose least-squares slope is `slope`.
fn trend_verdict(points: &[(f64, f64)], slope: Option<f64>, tolerance: f64) -> TrendVerdict {
    let (Some(slope), Some(first), Some(last)) = (slope, points.first(), points.last()) else {
        return TrendVerdict::NotEnoughSamples;
    };
    let span = last.0 - first.0;
    if points.len() < TREND_SEGMENTS || span <= 0.0 {
        return TrendVerdict::NotEnoughSamples;
    }
    let mut sums = [(0.0_f64, 0_u32); TREND_SEGMENTS];
    for (t, rss) in points {
        let k = (((t - first.0) / span) * TREND_SEGMENTS as f64) as usize;
        let slot = &mut sums[k.min(TREND_SEGMENTS - 1)];
        *slot = (slot.0 + rss, slot.1 + 1);
    }
    let Some(means) = sums
        .iter()
        .map(|(sum, n)| (*n > 0).then(|| sum / f64::from(*n)))
        .collect::<Option<Vec<f64>>>()
    else {
        return TrendVerdict::NotEnoughSamples;
    };
    let rise = slope * span;
    // Each segment a quarter of an even share of the rise above (below) the one before it.
    let step = rise.abs() / (4.0 * TREND_SEGMENTS as f64);
    let climbs = means.windows(2).all(|w| w[1] - w[0] >= step);
    let falls = means.windows(2).all(|w| w[0] - w[1] >= step);
    let spread = means.iter().copied().fold(f64::MIN, f64::max)
        - means.iter().copied().fold(f64::MAX, f64::min);
    if rise >= tolerance && climbs {
        TrendVerdict::Growing { bytes_per_s: slope }
    } else if rise <= -tolerance && falls {
        TrendVerdict::Shrinking { bytes_per_s: slope }
    } else if rise.abs() < tolerance && spread < tolerance {
        TrendVerdict::Flat
    } else {
        TrendVerdict::Unsteady
    }
}

/// Slope of the least-squares line through `points`; `None` with fewer than two distinct x.
pub(crate) fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        let dx = x - mean_x;
        (sxy + dx * (y - mean_y), sxx + dx * dx)
    });
    (sxx > 0.0).then(|| sxy / sxx)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(t_s: f64, rss_mib: u64, event: Event) -> Mark {
        let rss = Bytes::from_mib(rss_mib);
        Mark {
            t_s,
            rss,
            peak_since_previous: rss,
            event,
        }
    }

    /// A synthetic profile: `n` cycles of a model that leaks `leak_mib` each.
    fn cycles_profile(n: usize, leak_mib: u64, warmup_mib: u64) -> Profile {
        let mut marks = Vec::new();
        let mut base = 100;
        for i in 0..n {
            let t = i as f64 * 10.0;
            marks.push(mark(t, base, Event::load_start("m")));
            marks.push(mark(t + 1.0, base + 500, Event::load_end("m")));
            marks.push(mark(t + 2.0, base + 520, Event::task_start("job")));
            marks.push(mark(t + 5.0, base + 530, Event::task_end("job")));
            marks.push(mark(t + 6.0, base + 530, Event::unload("m")));
            base += leak_mib + if i == 0 { warmup_mib } else { 0 };
            let returned = Bytes::from_mib(30);
            marks.push(mark(t + 7.0, base, Event::Cleanup { returned }));
        }
        Profile {
            interval_ms: 10.0,
            duration_s: n as f64 * 10.0,
            budget_limit: Some(Bytes::from_gib(1)),
            trend_window_s: 60.0,
            trend_tolerance: Bytes::from_mib(4),
            leak_tolerance: Bytes::from_mib(1),
            rss_start: Some(Bytes::from_mib(100)),
            rss_end: Some(Bytes::from_mib(base)),
            timeline: Vec::new(),
            samples_per_bucket: 1,
            n_samples: 0,
            marks,
            tail_peak: Bytes::from_mib(base),
            sampled_peak: None,
            kernel_peak: None,
            kernel_peak_since_start: false,
            sampler_cpu_s: None,
            own_peak: None,
            workers_peak: None,
        }
    }

    #[test]
    fn fits_the_leak_and_ignores_warmup() {
        let report = generate_report(&cycles_profile(10, 8, 50));
        assert_eq!(
            report.leak.verdict,
            LeakVerdict::Suspected {
                per_cycle: Bytes::from_mib(8),
                cycles: 10
            }
        );
        assert_eq!(
            report.leak.verdict.to_string(),
            "leak suspected: +8 MiB per cycle over 10 cycles"
        );
        let report = generate_report(&cycles_profile(10, 0, 50));
        assert_eq!(report.leak.verdict, LeakVerdict::NoLeak);
        assert_eq!(report.leak.verdict.to_string(), "no leak");
        assert_eq!(report.models[0].leak.verdict, LeakVerdict::NoLeak);
    }

    #[test]
    fn memory_returned_only_at_the_next_trim_is_not_a_leak() {
        // Each cleanup leaves RSS 4 MiB high; the trim before the next load gives it back, so the
        // next baseline is where the last cycle started. No cycle leaves anything behind.
        let mut profile = cycles_profile(10, 0, 0);
        for m in &mut profile.marks {
            if matches!(m.event, Event::Cleanup { .. }) {
                m.rss = m.rss.saturating_add(Bytes::from_mib(4));
            }
        }
        let report = generate_report(&profile);
        assert_eq!(
            report.leak.verdict,
            LeakVerdict::NoLeak,
            "{:?}",
            report.leak
        );
        // The last cycle has no next load to settle it: its residual stays as measured.
        assert_eq!(
            report.cycles[8].residual,
            ByteDelta::between(Bytes::from_mib(100), Bytes::from_mib(100))
        );
    }

    #[test]
    fn a_single_step_is_not_a_leak() {
        let mut profile = cycles_profile(10, 0, 0);
        // Every mark from the 5th cycle on is 24 MiB higher: one step, not growth per cycle.
        for m in profile.marks.iter_mut().skip(6 * 4 + 5) {
            m.rss = m.rss.saturating_add(Bytes::from_mib(24));
        }
        let report = generate_report(&profile);
        assert!(
            report.leak.growth_per_cycle.unwrap().get() > 1 << 20,
            "{:?}",
            report.leak
        );
        assert_eq!(report.leak.verdict, LeakVerdict::NoLeak);
    }

    #[test]
    fn phases_cover_the_run_and_carry_models() {
        let report = generate_report(&cycles_profile(2, 0, 0));
        let kinds: Vec<_> = report
            .phases
            .iter()
            .map(|p| (p.kind, p.label.as_str()))
            .collect();
        use PhaseKind::*;
        assert_eq!(
            kinds,
            [
                (Load, "m"),
                (Idle, "idle"),
                (Task, "job"),
                (Idle, "idle"),
                (Cleanup, "m"),
                (Idle, "idle"),
                (Load, "m"),
                (Idle, "idle"),
                (Task, "job"),
                (Idle, "idle"),
                (Cleanup, "m"),
                (Idle, "idle"),
            ]
        );
        let task = &report.phases[2];
        assert_eq!(task.model.as_deref(), Some("m"));
        assert_eq!(task.delta, ByteDelta::new(10 << 20));
        for pair in report.phases.windows(2) {
            assert_eq!(pair[0].end_s, pair[1].start_s);
        }
        assert_eq!(report.phases.last().unwrap().end_s, report.duration_s);
    }

    #[test]
    fn cycles_measure_cleanup_effectiveness() {
        let report = generate_report(&cycles_profile(3, 0, 0));
        let c = &report.cycles[1];
        assert_eq!((c.model.as_str(), c.index), ("m", 2));
        assert_eq!(c.load_growth, ByteDelta::new(500 << 20));
        assert_eq!(c.returned, ByteDelta::new(500 << 20));
        assert_eq!(c.effectiveness, Some(1.0));
        assert_eq!(c.trim_returned, Some(Bytes::from_mib(30)));
        assert_eq!(report.cleanup.mean_effectiveness, Some(1.0));
        assert_eq!(report.models[0].n_loads, 3);
        assert_eq!(report.models[0].peak, Bytes::from_mib(630));
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((least_squares_slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(least_squares_slope(&[(1.0, 1.0)]), None);
        assert_eq!(least_squares_slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    /// `n` points one second apart at `mib(i)` MiB, judged with a 4 MiB tolerance.
    fn verdict_of(n: usize, mib: impl Fn(usize) -> f64) -> TrendVerdict {
        let pts: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, mib(i) * 1048576.0)).collect();
        trend_verdict(&pts, least_squares_slope(&pts), 4.0 * 1048576.0)
    }

    #[test]
    fn trend_verdicts_tell_a_steady_climb_from_a_step_and_from_noise() {
        // 0.2 MiB/s for 60 s with ±1 MiB of churn: growing.
        let churn = |i: usize| if i.is_multiple_of(2) { 1.0 } else { -1.0 };
        let growing = verdict_of(60, |i| 100.0 + 0.2 * i as f64 + churn(i));
        assert!(
            matches!(growing, TrendVerdict::Growing { bytes_per_s } if (bytes_per_s / 1048576.0 - 0.2).abs() < 0.02),
            "{growing:?}"
        );
        assert_eq!(verdict_of(60, |i| 100.0 + churn(i)), TrendVerdict::Flat);
        assert!(matches!(
            verdict_of(60, |i| 100.0 - 0.2 * i as f64),
            TrendVerdict::Shrinking { .. }
        ));
        // One 20 MiB step in the middle: the line rises, but the segments do not climb in turn.
        assert_eq!(
            verdict_of(60, |i| if i < 30 { 100.0 } else { 120.0 }),
            TrendVerdict::Unsteady
        );
        // A spike that comes back: neither.
        assert_eq!(
            verdict_of(60, |i| if (20..40).contains(&i) { 140.0 } else { 100.0 }),
            TrendVerdict::Unsteady
        );
        // Under the tolerance over the window: flat, however steady.
        assert_eq!(
            verdict_of(60, |i| 100.0 + 0.05 * i as f64),
            TrendVerdict::Flat
        );
        assert_eq!(
            verdict_of(5, |i| i as f64 * 10.0),
            TrendVerdict::NotEnoughSamples
        );
        assert_eq!(
            trend_verdict(&[], None, 1.0),
            TrendVerdict::NotEnoughSamples
        );
    }
}
