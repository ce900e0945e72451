//! The SVG timeline: RSS over time, phases shaded and labelled, budget line, peak marked.
//!
//! Written by hand (a few hundred elements) rather than through a plotting crate: the picture
//! is simple and the output must be stable and dependency-free.

use std::fmt::Write as _;

use masp_budget::Bytes;

use crate::event::Event;
use crate::report::{PhaseKind, Report};

const WIDTH: f64 = 1100.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 90.0;
const BOTTOM: f64 = 80.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

const LOAD_COLOR: &str = "#4e79a7";
const TASK_COLOR: &str = "#59a14f";
const CLEANUP_COLOR: &str = "#f28e2b";
const RSS_COLOR: &str = "#1f3b73";
const BAND_COLOR: &str = "#9ecae1";
const BUDGET_COLOR: &str = "#d62728";

/// A budget more than this many times the highest memory drawn is noted, not drawn: on a
/// shared scale the RSS would be a flat line along the bottom.
const OFF_SCALE_RATIO: u64 = 4;
/// Room above the data's maximum when the axis is scaled to the data.
const OFF_SCALE_HEADROOM: f64 = 1.25;

/// Whether `budget` is too far above `data_max` to share the y-axis with the data.
fn budget_off_scale(budget: Option<Bytes>, data_max: Bytes) -> bool {
    budget.is_some_and(|b| b.get() / OFF_SCALE_RATIO > data_max.get())
}

/// Escapes text for XML (and HTML) content and attribute values; control characters, which
/// XML 1.0 does not allow, are dropped.
///
/// # Examples
///
/// ```
/// assert_eq!(masp_profiler::xml_escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
/// ```
pub fn xml_escape(text: &str) -> String {
    esc(text)
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\t' && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// Maps data to pixels.
struct Scale {
    t_max_s: f64,
    y_max: f64,
}

impl Scale {
    fn x(&self, t_s: f64) -> f64 {
        LEFT + PLOT_W * (t_s / self.t_max_s).clamp(0.0, 1.0)
    }

    fn y(&self, bytes: Bytes) -> f64 {
        TOP + PLOT_H * (1.0 - (bytes.get() as f64 / self.y_max).clamp(0.0, 1.0))
    }
}

/// A "nice" memory tick step giving at most ~6 ticks: 1, 2 or 5 × 10ⁿ of KiB, MiB or GiB.
fn memory_step(max: f64) -> u64 {
    let mut candidates = Vec::new();
    for unit in [1u64 << 10, 1 << 20, 1 << 30, 1 << 40] {
        for m in [1u64, 2, 5, 10, 20, 50, 100, 200, 500] {
            candidates.push(unit * m);
        }
    }
    candidates
        .into_iter()
        .find(|&step| max / step as f64 <= 6.0)
        .unwrap_or(1 << 50)
}

/// A "nice" time tick step giving at most ~10 ticks.
fn time_step(max_s: f64) -> f64 {
    const STEPS: [f64; 24] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
        600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0,
    ];
    STEPS
        .into_iter()
        .find(|&step| max_s / step <= 10.0)
        .unwrap_or(max_s / 10.0)
}

fn time_label(t_s: f64, step: f64) -> String {
    if step >= 3600.0 {
        format!("{} h", trim_float(t_s / 3600.0))
    } else if step >= 60.0 {
        format!("{} min", trim_float(t_s / 60.0))
    } else {
        format!("{} s", trim_float(t_s))
    }
}

/// `1.50` → `1.5`, `2.00` → `2`.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn phase_color(kind: PhaseKind) -> Option<&'static str> {
    match kind {
        PhaseKind::Load => Some(LOAD_COLOR),
        PhaseKind::Task => Some(TASK_COLOR),
        PhaseKind::Cleanup => Some(CLEANUP_COLOR),
        _ => None,
    }
}

// Here rather than in `report`, so that the analysis does not depend on its picture.
impl Report {
    /// The timeline as a standalone SVG document.
    ///
    /// # Examples
    ///
    /// ```
    /// # let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
    /// assert!(report.to_svg().starts_with("<svg"));
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn to_svg(&self) -> String {
        render(self)
    }
}

