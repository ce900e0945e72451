//! `masp run` and `masp plan`: a pipeline of stages over many files, planned to load each model
//! as few times as possible and run under the budget.
//!
//! A pipeline file lists stages in order; every file goes through every stage, and a file's
//! stage waits for the same file's previous stage:
//!
//! ```toml
//! isolation = "process"       # optional: each model in its own worker process
//!
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
use masp_models::vad::VadParams;
use masp_orchestrator::AudioTask;
use masp_orchestrator::batch::BatchTask;
use masp_orchestrator::task::{ResultFiles, TaskOutput, TaskParams};
use std::collections::HashMap;
use std::ops::ControlFlow;

use masp_run::journal::{self, Entry, Journal};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    /// Where the pipeline's models run (`--isolation` overrides it).
    isolation: Option<String>,
    #[serde(rename = "stage")]
    stages: Vec<StageSpec>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    model: String,
    name: Option<String>,
    threshold: Option<f64>,
    min_speech_ms: Option<u32>,
    min_silence_ms: Option<u32>,
    speech_pad_ms: Option<u32>,
}

fn read_pipeline(path: &Path) -> anyhow::Result<PipelineFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading pipeline {}", path.display()))?;
    let file: PipelineFile =
        toml::from_str(&text).with_context(|| format!("invalid pipeline {}", path.display()))?;
    if file.stages.is_empty() {
        bail!("pipeline {} has no [[stage]]", path.display());
    }
    Ok(file)
}

/// The common flags with the pipeline file's settings where the flags say nothing.
/// The settings of a pipeline run: the pipeline file's `isolation` sits above masp.toml and
/// below the environment and flags.
fn pipeline_settings(args: &PipelineArgs) -> anyhow::Result<crate::config::Settings> {
    let file = read_pipeline(&args.pipeline)?;
    let isolation = match &file.isolation {
        Some(text) => Some(
            crate::context::parse_isolation(text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("invalid pipeline {}", args.pipeline.display()))?,
        ),
        None => None,
    };
    crate::config::Settings::resolve_for_pipeline(&args.common, isolation, &args.pipeline)
}

