//! The human-readable text form of a `Report`.

use std::fmt::{self, Write as _};

use crate::delta::fmt_rate;
use crate::report::{LeakVerdict, Phase, PhaseKind, Report};

/// Longer tables are cut here; report.json has every row.
const MAX_ROWS: usize = 200;

fn opt<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

fn pct(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "n/a".to_owned(), |f| format!("{:.0}%", 100.0 * f))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "masp memory report")?;
        writeln!(
            f,
            "  duration      {:.1} s ({} samples every {} ms{})",
            self.duration_s,
            self.n_samples,
            self.interval_ms,
            if self.samples_per_bucket > 1 {
                format!(
                    ", timeline at {} samples per point",
                    self.samples_per_bucket
                )
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "  rss           start {}, end {}",
            opt(self.rss_start),
            opt(self.rss_end)
        )?;
        let mut peak = match self.peak.sampled {
            Some(p) => format!("{} sampled at {:.1} s", p.rss, p.t_s),
            None => "n/a".to_owned(),
        };
        if let Some(hwm) = self.peak.kernel_hwm {
            let scope = if self.peak.kernel_hwm_since_start {
                ""
            } else {
                ", since process start"
            };
            write!(peak, "; kernel high-water mark {hwm}{scope}")?;
        }
        writeln!(f, "  peak          {peak}")?;
        if let Some(workers) = self.peak.workers {
            writeln!(
                f,
                "  processes     orchestrator peak {}, worker processes peak {} (the sampled \
                 RSS is their sum)",
                opt(self.peak.orchestrator),
                workers
            )?;
        }
        if let Some(limit) = self.budget_limit {
            let share = self
                .peak
                .percent_of_budget
                .map_or_else(String::new, |p| format!(" (peak is {p:.0}% of it)"));
            writeln!(f, "  budget        {limit}{share}")?;
        }
        writeln!(
            f,
            "  trend         {} overall, {} over the last {:.0} s: {}",
            opt(self.trend.overall_bytes_per_s.map(fmt_rate)),
            opt(self.trend.recent_bytes_per_s.map(fmt_rate)),
            self.trend.recent_window_s,
            self.trend.verdict
        )?;
        // The fitted figure adds information only when the verdict does not already state it.
        let fit = match (self.leak.verdict, self.leak.growth_per_cycle) {
            (LeakVerdict::NoLeak, Some(g)) => {
                format!(" (fit {g} per cycle, tolerance {})", self.leak.tolerance)
            }
            _ => String::new(),
        };
        writeln!(f, "  leak          {}{fit}", self.leak.verdict)?;
        writeln!(
            f,
            "  cleanup       {} of load growth returned on average over {} cycles",
            pct(self.cleanup.mean_effectiveness),
            self.cleanup.n_cycles
        )?;
        writeln!(
            f,
            "  sampler       {} of one core",
            self.sampler
                .overhead_pct
                .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.3}%"))
        )?;

        if !self.models.is_empty() {
            writeln!(f, "\nmodels")?;
            writeln!(
                f,
                "  {:<24} {:>5} {:>12} {:>11} {:>8}  leak",
                "model", "loads", "load growth", "peak", "cleanup"
            )?;
            for m in &self.models {
                writeln!(
                    f,
                    "  {:<24} {:>5} {:>12} {:>11} {:>8}  {}",
                    m.model,
                    m.n_loads,
                    opt(m.mean_load_growth),
                    m.peak,
                    pct(m.mean_effectiveness),
                    m.leak.verdict
                )?;
            }
        }

        writeln!(f, "\nphases")?;
        writeln!(
            f,
            "  {:>9} {:>9}  {:<7} {:<24} {:>11} {:>11} {:>11} {:>11}",
            "start s", "end s", "kind", "label", "rss start", "rss end", "delta", "peak"
        )?;
        // Idle gaps shorter than one sampling interval (mark right after mark) are noise here;
        // report.json keeps them.
        let min_idle_s = self.interval_ms / 1e3;
        let shown: Vec<&Phase> = self
            .phases
            .iter()
            .filter(|p| p.kind != PhaseKind::Idle || p.end_s - p.start_s >= min_idle_s)
            .collect();
        for p in shown.iter().take(MAX_ROWS) {
            let label = match (&p.model, p.kind) {
                (Some(model), PhaseKind::Task | PhaseKind::Idle) => {
                    format!("{} [{model}]", p.label)
                }
                _ => p.label.clone(),
            };
            writeln!(
                f,
                "  {:>9.2} {:>9.2}  {:<7} {:<24} {:>11} {:>11} {:>11} {:>11}",
                p.start_s,
                p.end_s,
                p.kind.to_string(),
                label,
                p.rss_start,
                p.rss_end,
                p.delta,
                p.peak
            )?;
        }
        let hidden = self.phases.len() - shown.len().min(MAX_ROWS);
        if hidden > 0 {
            writeln!(
                f,
                "  ({hidden} more phases, e.g. short idle gaps, in report.json)"
            )?;
        }

        if !self.cycles.is_empty() {
            writeln!(f, "\ncycles")?;
            writeln!(
                f,
                "  {:<24} {:>4} {:>11} {:>12} {:>11} {:>11} {:>8}",
                "model", "#", "baseline", "load growth", "after", "residual", "cleanup"
            )?;
            for c in self.cycles.iter().take(MAX_ROWS) {
                writeln!(
                    f,
                    "  {:<24} {:>4} {:>11} {:>12} {:>11} {:>11} {:>8}",
                    c.model,
                    c.index,
                    c.baseline,
                    c.load_growth,
                    c.after_cleanup,
                    c.residual,
                    pct(c.effectiveness)
                )?;
            }
            if self.cycles.len() > MAX_ROWS {
                writeln!(
                    f,
                    "  … {} more cycles in report.json",
                    self.cycles.len() - MAX_ROWS
                )?;
            }
        }
        Ok(())
    }
}
