//! `masp report DIR`: one self-contained HTML page from what `--report DIR` wrote — the memory
//! timeline (SVG), a table per model, failures, and a summary. No scripts, no external files:
//! it opens anywhere, including a browser without network.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use masp_budget::Bytes;
use masp_profiler::Report;
use serde_json::Value;

use crate::Outcome;

/// Flags of `masp report`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  masp diarize --report report/ *.wav > out.rttm\n  \
masp report report/            # writes report/report.html"
)]
pub struct ReportArgs {
    /// A report directory written by `--report DIR` (report.json, run.json).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where the page goes [default: DIR/report.html].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Text safe inside HTML.
fn esc(text: &str) -> String {
    masp_profiler::xml_escape(text)
}

/// A byte count from run.json as a human size.
fn size(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "—".to_owned(), |b| Bytes::new(b).to_string())
}

fn opt_size(b: Option<Bytes>) -> String {
    b.map_or_else(|| "—".to_owned(), |b| b.to_string())
}

fn rate(bytes_per_s: Option<f64>) -> String {
    match bytes_per_s {
        Some(r) if r.abs() >= (1 << 20) as f64 => format!("{:+.2} MiB/s", r / (1 << 20) as f64),
        Some(r) => format!("{:+.1} KiB/s", r / 1024.0),
        None => "—".to_owned(),
    }
}

