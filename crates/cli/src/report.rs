//! `masp report DIR`: one self-contained HTML page from what `--report DIR` wrote — the memory
//! timeline (SVG), a table per model, failures, and a summary. No scripts, no external files:
//! it opens anywhere, including a browser without network.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use masp_profiler::Report;
use serde_json::Value;

use crate::Outcome;

mod page;

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

    Ok(page::page(dir, &report, &run))
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
