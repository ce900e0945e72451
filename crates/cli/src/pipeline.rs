//! `masp run` and `masp plan`: a pipeline of stages over many files, planned to load each model
//! as few times as possible and run under the budget.
//!
//! A pipeline file lists stages in order; every file goes through every stage, and a file's
//! stage waits for the same file's previous stage:
//!
//! ```toml
//! [[stage]]
//! model = "silero-vad"        # a registry name (built-in or from the manifest)
//! threshold = 0.5             # vad stages: the `masp vad` parameters
//!
//! [[stage]]
//! name = "embed"              # default: the model's name
//! model = "speaker-embedder"
//!
//! [[stage]]
//! model = "my-denoiser"       # generic stages write .npy files
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use masp_model_registry::manifest::ModelKind;
use masp_orchestrator::AudioTask;
use masp_orchestrator::adapter::{TaskOutput, TaskParams};
use masp_orchestrator::batch::BatchTask;
use masp_orchestrator::vad::VadParams;
use serde::Deserialize;

use crate::Outcome;
use crate::context::{Common, Session};

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
    /// Where results go: one directory per stage.
    #[arg(long, default_value = "masp-out", value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    #[serde(rename = "stage")]
    stages: Vec<StageSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    model: String,
    name: Option<String>,
    threshold: Option<f64>,
    min_speech_ms: Option<u32>,
    min_silence_ms: Option<u32>,
    speech_pad_ms: Option<u32>,
}

fn read_pipeline(path: &Path) -> anyhow::Result<Vec<StageSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading pipeline {}", path.display()))?;
    let file: PipelineFile =
        toml::from_str(&text).with_context(|| format!("invalid pipeline {}", path.display()))?;
    if file.stages.is_empty() {
        bail!("pipeline {} has no [[stage]]", path.display());
    }
    Ok(file.stages)
}

/// The batch: every file through every stage, each stage after the file's previous one; and
/// each task's output directory (one per stage).
fn batch(session: &Session, args: &PipelineArgs) -> anyhow::Result<(Vec<BatchTask>, Vec<PathBuf>)> {
    let stages = read_pipeline(&args.pipeline)?;
    let registry = session.orchestrator.registry();
    let mut tasks = Vec::new();
    let mut dirs = Vec::new();
    for file in &args.files {
        let mut previous: Option<usize> = None;
        for stage in &stages {
            let spec = registry.get(&stage.model).with_context(|| {
                format!(
                    "pipeline stage uses unknown model {:?} (known: {})",
                    stage.model,
                    registry.names().join(", ")
                )
            })?;
            let name = stage.name.clone().unwrap_or_else(|| stage.model.clone());
            let dir = args.out.join(&name);
            let params = match spec.kind {
                ModelKind::Vad => {
                    let d = VadParams::default();
                    let p = VadParams {
                        threshold: stage.threshold.unwrap_or(d.threshold),
                        min_speech_ms: stage.min_speech_ms.unwrap_or(d.min_speech_ms),
                        min_silence_ms: stage.min_silence_ms.unwrap_or(d.min_silence_ms),
                        speech_pad_ms: stage.speech_pad_ms.unwrap_or(d.speech_pad_ms),
                        ..d
                    };
                    p.validate().with_context(|| format!("stage {name}"))?;
                    TaskParams::Vad(p)
                }
                ModelKind::SpeakerEmbedding => TaskParams::Embed {
                    output_dir: Some(dir.clone()),
                },
                ModelKind::Generic => TaskParams::Generic {
                    output_dir: dir.clone(),
                },
            };
            tasks.push(BatchTask {
                task: AudioTask {
                    label: format!("{name} {}", file.display()),
                    model: stage.model.clone(),
                    input: file.clone(),
                    params,
                },
                depends_on: previous.into_iter().collect(),
                priority: 0,
            });
            dirs.push(dir);
            previous = Some(tasks.len() - 1);
        }
    }
    Ok((tasks, dirs))
}

pub fn plan(args: &PipelineArgs) -> anyhow::Result<Outcome> {
    let session = Session::start(&args.common)?;
    let (tasks, _) = batch(&session, args)?;
    let masp_orchestrator::batch::BatchPlan {
        plan, unplannable, ..
    } = session.orchestrator.plan_batch(&tasks)?;
    println!("budget: {}", session.orchestrator.budget().describe());
    print!("{plan}");
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
    let mut session = Session::start(&args.common)?;
    let (tasks, dirs) = batch(&session, args)?;
    let mut n_failed = 0usize;
    let mut write_error: Option<anyhow::Error> = None;
    let summary = session.orchestrator.run_batch(&tasks, &mut |i, result| {
        let task = &tasks[i].task;
        match result {
            Ok(output) => {
                if let Err(e) = save(task, &dirs[i], &output) {
                    n_failed += 1;
                    eprintln!("masp: {}: {e:#}", task.input.display());
                    write_error.get_or_insert(e);
                }
            }
            Err(err) => {
                n_failed += 1;
                eprintln!(
                    "masp: {}: {}: {}",
                    task.input.display(),
                    task.label,
                    crate::one_line(&err)
                );
            }
        }
    })?;
    eprintln!(
        "masp run: {} task(s) ok, {} failed; {} model load(s) (planned {})",
        summary.succeeded,
        n_failed.max(summary.failed),
        summary.n_loads,
        summary.planned_loads
    );
    if args.common.stats {
        eprintln!("masp run: peak RSS {}", session.orchestrator.peak_rss());
    }
    if let Some(dir) = session.finish()? {
        eprintln!("masp: report in {}", dir.display());
    }
    Ok(if n_failed == 0 && summary.failed == 0 {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}

/// Persist a task's result as `<dir>/<stem>.json` (tensors are already in `dir`), written to a
/// temporary name and renamed, so a file that exists is complete.
fn save(task: &AudioTask, dir: &Path, output: &TaskOutput) -> anyhow::Result<()> {
    let stem = task
        .input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doc = match output {
        TaskOutput::Segments(outcome) => {
            let segments: Vec<_> = outcome
                .segments
                .iter()
                .map(|s| serde_json::json!({"start_s": s.start_s(), "end_s": s.end_s()}))
                .collect();
            serde_json::json!({"path": task.input, "duration_s": outcome.duration_s(), "segments": segments})
        }
        TaskOutput::Embeddings {
            utterance,
            n_windows,
            windows,
        } => serde_json::json!({
            "path": task.input, "n_windows": n_windows, "windows": windows, "embedding": utterance.to_vec()
        }),
        TaskOutput::Tensors(tensors) => serde_json::json!({"path": task.input, "tensors": tensors}),
        _ => serde_json::json!({"path": task.input}),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{stem}.json"));
    let tmp = dir.join(format!(".{stem}.json.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