/// Green for no leak, red for a suspected one, grey when there is too little to judge.
fn verdict_class(verdict: &masp_profiler::LeakVerdict) -> &'static str {
    match verdict {
        masp_profiler::LeakVerdict::NoLeak => "ok",
        masp_profiler::LeakVerdict::Suspected { .. } => "bad",
        _ => "note",
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;\
color:#222;padding:0 1em}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px \
solid #ddd}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.3em \
.6em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.ok{color:#176f2c}.bad{color:#b00020}.note{color:#666}svg{max-width:100%;height:auto}";

/// Largest `report.json` or `run.json` read: 256 MiB. The profiler's timeline is bounded
/// (downsampled) whatever the run's length, so a real report is a few MiB; anything larger is
/// not one, and is refused instead of read whole.
const MAX_REPORT_BYTES: u64 = 256 << 20;

/// The text of a report file, opened as every file from outside is (a FIFO or a device is
/// refused at once, not waited on).
fn read_report_file(path: &Path) -> anyhow::Result<String> {
    let bytes = masp_model_registry::file::read_regular(
        path,
        masp_model_registry::file::Links::Follow,
        MAX_REPORT_BYTES,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
}

/// The page for the report in `dir`.
///
/// # Errors
/// `report.json` missing or unreadable.
pub fn render(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("report.json");
    if path.symlink_metadata().is_err() {
        anyhow::bail!(
            "{} has no report.json: write one with --report {} first",
            dir.display(),
            dir.display()
        );
    }
    let text = read_report_file(&path)?;
    let report: Report =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    // run.json is written by the commands, not the profiler; a profiler-only report has none.
    let run: Value = read_report_file(&dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>masp report — {}</title><style>{STYLE}</style></head><body>",
        esc(&dir.display().to_string())
    );
    let _ = write!(h, "<h1>masp memory report</h1>");

    // Summary.
    let peak = report
        .peak
        .sampled
        .map(|p| p.rss)
        .max(report.peak.kernel_hwm);
    let leak_class = verdict_class(&report.leak.verdict);
    let n_failures = run["failures"].as_array().map_or(0, Vec::len);
    let _ = write!(
        h,
        "<section id=\"summary\"><h2>Summary</h2><table>\
         <tr><th>run</th><td>{:.1} s, {} samples every {:.0} ms</td></tr>\
         <tr><th>budget</th><td>{}</td></tr>\
         <tr><th>peak RSS</th><td>{}{}</td></tr>",
        report.duration_s,
        report.n_samples,
        report.interval_ms,
        esc(run["budget"]
            .as_str()
            .unwrap_or(&opt_size(report.budget_limit))),
        opt_size(peak),
        report
            .peak
            .percent_of_budget
            .map_or_else(String::new, |p| format!(" ({p:.0}% of the budget)")),
    );
    if let Some(workers) = report.peak.workers {
        let _ = write!(
            h,
            "<tr><th>processes</th><td>orchestrator peak {}, worker processes peak {}</td></tr>",
            opt_size(report.peak.orchestrator),
            workers
        );
    }
    let _ = write!(
        h,
        "<tr><th>RSS start → end</th><td>{} → {}</td></tr>\
         <tr><th>trend</th><td>{} overall, {} over the last {:.0} s: {}</td></tr>\
         <tr><th>leak verdict</th><td class=\"{leak_class}\">{}{}</td></tr>\
         <tr><th>cleanup effectiveness</th><td>{}</td></tr>\
         <tr><th>failures</th><td class=\"{}\">{n_failures}</td></tr></table></section>",
        opt_size(report.rss_start),
        opt_size(report.rss_end),
        rate(report.trend.overall_bytes_per_s),
        rate(report.trend.recent_bytes_per_s),
        report.trend.recent_window_s,
        esc(&report.trend.verdict.to_string()),
        esc(&report.leak.verdict.to_string()),
        report
            .leak
            .growth_per_cycle
            .map_or_else(String::new, |g| format!(
                " ({g} per cycle over {} cycles)",
                report.leak.n_cycles
            )),
        report
            .cleanup
            .mean_effectiveness
            .map_or_else(|| "—".to_owned(), |e| format!("{:.0}%", e * 100.0)),
        if n_failures == 0 { "ok" } else { "bad" },
    );

    // Timeline.
    let _ = write!(
        h,
        "<section id=\"timeline\"><h2>Memory over time</h2>\
         <p class=\"note\">RSS (worker processes included), the budget line, phases per model \
         and cleanup points.</p>{}</section>",
        report.to_svg()
    );

    // Models: the profiler's view joined with the orchestrator's statistics.
    let _ = write!(
        h,
        "<section id=\"models\"><h2>Models</h2><table><tr><th>model</th><th>loads</th>\
         <th>estimated peak</th><th>measured peak</th><th>resident</th><th>mean load time</th>\
         <th>tasks ok / failed</th><th>freed at unload</th><th>cleanup</th><th>leak verdict</th>\
         </tr>"
    );
    let stats = run["models"].as_object();
    for m in &report.models {
        let s = stats.and_then(|s| s.get(&m.model)).unwrap_or(&Value::Null);
        let loads = s["loads"].as_u64().unwrap_or(m.n_loads as u64);
        let estimated = match &s["estimated_peak"] {
            Value::Array(pair) if pair.len() == 2 => format!(
                "{} <span class=\"note\">({})</span>",
                size(&pair[0]),
                esc(pair[1].as_str().unwrap_or(""))
            ),
            _ => "—".to_owned(),
        };
        let load_ms = s["load_ms_total"]
            .as_f64()
            .filter(|_| loads > 0)
            .map_or_else(|| "—".to_owned(), |t| format!("{:.0} ms", t / loads as f64));
        let freed = s["freed_total"]
            .as_u64()
            .unwrap_or(0)
            .saturating_add(s["worker_returned_total"].as_u64().unwrap_or(0));
        let verdict = m.leak.verdict.to_string();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{loads}</td><td>{estimated}</td><td>{}</td><td>{}</td>\
             <td>{load_ms}</td><td>{} / {}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&m.model),
            size(&s["measured_peak_max"]),
            size(&s["resident"]),
            s["tasks_done"].as_u64().unwrap_or(0),
            s["tasks_failed"].as_u64().unwrap_or(0),
            Bytes::new(freed),
            m.mean_effectiveness
                .map_or_else(|| "—".to_owned(), |e| format!("{:.0}%", e * 100.0)),
            verdict_class(&m.leak.verdict),
            esc(&verdict),
        );
    }
    let _ = write!(h, "</table></section>");

    // Failures.
    let _ = write!(h, "<section id=\"failures\"><h2>Failures</h2>");
    match run["failures"].as_array() {
        Some(failures) if !failures.is_empty() => {
            let _ = write!(
                h,
                "<table><tr><th>task</th><th>model</th><th>reason</th></tr>"
            );
            for f in failures {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                    esc(f["task"].as_str().unwrap_or("")),
                    esc(f["model"].as_str().unwrap_or("")),
                    esc(f["reason"].as_str().unwrap_or(""))
                );
            }
            let _ = write!(h, "</table>");
        }
        _ => {
            let _ = write!(h, "<p class=\"ok\">None.</p>");
        }
    }
    let _ = write!(h, "</section>");

    // Phases, longest first (a long run has many; the page shows the 40 longest).
    let mut phases: Vec<_> = report.phases.iter().collect();
    phases.sort_by(|a, b| {
        (b.end_s - b.start_s)
            .partial_cmp(&(a.end_s - a.start_s))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let _ = write!(
        h,
        "<section id=\"phases\"><h2>Longest phases</h2><table><tr><th>phase</th>\
         <th>start s</th><th>end s</th><th>RSS start → end</th><th>peak</th></tr>"
    );
    for p in phases.iter().take(40) {
        let _ = write!(
            h,
            "<tr><td>{} {}</td><td>{:.2}</td><td>{:.2}</td><td>{} → {}</td><td>{}</td></tr>",
            esc(&format!("{:?}", p.kind).to_lowercase()),
            esc(&p.label),
            p.start_s,
            p.end_s,
            p.rss_start,
            p.rss_end,
            p.peak
        );
    }
    let _ = write!(
        h,
        "</table></section><p class=\"note\">Written by masp {} from {}.</p></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&dir.display().to_string())
    );
    Ok(h)
}

/// `masp report DIR`.
pub fn run(args: &ReportArgs) -> anyhow::Result<Outcome> {
    let html = render(&args.dir)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("report.html"));
    masp_run::journal::write_atomic(&out, html.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("masp report: {}", out.display());
    Ok(Outcome::AllSucceeded)
}
