//! `masp embed`: one L2-normalised speaker embedding per speech segment (or per window over the
//! speech), as JSON or `.npy` — VAD batch, then embedding batch, as `masp diarize` runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use masp_models::embedder::EMBEDDING_DIM;
use masp_models::npy::NpyWriter;
use masp_orchestrator::task::RangeEmbedding;
use masp_run::diarize;

use crate::Outcome;
use crate::context::{Common, Session};
use crate::diarize::{Job, RunDir, StageArgs, StageKeys, embed_stage, vad_stage, write_atomically};

/// Output formats of `masp embed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedFormat {
    /// JSON: per file its path and `ranges` (`start_s`, `end_s`, 256-value `embedding`); to
    /// stdout as one array, or `<out>/<stem>.embeddings.json` with `--out`.
    Json,
    /// `<out>/<stem>.embeddings.npy` (float32, `[n_ranges, 256]`) and `<out>/<stem>.ranges.json`
    /// (the rows' `[start_s, end_s]`). Needs `--out`.
    Npy,
}

/// Flags of `masp embed`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  masp embed talk.wav > talk.embeddings.json\n  \
masp embed --per-window --format npy --out embeddings/ *.wav\n\n\
Exit status: 0 when every file succeeded, 2 when any file failed (each failure is one line on \
stderr and the other files are still processed), 1 for usage errors."
)]
pub struct EmbedArgs {
    /// One embedding per window over the speech (`--window-s`, `--hop-s`) instead of one per
    /// speech segment.
    #[arg(long)]
    per_window: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EmbedFormat::Json)]
    format: EmbedFormat,
    /// Write one file per input into DIR (required for npy; JSON goes to stdout without it).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    stages: StageArgs,
    /// Where intermediate results (segments, embeddings) go; reused on the next run
    /// [default: masp-run/embed, and masp-run/embed/shard-K-of-N for a shard].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    /// Audio files (wav, flac, mp3, ogg/vorbis).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn ranges_json(job: &Job, embeddings: &[RangeEmbedding]) -> serde_json::Value {
    serde_json::json!({ "path": job.path, "ranges": embeddings })
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<Outcome> {
    if args.format == EmbedFormat::Npy && args.out.is_none() {
        anyhow::bail!("--format npy writes files: give a directory with --out");
    }
    let windows = args.stages.windows();
    windows.validate()?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    let started = Instant::now();
    let shard = args.common.shard.resolve()?;
    let run_dir = crate::context::run_dir_for(args.run_dir.as_deref(), "masp-run/embed", shard);
    let mut run = RunDir::open(&run_dir)?;
    let mut session = Session::start(&args.common)?;
    let ranges = if args.per_window {
        serde_json::json!({"speech_windows": {"window_s": windows.window_s, "hop_s": windows.hop_s}})
    } else {
        serde_json::json!("segments")
    };
    let keys = StageKeys::new(&session, &args.stages, ranges)?;
    let (shard_run, mut jobs) =
        crate::diarize::shard_jobs("embed", &run_dir, &keys, shard, &args.files)?;
    vad_stage(
        &mut session,
        &mut jobs,
        &mut run,
        &args.stages.vad_model,
        &keys.vad,
    )?;

    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let to_stdout = args.out.is_none();
    if to_stdout {
        writeln!(stdout, "[")?;
    }
    let mut n_written = 0usize;
    let per_window = args.per_window;
    let windows_of = |segments: &[(f64, f64)]| -> anyhow::Result<Vec<(f64, f64)>> {
        if per_window {
            Ok(diarize::speech_windows(segments, &windows)?)
        } else {
            Ok(segments.to_vec())
        }
    };
    let mut on_result = |job: &Job, embeddings: Vec<RangeEmbedding>| -> anyhow::Result<()> {
        match (&args.out, args.format) {
            (None, _) => {
                let sep = if n_written == 0 { "" } else { ",\n" };
                let text = serde_json::to_string_pretty(&ranges_json(job, &embeddings))?;
                write!(stdout, "{sep}{text}").context("writing to stdout")?;
                stdout.flush().context("writing to stdout")?;
            }
            (Some(out), EmbedFormat::Json) => {
                let path = out.join(format!("{}.embeddings.json", stem(&job.path)));
                write_atomically(
                    &path,
                    &serde_json::to_vec_pretty(&ranges_json(job, &embeddings))?,
                )?;
            }
            (Some(out), EmbedFormat::Npy) => {
                // No speech: no .npy; an empty ranges file says so.
                let npy = if embeddings.is_empty() {
                    None
                } else {
                    Some(write_npy(out, &job.path, &embeddings)?)
                };
                let ranges_path = out.join(format!("{}.ranges.json", stem(&job.path)));
                let ranges: Vec<(f64, f64)> =
                    embeddings.iter().map(|e| (e.start_s, e.end_s)).collect();
                let doc = serde_json::json!({"path": job.path, "npy": npy, "ranges": ranges});
                write_atomically(&ranges_path, &serde_json::to_vec_pretty(&doc)?)?;
            }
        }
        n_written += 1;
        Ok(())
    };
    embed_stage(
        &mut session,
        &mut jobs,
        &mut run,
        &args.stages.embed_model,
        &keys.embed,
        &windows_of,
        &mut on_result,
    )?;
    run.report_resumed("embed");
    if to_stdout {
        writeln!(stdout, "{}]", if n_written == 0 { "" } else { "\n" })?;
    }
    drop(stdout);
    let n_failed = jobs.iter().filter(|j| j.failed).count();
    if let Some(shard_run) = shard_run {
        shard_run.finish(&crate::diarize::failed_paths(&jobs))?;
    }
    let peak = session.peak_text();
    let report = session.finish()?;
    if args.common.stats {
        eprintln!(
            "masp embed: {} file(s) ok, {n_failed} failed in {:.2} s; {peak}",
            jobs.len() - n_failed,
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(dir) = report {
        eprintln!("masp: report in {}", dir.display());
    }
    Ok(Outcome::from_failures(n_failed))
}

/// `<out>/<stem>.embeddings.npy`: float32 `[n_ranges, 256]`, written under a temporary name and
/// renamed when complete.
fn write_npy(out: &Path, input: &Path, embeddings: &[RangeEmbedding]) -> anyhow::Result<PathBuf> {
    let path = out.join(format!("{}.embeddings.npy", stem(input)));
    let io = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", path.display());
    let mut writer = NpyWriter::create(&path, &[EMBEDDING_DIM]).map_err(io)?;
    for e in embeddings {
        writer.push_row(&e.embedding).map_err(io)?;
    }
    writer.finish().map_err(io)?;
    Ok(path)
}

/// The name of `path`'s results.
fn stem(path: &Path) -> String {
    masp_run::name::result_name(path)
}
