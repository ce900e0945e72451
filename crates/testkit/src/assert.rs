//! Memory assertions over the profiler's findings: no leak, peak below a limit, RSS back to its
//! baseline.
//!
//! Each check is a function returning `Result<(), AssertionFailure>` (to collect results, as
//! [`crate::MinimalTestFramework`] does) with a panicking macro beside it for plain tests:
//! [`assert_no_leak!`](crate::assert_no_leak), [`assert_peak_below!`](crate::assert_peak_below),
//! [`assert_returns_to_baseline!`](crate::assert_returns_to_baseline). A failure prints the
//! timeline summary — peak, per-phase table, leak verdict — so the message alone says where the
//! memory went.

use std::fmt::{self, Write as _};

use masp_budget::Bytes;
use masp_profiler::{ByteDelta, Cycle, LeakVerdict, PhaseKind, Report};
use serde::Serialize;

/// Why a memory assertion failed, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssertionFailure {
    /// The assertion, e.g. `no leak`.
    pub check: &'static str,
    /// What was wrong, with the figures, in one line.
    pub message: String,
    /// The timeline summary (peak, phases, leak verdict) or the per-cycle table it was judged on.
    pub summary: String,
}

impl fmt::Display for AssertionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.check, self.message)?;
        if !self.summary.is_empty() {
            write!(f, "\n{}", self.summary)?;
        }
        Ok(())
    }
}

impl std::error::Error for AssertionFailure {}

/// What a leak can be judged from: load → unload cycles.
///
/// Implemented for a whole [`Report`] (all its cycles; its summary is the timeline summary) and
/// for a slice of [`Cycle`]s (e.g. one model's, `report.cycles` filtered).
pub trait LeakEvidence {
    /// The cycles, in order.
    fn cycles(&self) -> Vec<&Cycle>;
    /// What to print when the assertion fails.
    fn summary(&self) -> String;
}

impl LeakEvidence for Report {
    fn cycles(&self) -> Vec<&Cycle> {
        self.cycles.iter().collect()
    }

    fn summary(&self) -> String {
        timeline_summary(self)
    }
}

impl LeakEvidence for [Cycle] {
    fn cycles(&self) -> Vec<&Cycle> {
        self.iter().collect()
    }

    fn summary(&self) -> String {
        cycle_table(&self.iter().collect::<Vec<_>>())
    }
}

impl LeakEvidence for Vec<Cycle> {
    fn cycles(&self) -> Vec<&Cycle> {
        self.iter().collect()
    }

    fn summary(&self) -> String {
        self.as_slice().summary()
    }
}

/// The leak over `cycles`, judged against `tolerance` per cycle.
///
/// What a cycle leaves behind is the lowest RSS between its cleanup and the next cycle's load
/// (the orchestrator trims the allocator again before each load, and some of what an unload
/// frees comes back only then, so RSS right after a cleanup bounces by several MiB without
/// any growth). The first cycle is ignored as warm-up; over cycles 2..N the least-squares slope
/// of those levels is the growth per cycle. A leak is suspected when the slope exceeds
/// `tolerance` and the net growth from cycle 2 to N agrees (at least half of the slope's
/// total), so neither bouncing nor one late step counts.
///
/// (The profiler's own verdict fits cumulative residuals — RSS after cleanup minus RSS before
/// the load — which adds that bounce up as growth when a trim falls between cycles.)
///
/// Returns the verdict and the fitted growth per cycle (`None` under 3 cycles).
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// use masp_profiler::LeakVerdict;
/// let none: Vec<masp_profiler::Cycle> = Vec::new();
/// let (verdict, growth) = masp_testkit::assert::leak_verdict(&none, Bytes::from_mib(1));
/// assert_eq!(verdict, LeakVerdict::NotEnoughCycles { cycles: 0 });
/// assert!(growth.is_none());
/// ```
pub fn leak_verdict<E: LeakEvidence + ?Sized>(
    evidence: &E,
    tolerance: Bytes,
) -> (LeakVerdict, Option<ByteDelta>) {
    let cycles = evidence.cycles();
    let n = cycles.len();
    if n < 3 {
        return (LeakVerdict::NotEnoughCycles { cycles: n }, None);
    }
    let levels: Vec<f64> = (0..n)
        .map(|i| {
            let after = cycles[i].after_cleanup;
            let next = cycles.get(i + 1).map_or(after, |c| c.baseline.min(after));
            next.get() as f64
        })
        .collect();
    let points: Vec<(f64, f64)> = levels
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, l)| ((i + 1) as f64, *l))
        .collect();
    let slope = slope(&points);
    let net = levels[n - 1] - levels[1];
    let tolerance_f = tolerance.get() as f64;
    let growth = ByteDelta::from_f64(slope);
    let verdict = if slope > tolerance_f && net > slope * (n - 2) as f64 / 2.0 {
        LeakVerdict::Suspected {
            per_cycle: growth.magnitude(),
            cycles: n,
        }
    } else {
        LeakVerdict::NoLeak
    };
    (verdict, Some(growth))
}

fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (
            num + (x - mean_x) * (y - mean_y),
            den + (x - mean_x) * (x - mean_x),
        )
    });
    if den > 0.0 { num / den } else { 0.0 }
}

/// Passes when the cycles show no growth above `tolerance` per cycle (see [`leak_verdict`]).
/// Fewer than 3 cycles fail: there is nothing to judge, and a check that cannot fail proves
/// nothing.
///
/// # Errors
/// An [`AssertionFailure`] naming the model(s), the growth per cycle and the cycle count, with
/// the summary of the evidence.
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
/// let failure = masp_testkit::assert::assert_no_leak(&report, Bytes::from_mib(1)).unwrap_err();
/// assert!(failure.message.contains("not enough cycles"));
/// # Ok::<(), masp_profiler::Error>(())
/// ```
pub fn assert_no_leak<E: LeakEvidence + ?Sized>(
    evidence: &E,
    tolerance: Bytes,
) -> Result<(), AssertionFailure> {
    let (verdict, _) = leak_verdict(evidence, tolerance);
    let cycles = evidence.cycles();
    let mut models: Vec<&str> = Vec::new();
    for c in &cycles {
        if !models.contains(&c.model.as_str()) {
            models.push(&c.model);
        }
    }
    let models = if models.is_empty() {
        "no model".to_owned()
    } else {
        models.join(", ")
    };
    let message = match verdict {
        LeakVerdict::NoLeak => return Ok(()),
        LeakVerdict::Suspected { per_cycle, cycles } => format!(
            "{models} leaks {per_cycle} per cycle over {cycles} load/unload cycles \
             (tolerance {tolerance} per cycle)"
        ),
        other => format!("{models}: {other}"),
    };
    Err(AssertionFailure {
        check: "no leak",
        message,
        summary: evidence.summary(),
    })
}

/// The run's peak: the higher of the sampled peak and the kernel's high-water mark (when that
/// covers only the run).
///
/// # Examples
///
/// ```
/// let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
/// assert!(masp_testkit::assert::peak_of(&report) > masp_budget::Bytes::ZERO);
/// # Ok::<(), masp_profiler::Error>(())
/// ```
#[must_use]
pub fn peak_of(report: &Report) -> Bytes {
    let sampled = report.peak.sampled.map(|p| p.rss).unwrap_or_default();
    let hwm = report
        .peak
        .kernel_hwm
        .filter(|_| report.peak.kernel_hwm_since_start)
        .unwrap_or_default();
    sampled.max(hwm)
}

/// Passes when the run's peak ([`peak_of`]) stayed at or below `limit`.
///
/// # Errors
/// An [`AssertionFailure`] with the peak, the limit, and the timeline summary.
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
/// masp_testkit::assert::assert_peak_below(&report, Bytes::from_gib(64)).unwrap();
/// assert!(masp_testkit::assert::assert_peak_below(&report, Bytes::new(1)).is_err());
/// # Ok::<(), masp_profiler::Error>(())
/// ```
pub fn assert_peak_below(report: &Report, limit: Bytes) -> Result<(), AssertionFailure> {
    let peak = peak_of(report);
    if peak <= limit {
        return Ok(());
    }
    Err(AssertionFailure {
        check: "peak below limit",
        message: format!(
            "peak RSS {peak} exceeds the {limit} limit by {}",
            peak.saturating_sub(limit)
        ),
        summary: timeline_summary(report),
    })
}