/// Renders the report's timeline as an SVG document.
fn render(report: &Report) -> String {
    let mut svg = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail; `let _` keeps the code free of unwraps.
    let _ = write_svg(&mut svg, report);
    svg
}

fn write_svg(svg: &mut String, r: &Report) -> std::fmt::Result {
    let data_max = r
        .timeline
        .iter()
        .map(|b| b.max)
        .chain(r.peak.sampled.map(|p| p.rss))
        .chain(r.marks.iter().map(|m| m.rss))
        .max()
        .unwrap_or(Bytes::from_mib(1))
        .max(Bytes::from_mib(1));
    let budget_off_scale = budget_off_scale(r.budget_limit, data_max);
    // Scale to the data when the budget would flatten it; otherwise show the budget too.
    let y_top = match (budget_off_scale, r.budget_limit) {
        (true, _) | (false, None) => data_max.get() as f64 * OFF_SCALE_HEADROOM,
        (false, Some(limit)) => data_max.max(limit).get() as f64 * 1.08,
    };
    let step = memory_step(y_top);
    let y_max = (y_top / step as f64).ceil() * step as f64;
    let t_max_s = if r.duration_s > 0.0 {
        r.duration_s
    } else {
        1.0
    };
    let s = Scale { t_max_s, y_max };

    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#)?;

    // Title: the two numbers a reader wants first.
    let peak = r
        .peak
        .sampled
        .map_or_else(|| "n/a".to_owned(), |p| p.rss.to_string());
    let budget = r
        .budget_limit
        .map_or_else(String::new, |b| format!(" · budget {b}"));
    writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">Memory (RSS) over time · peak {}{} · {}</text>"#,
        esc(&peak),
        esc(&budget),
        esc(&r.leak.verdict.to_string())
    )?;
    let hwm = r
        .peak
        .kernel_hwm
        .map_or_else(String::new, |h| format!(" · kernel high-water mark {h}"));
    writeln!(
        svg,
        r##"<text x="{LEFT}" y="44" fill="#555">{:.1} s, {} samples every {} ms{}</text>"##,
        r.duration_s,
        r.n_samples,
        r.interval_ms,
        esc(&hwm)
    )?;

    write_model_spans(svg, r, &s)?;

    // Phases: shaded bands with their names.
    writeln!(svg, r#"<g class="phases">"#)?;
    for p in &r.phases {
        let Some(color) = phase_color(p.kind) else {
            continue;
        };
        let (x0, x1) = (s.x(p.start_s), s.x(p.end_s));
        let w = (x1 - x0).max(1.0);
        // The model's name is on the span above the plot; bands name what differs.
        let label = match p.kind {
            PhaseKind::Task => p.label.clone(),
            PhaseKind::Cleanup => "unload".to_owned(),
            kind => kind.to_string(),
        };
        let full = match (p.kind, &p.model) {
            (PhaseKind::Task, Some(m)) => format!("task {} [{m}]", p.label),
            (kind, _) => format!("{kind} {}", p.label),
        };
        let tooltip = format!(
            "{full}: {:.2}–{:.2} s, {} → {} ({}), peak {}",
            p.start_s, p.end_s, p.rss_start, p.rss_end, p.delta, p.peak
        );
        writeln!(
            svg,
            r#"<rect class="phase {}" x="{x0:.1}" y="{TOP}" width="{w:.1}" height="{PLOT_H}" fill="{color}" fill-opacity="0.18"><title>{}</title></rect>"#,
            p.kind,
            esc(&tooltip)
        )?;
        // Labels where they fit: horizontal in wide bands, vertical in narrow ones.
        let max_chars = (w / 6.5) as usize;
        if max_chars >= 4 {
            let text: String = label.chars().take(max_chars).collect();
            writeln!(
                svg,
                r#"<text class="phase-label" x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
                x0 + 3.0,
                TOP + 14.0,
                esc(&text)
            )?;
        } else if w >= 10.0 {
            let text: String = label.chars().take((PLOT_H / 7.0) as usize).collect();
            let (lx, ly) = (x0 + w / 2.0 + 4.0, TOP + 22.0);
            writeln!(
                svg,
                r#"<text class="phase-label" x="{lx:.1}" y="{ly:.1}" fill="{color}" transform="rotate(90 {lx:.1} {ly:.1})">{}</text>"#,
                esc(&text)
            )?;
        }
    }
    writeln!(svg, "</g>")?;

    // Axes and grid.
    writeln!(svg, r##"<g class="axes" stroke="#ccc">"##)?;
    let mut tick = 0u64;
    while (tick as f64) <= y_max {
        let y = s.y(Bytes::new(tick));
        writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#,
            LEFT + PLOT_W
        )?;
        writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" stroke="none" fill="#333">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            Bytes::new(tick)
        )?;
        tick = tick.saturating_add(step);
        if step == 0 {
            break;
        }
    }
    let t_step = time_step(t_max_s);
    let mut i = 0u32;
    loop {
        let t = f64::from(i) * t_step;
        if t > t_max_s + 1e-9 {
            break;
        }
        let x = s.x(t);
        writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/>"#,
            TOP + PLOT_H
        )?;
        writeln!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" stroke="none" fill="#333">{}</text>"##,
            TOP + PLOT_H + 18.0,
            time_label(t, t_step)
        )?;
        i += 1;
    }
    writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#888"/>"##
    )?;
    writeln!(svg, "</g>")?;
    writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since start</text>"#,
        LEFT + PLOT_W / 2.0,
        TOP + PLOT_H + 40.0
    )?;
    writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">resident memory (RSS)</text>"#,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0
    )?;

    write_memory(svg, r, &s)?;

    // Budget line, or a note above the plot when the budget is far above everything drawn.
    if let Some(limit) = r.budget_limit.filter(|_| budget_off_scale) {
        writeln!(
            svg,
            r#"<g class="budget off-scale"><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{BUDGET_COLOR}">budget {limit} ↑ off scale<title>the budget is more than {OFF_SCALE_RATIO}× the peak: the axis is scaled to the data</title></text></g>"#,
            LEFT + PLOT_W,
            TOP - 32.0
        )?;
    } else if let Some(limit) = r.budget_limit {
        let y = s.y(limit);
        writeln!(
            svg,
            r#"<g class="budget"><line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{BUDGET_COLOR}" stroke-width="1.5" stroke-dasharray="8 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{BUDGET_COLOR}">budget {limit}</text></g>"#,
            LEFT + PLOT_W,
            LEFT + PLOT_W - 4.0,
            y - 5.0
        )?;
    }

    // Peak.
    if let Some(p) = r.peak.sampled {
        let (x, y) = (s.x(p.t_s), s.y(p.rss));
        let anchor = if x > LEFT + PLOT_W * 0.8 {
            "end"
        } else {
            "start"
        };
        let dx = if anchor == "end" { -8.0 } else { 8.0 };
        writeln!(
            svg,
            r#"<g class="peak"><circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{BUDGET_COLOR}"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-weight="bold">peak {} at {:.1} s</text></g>"#,
            x + dx,
            (y - 8.0).max(TOP + 28.0),
            p.rss,
            p.t_s
        )?;
    }

    // Notes: small markers on the time axis, text on hover.
    for m in &r.marks {
        if let Event::Note { text } = &m.event {
            let x = s.x(m.t_s);
            let y = TOP + PLOT_H;
            writeln!(
                svg,
                r##"<path class="note" d="M{x:.1} {y:.1} l-4 8 h8 z" fill="#555"><title>{:.2} s: {}</title></path>"##,
                m.t_s,
                esc(text)
            )?;
        }
    }

    write_legend(svg)?;
    writeln!(svg, "</svg>")
}

