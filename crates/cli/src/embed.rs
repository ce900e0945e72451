//! `masp embed`: one L2-normalised speaker embedding per speech segment (or per window over the
//! speech), as JSON or `.npy` — `masp-run`'s VAD and embedding stages, as `masp diarize` runs
//! them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use masp_orchestrator::task::RangeEmbedding;
use masp_run::format::embeddings::{self, EmbeddingFormat};
use masp_run::job::{Job, failed_inputs};
use masp_run::stages::{self, Ranges, StageKeys};

use crate::Outcome;
use crate::context::Session;
use crate::diarize::{StageArgs, open_run_dir, report_run_dir, shard_jobs};
use crate::flags::Common;
use crate::progress::Shown;

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
    #[arg(long, value_enum, default_value_t = EmbeddingFormat::Json)]
    format: EmbeddingFormat,
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

pub fn run(args: &EmbedArgs) -> anyhow::Result<Outcome> {
    if args.format == EmbeddingFormat::Npy && args.out.is_none() {
        anyhow::bail!("--format npy writes files: give a directory with --out");
    }
    let stages = args.stages.stages()?;
    // Settings (budget, threads…) are checked before the first directory is made.
    let settings = crate::config::Settings::resolve(&args.common)?;
    if let Some(out) = &args.out {
        masp_run::create_output_dir(out)?;
    }
    let started = Instant::now();
    let shard = args.common.shard.resolve()?;
    let run_dir = crate::flags::run_dir_for(args.run_dir.as_deref(), "masp-run/embed", shard);
    let mut run = open_run_dir(&run_dir)?;
    let mut session = Session::start_with(&args.common, settings)?;
    let ranges = if args.per_window {
        Ranges::Windows
    } else {
        Ranges::Segments
    };
    let keys = StageKeys::new(session.orchestrator.registry(), &stages, ranges);
    let (shard_run, mut jobs) = shard_jobs("embed", &run_dir, &keys, shard, &args.files)?;
    let mut shown = Shown::new(&session.progress);
    stages::vad_stage(
        &mut session.orchestrator,
        &mut jobs,
        &mut run,
        &stages.vad_model,
        &keys.vad,
        &mut shown,
    )
    .context("the VAD batch")?;

    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let to_stdout = args.out.is_none();
    if to_stdout {
        writeln!(stdout, "[")?;
    }
    let mut n_written = 0usize;
    let mut on_result = |job: &Job, ranges: Vec<RangeEmbedding>| -> masp_run::Result<()> {
        match &args.out {
            None => {
                let sep = if n_written == 0 { "" } else { ",\n" };
                let doc = embeddings::ranges_json(&job.path, &ranges);
                let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
                write!(stdout, "{sep}{text}")
                    .and_then(|()| stdout.flush())
                    .map_err(|e| masp_run::Error::io("stdout", &e))?;
            }
            Some(out) => {
                embeddings::write(out, &job.path, &ranges, args.format)?;
            }
        }
        n_written += 1;
        Ok(())
    };
    stages::embed_stage(
        &mut session.orchestrator,
        &mut jobs,
        &mut run,
        &stages,
        ranges,
        &keys.embed,
        &mut on_result,
        &mut shown,
    )
    .context("the embedding batch")?;
    report_run_dir("embed", &run);
    if to_stdout {
        writeln!(stdout, "{}]", if n_written == 0 { "" } else { "\n" })?;
    }
    drop(stdout);
    let n_failed = jobs.iter().filter(|j| j.failed).count();
    if let Some(shard_run) = shard_run {
        shard_run.finish(&failed_inputs(&jobs))?;
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