/// Passes when RSS at the end of the run is at most `tolerance` above RSS at its start.
///
/// Start the profiler after any one-time warm-up (the first session of a process initialises
/// ONNX Runtime's globals), or the warm-up counts as not coming back.
///
/// # Errors
/// An [`AssertionFailure`] with both figures and the timeline summary.
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
/// masp_testkit::assert::assert_returns_to_baseline(&report, Bytes::from_mib(8)).unwrap();
/// # Ok::<(), masp_profiler::Error>(())
/// ```
pub fn assert_returns_to_baseline(
    report: &Report,
    tolerance: Bytes,
) -> Result<(), AssertionFailure> {
    let (Some(start), Some(end)) = (report.rss_start, report.rss_end) else {
        return Err(AssertionFailure {
            check: "returns to baseline",
            message: "the report has no start or end RSS (platform without /proc?)".into(),
            summary: timeline_summary(report),
        });
    };
    let above = end.saturating_sub(start);
    if above <= tolerance {
        return Ok(());
    }
    Err(AssertionFailure {
        check: "returns to baseline",
        message: format!(
            "RSS ended at {end}, {above} above its {start} baseline (tolerance {tolerance})"
        ),
        summary: timeline_summary(report),
    })
}

/// Rows of the phase table before it is cut.
const MAX_PHASE_ROWS: usize = 24;

/// A summary of a run for failure messages: RSS start/end, peak against the budget, a phase
/// table (phases of the same kind and label folded into one row: count, highest peak, total
/// and largest change), the leak verdicts, and the first and last cycles.
///
/// # Examples
///
/// ```
/// let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
/// let text = masp_testkit::assert::timeline_summary(&report);
/// assert!(text.contains("peak") && text.contains("leak"));
/// # Ok::<(), masp_profiler::Error>(())
/// ```
#[must_use]
pub fn timeline_summary(report: &Report) -> String {
    let mut s = String::new();
    let opt = |b: Option<Bytes>| b.map_or_else(|| "n/a".to_owned(), |b| b.to_string());
    let _ = writeln!(
        s,
        "  rss      start {}, end {} over {:.1} s",
        opt(report.rss_start),
        opt(report.rss_end),
        report.duration_s
    );
    let peak = peak_of(report);
    let when = report.peak.sampled.map_or_else(String::new, |p| {
        format!(" (sampled {} at {:.1} s)", p.rss, p.t_s)
    });
    let budget = match (report.budget_limit, report.peak.percent_of_budget) {
        (Some(limit), Some(pct)) => format!(", {pct:.0}% of the {limit} budget"),
        (Some(limit), None) => format!(", budget {limit}"),
        _ => String::new(),
    };
    let _ = writeln!(s, "  peak     {peak}{when}{budget}");
    let _ = writeln!(s, "  leak     profiler: {}", report.leak.verdict);
    for m in &report.models {
        let _ = writeln!(
            s,
            "           {}: {} loads, peak {}, profiler: {}",
            m.model, m.n_loads, m.peak, m.leak.verdict
        );
    }
    // Fold phases by kind and label: 20 cycles are 80 phases, the same four repeated.
    struct Row {
        kind: PhaseKind,
        label: String,
        n: usize,
        peak: Bytes,
        total: i64,
        largest: i64,
    }
    let mut rows: Vec<Row> = Vec::new();
    for p in &report.phases {
        let d = p.delta.get();
        match rows
            .iter_mut()
            .find(|r| r.kind == p.kind && r.label == p.label)
        {
            Some(r) => {
                r.n += 1;
                r.peak = r.peak.max(p.peak);
                r.total = r.total.saturating_add(d);
                r.largest = if d.abs() > r.largest.abs() {
                    d
                } else {
                    r.largest
                };
            }
            None => rows.push(Row {
                kind: p.kind,
                label: p.label.clone(),
                n: 1,
                peak: p.peak,
                total: d,
                largest: d,
            }),
        }
    }
    let _ = writeln!(
        s,
        "  phases   {:<8} {:<32} {:>5} {:>12} {:>12} {:>12}",
        "kind", "label", "n", "peak", "total Δ", "largest Δ"
    );
    for r in rows.iter().take(MAX_PHASE_ROWS) {
        let _ = writeln!(
            s,
            "           {:<8} {:<32} {:>5} {:>12} {:>12} {:>12}",
            r.kind.to_string(),
            truncate(&r.label, 32),
            r.n,
            r.peak.to_string(),
            ByteDelta::new(r.total).to_string(),
            ByteDelta::new(r.largest).to_string()
        );
    }
    if rows.len() > MAX_PHASE_ROWS {
        let _ = writeln!(
            s,
            "           … {} more rows in report.json",
            rows.len() - MAX_PHASE_ROWS
        );
    }
    s.push_str(&cycle_table(&report.cycles.iter().collect::<Vec<_>>()));
    s
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The first and last cycles (baseline, loaded, after cleanup, residual), at most 10 rows.
fn cycle_table(cycles: &[&Cycle]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  cycles   {} in all; {:<20} {:>4} {:>12} {:>12} {:>12} {:>12}",
        cycles.len(),
        "model",
        "#",
        "baseline",
        "loaded",
        "after",
        "residual"
    );
    let show: Vec<&&Cycle> = if cycles.len() <= 10 {
        cycles.iter().collect()
    } else {
        cycles[..5]
            .iter()
            .chain(cycles[cycles.len() - 5..].iter())
            .collect()
    };
    for (i, c) in show.iter().enumerate() {
        if cycles.len() > 10 && i == 5 {
            let _ = writeln!(s, "           …");
        }
        let _ = writeln!(
            s,
            "           {:<20} {:>4} {:>12} {:>12} {:>12} {:>12}",
            truncate(&c.model, 20),
            c.index,
            c.baseline.to_string(),
            c.loaded.to_string(),
            c.after_cleanup.to_string(),
            c.residual.to_string()
        );
    }
    s
}

