//! `masp run` and `masp plan`: flags, then `masp-run`'s pipelines (the file format is
//! documented there, in `masp_run::pipeline`).

use std::path::PathBuf;

use clap::Args;
use masp_run::pipeline::{self, Pipeline, RunOptions};

use crate::Outcome;
use crate::context::Session;
use crate::flags::Common;
use crate::progress::Shown;

/// Flags of `masp run` and `masp plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  masp run --pipeline pipeline.toml --out results/ *.wav\n  \
masp plan --pipeline pipeline.toml --budget 2GiB *.wav"
)]
pub struct PipelineArgs {
    /// The pipeline file (TOML, `[[stage]]` tables in order).
    #[arg(long, value_name = "FILE")]
    pipeline: PathBuf,
    /// The run directory: results (one directory per stage) and the journal of finished tasks.
    /// Running the same command again resumes: finished tasks whose input and configuration are
    /// unchanged are skipped.
    /// [default: masp-out, and masp-out/shard-K-of-N for a shard]
    #[arg(long, alias = "run-dir", value_name = "DIR")]
    out: Option<PathBuf>,
    /// Redo every task, even those the journal records as finished.
    #[arg(long)]
    no_resume: bool,
    #[command(flatten)]
    common: Common,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// The pipeline, read once, and the settings of its run: the pipeline file's `isolation` sits
/// above masp.toml and below the environment and flags.
fn start(args: &PipelineArgs) -> anyhow::Result<(Pipeline, Session)> {
    let pipeline = Pipeline::read(&args.pipeline)?;
    let settings = crate::config::Settings::resolve_for_pipeline(
        &args.common,
        pipeline.isolation(),
        &args.pipeline,
    )?;
    Ok((pipeline, Session::start_with(&args.common, settings)?))
}

pub fn plan(args: &PipelineArgs) -> anyhow::Result<Outcome> {
    let (pipeline, session) = start(args)?;
    let shard = args.common.shard.resolve()?;
    let files = crate::shard::select(shard, &args.files);
    let out = crate::flags::run_dir_for(args.out.as_deref(), "masp-out", shard);
    let tasks: Vec<_> = pipeline
        .tasks(session.orchestrator.registry(), &files, &out)?
        .into_iter()
        .map(|t| t.batch)
        .collect();
    let masp_orchestrator::batch::BatchPlan {
        plan,
        unplannable,
        chunks,
        ..
    } = session.orchestrator.plan_batch(&tasks)?;
    println!("budget: {}", session.orchestrator.budget().describe());
    print!("{plan}");
    let registry = session.orchestrator.registry();
    for (model, samples) in &chunks {
        let rate = registry
            .get(model)
            .map_or(16_000, |spec| spec.sample_rate_hz);
        println!(
            "chunks: {model} in {samples} samples ({:.2} s)",
            *samples as f64 / f64::from(rate.max(1))
        );
    }
    for (i, err) in &unplannable {
        println!(
            "cannot plan {}: {}",
            tasks[*i].task.label,
            crate::one_line(err)
        );
    }
    let _ = session.finish();
    Ok(if unplannable.is_empty() && plan.rejected.is_empty() {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}

pub fn run(args: &PipelineArgs) -> anyhow::Result<Outcome> {
    let (pipeline, mut session) = start(args)?;
    let shard = args.common.shard.resolve()?;
    let files = crate::shard::select(shard, &args.files);
    let out = crate::flags::run_dir_for(args.out.as_deref(), "masp-out", shard);
    let shard_run = match shard {
        Some(s) => Some(crate::shard::ShardRun::start(
            &out,
            "run",
            &pipeline.sha256(session.orchestrator.registry()),
            s,
            &args.files,
        )?),
        None => None,
    };
    let options = RunOptions {
        no_resume: args.no_resume,
    };
    let mut shown = Shown::new(&session.progress);
    let result = pipeline::run(
        &mut session.orchestrator,
        &pipeline,
        &files,
        &out,
        options,
        &mut shown,
    );
    let summary = match result {
        Ok(summary) => summary,
        Err(e @ masp_run::Error::Output { .. }) => {
            let _ = session.finish();
            return Err(anyhow::Error::new(e).context(format!(
                "the run stopped; finished results are kept in {} and the same command resumes",
                out.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if summary.n_leftovers > 0 {
        eprintln!(
            "masp run: removed {} partial file(s) left by an interrupted run",
            summary.n_leftovers
        );
    }
    let n_skipped = summary.n_resumed;
    if n_skipped > 0 {
        eprintln!(
            "masp run: {n_skipped} task(s) already done in {} (resuming)",
            out.display()
        );
    }
    let batch = &summary.batch;
    eprintln!(
        "masp run: {} task(s) ok, {} failed{}; {} model load(s) (planned {})",
        batch.succeeded + n_skipped,
        summary.n_failed.max(batch.failed),
        if n_skipped > 0 {
            format!(" ({n_skipped} from earlier runs)")
        } else {
            String::new()
        },
        batch.n_loads,
        batch.planned_loads
    );
    if args.common.stats {
        eprintln!("masp run: {}", session.peak_text());
    }
    if let Some(shard_run) = shard_run {
        shard_run.finish(&summary.failed_inputs)?;
    }
    if let Some(dir) = session.finish()? {
        eprintln!("masp: report in {}", dir.display());
    }
    Ok(if summary.n_failed == 0 && batch.failed == 0 {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}
