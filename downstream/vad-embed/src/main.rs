//! VAD, then one speaker embedding per speech segment, over a list of files under a 512 MiB
//! budget, resumable: `vad-embed RUN_DIR FILE…` writes `RUN_DIR/out/<name>.embeddings.json`
//! per file; run it again and finished files are taken from RUN_DIR, not redone.

use std::path::PathBuf;
use std::process::ExitCode;

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::SequentialOrchestrator;
use masp_run::format::embeddings::{self, EmbeddingFormat};
use masp_run::job::Job;
use masp_run::run_dir::RunDir;
use masp_run::stages::{self, Observer, Ranges, StageKeys, Stages};

/// Prints one line per failed file; the others go on.
struct Report;

impl Observer for Report {
    fn failed(&mut self, input: &std::path::Path, reason: &str) {
        eprintln!("vad-embed: {}: {reason}", input.display());
    }
}

fn run(run_dir: PathBuf, files: Vec<PathBuf>) -> Result<usize, masp_run::Error> {
    let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(512)));
    let mut orch =
        SequentialOrchestrator::builder(budget, Registry::builtin(), masp_models::registry())
            .build()?;
    let stages = Stages::default();
    let keys = StageKeys::new(orch.registry(), &stages, Ranges::Segments);
    let mut run = RunDir::open(&run_dir)?;
    let mut jobs = Job::all(&files)?;
    stages::vad_stage(
        &mut orch,
        &mut jobs,
        &mut run,
        &stages.vad_model,
        &keys.vad,
        &mut Report,
    )?;
    let out = run_dir.join("out");
    std::fs::create_dir_all(&out).map_err(|e| masp_run::Error::io(&out, &e))?;
    let mut write = |job: &Job, ranges: Vec<_>| {
        embeddings::write(&out, &job.path, &ranges, EmbeddingFormat::Json).map(drop)
    };
    let (s, k) = (&stages, &keys.embed);
    stages::embed_stage(
        &mut orch,
        &mut jobs,
        &mut run,
        s,
        Ranges::Segments,
        k,
        &mut write,
        &mut Report,
    )?;
    let r = run.resumed;
    println!(
        "resumed {} VAD and {} embedding result(s); peak RSS {}",
        r.vad,
        r.embed,
        orch.peak_rss()
    );
    Ok(jobs.iter().filter(|j| j.failed).count())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(run_dir), files) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: vad-embed RUN_DIR FILE…");
        return ExitCode::from(1);
    };
    match run(run_dir, files) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n_failed) => {
            eprintln!("vad-embed: {n_failed} file(s) failed");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("vad-embed: {e}");
            ExitCode::from(1)
        }
    }
}