/// Panics unless [`assert::assert_no_leak`](crate::assert::assert_no_leak) passes; the panic
/// message names the leak and prints the evidence.
///
/// # Examples
///
/// ```should_panic
/// let report = masp_profiler::MemoryProfiler::start(Default::default()).unwrap().stop().report();
/// // No cycles at all: nothing to judge, so it fails.
/// masp_testkit::assert_no_leak!(report, masp_budget::Bytes::from_mib(1));
/// ```
#[macro_export]
macro_rules! assert_no_leak {
    ($evidence:expr, $tolerance:expr $(,)?) => {
        if let Err(failure) = $crate::assert::assert_no_leak(&$evidence, $tolerance) {
            panic!("{failure}");
        }
    };
}

/// Panics unless [`assert::assert_peak_below`](crate::assert::assert_peak_below) passes.
///
/// # Examples
///
/// ```
/// let report = masp_profiler::MemoryProfiler::start(Default::default()).unwrap().stop().report();
/// masp_testkit::assert_peak_below!(report, masp_budget::Bytes::from_gib(64));
/// ```
#[macro_export]
macro_rules! assert_peak_below {
    ($report:expr, $limit:expr $(,)?) => {
        if let Err(failure) = $crate::assert::assert_peak_below(&$report, $limit) {
            panic!("{failure}");
        }
    };
}

/// Panics unless [`assert::assert_returns_to_baseline`](crate::assert::assert_returns_to_baseline)
/// passes.
///
/// # Examples
///
/// ```
/// let report = masp_profiler::MemoryProfiler::start(Default::default()).unwrap().stop().report();
/// masp_testkit::assert_returns_to_baseline!(report, masp_budget::Bytes::from_mib(8));
/// ```
#[macro_export]
macro_rules! assert_returns_to_baseline {
    ($report:expr, $tolerance:expr $(,)?) => {
        if let Err(failure) = $crate::assert::assert_returns_to_baseline(&$report, $tolerance) {
            panic!("{failure}");
        }
    };
}