/// The batch: every file through every stage, each stage after the file's previous one; and
/// each task's output directory (one per stage).
fn batch(
    session: &Session,
    args: &PipelineArgs,
    files: &[PathBuf],
    out: &Path,
) -> anyhow::Result<(Vec<BatchTask>, Vec<PathBuf>)> {
    let stages = read_pipeline(&args.pipeline)?.stages;
    let registry = session.orchestrator.registry();
    let mut tasks = Vec::new();
    let mut dirs = Vec::new();
    let names = masp_run::name::result_names(files)?;
    for (file, result_name) in files.iter().zip(&names) {
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
            let dir = out.join(&name);
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
                    output: Some(ResultFiles::new(&dir, result_name)?),
                    windows: None,
                },
                ModelKind::Generic => TaskParams::Generic {
                    output: ResultFiles::new(&dir, result_name)?,
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
    let session = Session::start_with(&args.common, pipeline_settings(args)?)?;
    let shard = args.common.shard.resolve()?;
    let files = crate::shard::select(shard, &args.files);
    let out = crate::context::run_dir_for(args.out.as_deref(), "masp-out", shard);
    let (tasks, _) = batch(&session, args, &files, &out)?;
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
    let mut session = Session::start_with(&args.common, pipeline_settings(args)?)?;
    let shard = args.common.shard.resolve()?;
    let files = crate::shard::select(shard, &args.files);
    let out = crate::context::run_dir_for(args.out.as_deref(), "masp-out", shard);
    let (all_tasks, all_dirs) = batch(&session, args, &files, &out)?;
    let mut journal = Journal::open(&out)?;
    let leftovers = journal::remove_temporaries(&out);
    if leftovers > 0 {
        eprintln!("masp run: removed {leftovers} partial file(s) left by an interrupted run");
    }
    let shard_run = match shard {
        Some(s) => Some(crate::shard::ShardRun::start(
            &out,
            "run",
            &pipeline_sha(&session, args)?,
            s,
            &args.files,
        )?),
        None => None,
    };
    let mut failed_inputs = std::collections::BTreeSet::new();
    // What identifies a task's result: its input's content and its stage's configuration.
    let mut input_sha: HashMap<PathBuf, String> = HashMap::new();
    let mut keys = Vec::with_capacity(all_tasks.len());
    for bt in &all_tasks {
        let input = &bt.task.input;
        if !input_sha.contains_key(input) {
            // An unreadable input gets no hash: it is never "done" and fails when it runs.
            let sha = masp_model_registry::assets::sha256_file(input).unwrap_or_default();
            input_sha.insert(input.clone(), sha);
        }
        keys.push((input_sha[input].clone(), config_sha(&session, &bt.task)?));
    }
    // Skip what is done; renumber the rest and drop edges to skipped tasks (their results exist).
    let done: Vec<bool> = all_tasks
        .iter()
        .zip(&keys)
        .map(|(bt, (i, c))| {
            !args.no_resume && !i.is_empty() && journal.is_done(&bt.task.label, i, c)
        })
        .collect();
    let n_skipped = done.iter().filter(|d| **d).count();
    let mut new_index = vec![usize::MAX; all_tasks.len()];
    let mut tasks = Vec::new();
    let mut origin = Vec::new();
    for (i, bt) in all_tasks.iter().enumerate() {
        if done[i] {
            continue;
        }
        new_index[i] = tasks.len();
        let mut bt = bt.clone();
        bt.depends_on = bt
            .depends_on
            .iter()
            .filter(|&&d| !done[d])
            .map(|&d| new_index[d])
            .collect();
        tasks.push(bt);
        origin.push(i);
    }
    if n_skipped > 0 {
        eprintln!(
            "masp run: {n_skipped} task(s) already done in {} (resuming)",
            out.display()
        );
    }
    let mut n_failed = 0usize;
    let mut write_error: Option<anyhow::Error> = None;
    let mut bar = session.progress.stage("run", tasks.len(), "tasks");
    let summary = session
        .orchestrator
        .run_batch_until(&tasks, &mut |i, result| {
            let task = &tasks[i].task;
            bar.file_done(match &result {
                Ok(TaskOutput::Segments(o)) => o.duration_s(),
                _ => 0.0,
            });
            let (input_sha256, config_sha256) = keys[origin[i]].clone();
            match result {
                Ok(output) => {
                    let saved = save(task, &all_dirs[origin[i]], &output).and_then(|outputs| {
                        let outputs = outputs
                            .iter()
                            .map(|p| p.strip_prefix(&out).unwrap_or(p).to_path_buf())
                            .collect();
                        journal.record(Entry {
                            task: task.label.clone(),
                            input_sha256,
                            config_sha256,
                            outputs,
                        })?;
                        Ok(())
                    });
                    if let Err(e) = saved {
                        // Nothing more can be kept: stop cleanly; the journal holds what is done.
                        n_failed += 1;
                        failed_inputs.insert(task.input.clone());
                        eprintln!("masp: {}: {e:#}", task.input.display());
                        write_error.get_or_insert(e);
                        return ControlFlow::Break(());
                    }
                }
                Err(err) => {
                    n_failed += 1;
                    failed_inputs.insert(task.input.clone());
                    eprintln!(
                        "masp: {}: {}: {}",
                        task.input.display(),
                        task.label,
                        crate::one_line(&err)
                    );
                }
            }
            ControlFlow::Continue(())
        })?;
    bar.finish();
    eprintln!(
        "masp run: {} task(s) ok, {} failed{}; {} model load(s) (planned {})",
        summary.succeeded + n_skipped,
        n_failed.max(summary.failed),
        if n_skipped > 0 {
            format!(" ({n_skipped} from earlier runs)")
        } else {
            String::new()
        },
        summary.n_loads,
        summary.planned_loads
    );
    if args.common.stats {
        eprintln!("masp run: {}", session.peak_text());
    }
    // A stopped run leaves its unfinished inputs pending in the shard's manifest.
    if let Some(shard_run) = shard_run
        && write_error.is_none()
    {
        shard_run.finish(&failed_inputs)?;
    }
    if let Some(dir) = session.finish()? {
        eprintln!("masp: report in {}", dir.display());
    }
    if let Some(e) = write_error {
        return Err(e.context(format!(
            "the run stopped; finished results are kept in {} and the same command resumes",
            out.display()
        )));
    }
    Ok(if n_failed == 0 && summary.failed == 0 {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}

/// sha256 of what determines a task's result besides its input: model, model file, parameters
/// (not where the run directory is: a moved or merged run directory keeps its results).
fn config_sha(session: &Session, task: &AudioTask) -> anyhow::Result<String> {
    let model_identity = crate::context::model_identity(session, &task.model);
    let mut params = serde_json::to_value(&task.params)?;
    strip_output_dirs(&mut params);
    crate::context::sha256_json(
        &serde_json::json!({ "model": task.model, "model_sha256": model_identity, "params": params }),
    )
}

fn strip_output_dirs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("output");
            map.values_mut().for_each(strip_output_dirs);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_output_dirs),
        _ => {}
    }
}

/// sha256 of the whole pipeline: every stage's model, model file and parameters.
fn pipeline_sha(session: &Session, args: &PipelineArgs) -> anyhow::Result<String> {
    let stages = read_pipeline(&args.pipeline)?.stages;
    let doc: Vec<serde_json::Value> = stages
        .iter()
        .map(|stage| {
            serde_json::json!({
                "stage": stage,
                "model_sha256": crate::context::model_identity(session, &stage.model),
            })
        })
        .collect();
    crate::context::sha256_json(&serde_json::Value::Array(doc))
}

/// Persist a task's result as `<dir>/<result name>.json` (tensors are already in `dir`),
/// atomically; returns every output file of the task.
fn save(task: &AudioTask, dir: &Path, output: &TaskOutput) -> anyhow::Result<Vec<PathBuf>> {
    let stem = masp_run::name::result_name(&task.input);
    let mut files = Vec::new();
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
        } => {
            files.extend(windows.iter().map(|w| w.path.clone()));
            serde_json::json!({
                "path": task.input, "n_windows": n_windows, "windows": windows, "embedding": utterance.to_vec()
            })
        }
        TaskOutput::Tensors(tensors) => {
            files.extend(tensors.iter().map(|t| t.path.clone()));
            serde_json::json!({"path": task.input, "tensors": tensors})
        }
        _ => serde_json::json!({"path": task.input}),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{stem}.json"));
    journal::write_atomic(&path, &serde_json::to_vec_pretty(&doc)?)?;
    files.push(path);
    Ok(files)
}
