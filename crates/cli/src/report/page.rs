//! The HTML of `masp report`'s page, a section at a time, from the profiler's `report.json`
//! and the command's `run.json`.

use std::fmt::Write as _;
use std::path::Path;

use masp_budget::Bytes;
use masp_profiler::Report;
use serde_json::Value;

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

/// The whole page: the sections in order.
pub fn page(dir: &Path, report: &Report, run: &Value) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>masp report — {}</title><style>{STYLE}</style></head><body>",
        esc(&dir.display().to_string())
    );
    let _ = write!(h, "<h1>masp memory report</h1>");

    summary(&mut h, report, run);
    timeline(&mut h, report);
    models(&mut h, report, run);
    failures(&mut h, run);
    phases(&mut h, report, dir);
    h
}

/// The run at a glance: duration, budget, peak, trend, leak verdict, cleanup, failures.
fn summary(h: &mut String, report: &Report, run: &Value) {
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
}

/// The memory timeline (the profiler's SVG).
fn timeline(h: &mut String, report: &Report) {
    let _ = write!(
        h,
        "<section id=\"timeline\"><h2>Memory over time</h2>\
         <p class=\"note\">RSS (worker processes included), the budget line, phases per model \
         and cleanup points.</p>{}</section>",
        report.to_svg()
    );
}

/// A row per model: the profiler's view joined with the orchestrator's statistics.
fn models(h: &mut String, report: &Report, run: &Value) {
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
}

/// Every failed task and its reason.
fn failures(h: &mut String, run: &Value) {
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
}

/// The 40 longest phases, longest first, and the page's footer.
fn phases(h: &mut String, report: &Report, dir: &Path) {
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
}