/// One labelled span per stretch of time a model was loaded, above the plot.
fn write_model_spans(svg: &mut String, r: &Report, s: &Scale) -> std::fmt::Result {
    writeln!(svg, r#"<g class="models">"#)?;
    let mut i = 0;
    while i < r.phases.len() {
        let Some(model) = r.phases[i].model.as_deref() else {
            i += 1;
            continue;
        };
        let first = &r.phases[i];
        let mut peak = first.peak;
        let mut end = first.end_s;
        // A span ends where the model does: at its cleanup phase, or when another starts.
        while i < r.phases.len() && r.phases[i].model.as_deref() == Some(model) {
            peak = peak.max(r.phases[i].peak);
            end = r.phases[i].end_s;
            i += 1;
            if r.phases[i - 1].kind == PhaseKind::Cleanup {
                break;
            }
        }
        let (x0, x1) = (s.x(first.start_s), s.x(end));
        let w = (x1 - x0).max(1.0);
        let text: String = model.chars().take((w / 7.0) as usize).collect();
        writeln!(
            svg,
            r##"<g class="model-span"><rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="20" fill="#eef1f6" stroke="#8a9bb8"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#1f3b73">{}</text><title>{}: {:.2}–{:.2} s, peak {peak}</title></g>"##,
            TOP - 26.0,
            x0 + w / 2.0,
            TOP - 11.5,
            esc(&text),
            esc(model),
            first.start_s,
            end
        )?;
    }
    writeln!(svg, "</g>")
}

/// The RSS line (last value per pixel column) over a min–max band.
fn write_memory(svg: &mut String, r: &Report, s: &Scale) -> std::fmt::Result {
    // One point per pixel column at most: a 4096-bucket timeline would only add file size.
    struct Column {
        x: f64,
        min: Bytes,
        max: Bytes,
        last: Bytes,
    }
    let mut columns: Vec<Column> = Vec::new();
    for b in &r.timeline {
        let x = s.x(b.t_end_s).round();
        match columns.last_mut() {
            Some(c) if (c.x - x).abs() < 0.5 => {
                c.min = c.min.min(b.min);
                c.max = c.max.max(b.max);
                c.last = b.last;
            }
            _ => columns.push(Column {
                x,
                min: b.min,
                max: b.max,
                last: b.last,
            }),
        }
    }
    if columns.is_empty() {
        return Ok(());
    }
    let mut band = String::new();
    for c in &columns {
        write!(band, "{:.1},{:.1} ", c.x, s.y(c.max))?;
    }
    for c in columns.iter().rev() {
        write!(band, "{:.1},{:.1} ", c.x, s.y(c.min))?;
    }
    writeln!(
        svg,
        r#"<polygon class="rss-range" points="{}" fill="{BAND_COLOR}" fill-opacity="0.6" stroke="none"/>"#,
        band.trim_end()
    )?;
    let mut line = String::new();
    for c in &columns {
        write!(line, "{:.1},{:.1} ", c.x, s.y(c.last))?;
    }
    writeln!(
        svg,
        r#"<polyline class="rss" points="{}" fill="none" stroke="{RSS_COLOR}" stroke-width="1.5"/>"#,
        line.trim_end()
    )
}

fn write_legend(svg: &mut String) -> std::fmt::Result {
    let y = HEIGHT - 18.0;
    let mut x = LEFT;
    writeln!(svg, r#"<g class="legend">"#)?;
    writeln!(
        svg,
        r#"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{RSS_COLOR}" stroke-width="2"/><text x="{:.1}" y="{y}">RSS</text>"#,
        y - 4.0,
        x + 20.0,
        y - 4.0,
        x + 24.0
    )?;
    x += 70.0;
    writeln!(
        svg,
        r#"<rect x="{x}" y="{:.1}" width="20" height="10" fill="{BAND_COLOR}"/><text x="{:.1}" y="{y}">min–max between samples</text>"#,
        y - 9.0,
        x + 24.0
    )?;
    x += 220.0;
    for (name, color) in [
        ("load", LOAD_COLOR),
        ("task", TASK_COLOR),
        ("cleanup", CLEANUP_COLOR),
    ] {
        writeln!(
            svg,
            r#"<rect x="{x}" y="{:.1}" width="20" height="10" fill="{color}" fill-opacity="0.35"/><text x="{:.1}" y="{y}">{name}</text>"#,
            y - 9.0,
            x + 24.0
        )?;
        x += 85.0;
    }
    writeln!(
        svg,
        r#"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{BUDGET_COLOR}" stroke-width="1.5" stroke-dasharray="8 4"/><text x="{:.1}" y="{y}">budget</text>"#,
        y - 4.0,
        x + 20.0,
        y - 4.0,
        x + 24.0
    )?;
    writeln!(svg, "</g>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }

    /// Load a 600 MiB model, run a task, unload it; drawn against `budget`.
    fn one_model_report(budget: Bytes) -> Report {
        use crate::event::Mark;
        let marks = [
            (0.0, 100, Event::load_start("m")),
            (1.0, 600, Event::load_end("m")),
            (2.0, 620, Event::task_start("job")),
            (5.0, 640, Event::task_end("job")),
            (6.0, 640, Event::unload("m")),
            (
                7.0,
                100,
                Event::Cleanup {
                    returned: Bytes::from_mib(540),
                },
            ),
        ]
        .into_iter()
        .map(|(t_s, mib, event)| Mark {
            t_s,
            rss: Bytes::from_mib(mib),
            peak_since_previous: Bytes::from_mib(mib),
            event,
        })
        .collect();
        crate::profile::Profile {
            interval_ms: 10.0,
            duration_s: 8.0,
            budget_limit: Some(budget),
            trend_window_s: 60.0,
            trend_tolerance: Bytes::from_mib(4),
            leak_tolerance: Bytes::from_mib(1),
            rss_start: Some(Bytes::from_mib(100)),
            rss_end: Some(Bytes::from_mib(100)),
            timeline: Vec::new(),
            samples_per_bucket: 1,
            n_samples: 0,
            marks,
            tail_peak: Bytes::from_mib(100),
            sampled_peak: None,
            kernel_peak: None,
            kernel_peak_since_start: false,
            sampler_cpu_s: None,
            own_peak: None,
            workers_peak: None,
        }
        .report()
    }

    /// The y-axis tick labels, bottom to top.
    fn y_ticks(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed");
        doc.descendants()
            .filter(|n| {
                n.attribute("text-anchor") == Some("end") && n.attribute("fill") == Some("#333")
            })
            .filter_map(|n| n.text().map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_far_budget_is_noted_off_scale_and_the_axis_fits_the_data() {
        let svg = render(&one_model_report(Bytes::from_gib(16)));
        assert!(svg.contains("budget 16 GiB ↑ off scale"), "{svg}");
        assert!(svg.contains(r#"class="budget off-scale""#));
        assert!(
            !svg.contains(r#"<g class="budget"><line"#),
            "no budget line in the plot"
        );
        // 640 MiB peak × 1.25 = 800 MiB: ticks end at 800 MiB, not at 16 GiB.
        let ticks = y_ticks(&svg);
        assert_eq!(
            ticks.last().map(String::as_str),
            Some("800 MiB"),
            "{ticks:?}"
        );
    }

    #[test]
    fn a_near_budget_is_drawn_as_a_line_on_the_same_axis() {
        let svg = render(&one_model_report(Bytes::from_gib(1)));
        assert!(!svg.contains("off scale"));
        assert!(svg.contains(">budget 1 GiB</text>"), "{svg}");
        let ticks = y_ticks(&svg);
        // Axis up to 1.08 × the budget: 1.2 GiB.
        assert_eq!(
            ticks.last().map(String::as_str),
            Some("1.2 GiB"),
            "{ticks:?}"
        );
    }

    #[test]
    fn off_scale_means_more_than_four_times_the_peak() {
        let peak = Bytes::from_mib(100);
        assert!(!budget_off_scale(None, peak));
        assert!(!budget_off_scale(Some(Bytes::from_mib(400)), peak));
        assert!(budget_off_scale(Some(Bytes::from_mib(404)), peak));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(memory_step(5.0 * (1u64 << 30) as f64), 1 << 30);
        assert_eq!(memory_step(300.0 * (1u64 << 20) as f64), 50 << 20);
        assert_eq!(memory_step(301.0 * (1u64 << 20) as f64), 100 << 20);
        assert_eq!(time_step(25.0), 5.0);
        assert_eq!(time_label(7200.0, 3600.0), "2 h");
        assert_eq!(time_label(90.0, 30.0), "90 s");
        assert_eq!(time_label(2.5, 0.5), "2.5 s");
    }
}
