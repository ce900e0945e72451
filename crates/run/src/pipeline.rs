//! Pipelines: stages over many files, planned to load each model as few times as possible,
//! resumable from the run directory's journal.
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
//!
//! A run writes `<out>/<stage>/<result name>.json` per task (a VAD stage: the object
//! `masp vad --format json` prints for the file; an embedding stage: the file's embedding and
//! its windows' `.npy`; a generic stage: its tensors' `.npy` files), then journals it.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use masp_model_registry::manifest::{Isolation, ModelKind, Registry};
use masp_orchestrator::batch::{BatchSummary, BatchTask};
use masp_orchestrator::task::{TaskOutput, TaskParams, VadParams};
use masp_orchestrator::{AudioTask, SequentialOrchestrator};
use serde::{Deserialize, Serialize};

use crate::config::{model_identity, sha256_json};
use crate::journal::{Entry, Journal};
use crate::name::{result_files, result_name, result_names};
use crate::stages::{Observer, one_line};
use crate::{Error, Result};

/// The longest pipeline file read, in bytes: a pipeline is a few stages.
pub const MAX_PIPELINE_BYTES: u64 = 1 << 20;

/// The most stages a pipeline may have.
pub const MAX_STAGES: usize = 64;

/// A pipeline, read and checked once.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    path: PathBuf,
    isolation: Option<Isolation>,
    stages: Vec<StageSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    isolation: Option<String>,
    #[serde(rename = "stage", default)]
    stages: Vec<StageSpec>,
}

/// One `[[stage]]` of a pipeline file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// The model (a registry name).
    pub model: String,
    /// The stage's name: its results' directory. Default: the model's name.
    pub name: Option<String>,
    /// VAD stages: the speech threshold (0..1).
    pub threshold: Option<f64>,
    /// VAD stages: shortest speech kept, ms.
    pub min_speech_ms: Option<u32>,
    /// VAD stages: silence that ends speech, ms.
    pub min_silence_ms: Option<u32>,
    /// VAD stages: padding around each segment, ms.
    pub speech_pad_ms: Option<u32>,
}

impl StageSpec {
    /// The stage's name: `name`, else the model's.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.model)
    }

    /// Whether the file sets any of the VAD parameters.
    fn has_vad_params(&self) -> bool {
        self.threshold.is_some()
            || self.min_speech_ms.is_some()
            || self.min_silence_ms.is_some()
            || self.speech_pad_ms.is_some()
    }

    /// The VAD parameters of this stage (defaults for what it does not set), checked. The one
    /// place they are built: [`Pipeline::parse`] calls it so a bad value is refused with the
    /// file, before any work.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the stage and the parameter.
    pub fn vad_params(&self) -> Result<VadParams> {
        let d = VadParams::default();
        let p = VadParams {
            threshold: self.threshold.unwrap_or(d.threshold),
            min_speech_ms: self.min_speech_ms.unwrap_or(d.min_speech_ms),
            min_silence_ms: self.min_silence_ms.unwrap_or(d.min_silence_ms),
            speech_pad_ms: self.speech_pad_ms.unwrap_or(d.speech_pad_ms),
            ..d
        };
        p.validate().map_err(|e| Error::InvalidParameter {
            name: "stage",
            reason: format!("stage {}: {e}", self.name()),
        })?;
        Ok(p)
    }
}

impl Pipeline {
    /// Read and check the pipeline file at `path`.
    ///
    /// # Errors
    /// [`Error::Output`] when it cannot be read, [`Error::Malformed`] when it is not a
    /// pipeline (see [`Pipeline::parse`]).
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::run_dir::read_bounded(path, MAX_PIPELINE_BYTES)?;
        Self::parse(&text, path)
    }

    /// Check the pipeline `text` (read from `path`, which errors name).
    ///
    /// # Errors
    /// [`Error::Malformed`] for invalid TOML, unknown keys, no stage, more than [`MAX_STAGES`],
    /// a stage name that is not one plain file name, two stages with one name, or an unknown
    /// isolation.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_run::pipeline::Pipeline;
    ///
    /// let p = Pipeline::parse("[[stage]]\nmodel = \"silero-vad\"\n", "p.toml".as_ref())?;
    /// assert_eq!(p.stages()[0].name(), "silero-vad");
    /// let twice = "[[stage]]\nmodel = \"silero-vad\"\n[[stage]]\nmodel = \"silero-vad\"\n";
    /// assert!(Pipeline::parse(twice, "p.toml".as_ref()).is_err());
    /// assert!(Pipeline::parse("[[stage]]\nmodel = \"m\"\nname = \"../x\"\n", "p.toml".as_ref()).is_err());
    /// # Ok::<(), masp_run::Error>(())
    /// ```
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let malformed = |reason: String| Error::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let file: PipelineFile =
            toml::from_str(text).map_err(|e| malformed(e.message().to_string()))?;
        if file.stages.is_empty() {
            return Err(malformed("no [[stage]]".into()));
        }
        if file.stages.len() > MAX_STAGES {
            return Err(malformed(format!(
                "{} stages (at most {MAX_STAGES})",
                file.stages.len()
            )));
        }
        let mut names = HashSet::new();
        for stage in &file.stages {
            let name = stage.name();
            // The name becomes a directory of the run: one plain component.
            masp_orchestrator::task::ResultFiles::new("", name)
                .map_err(|_| malformed(format!("stage name {name:?} is not a plain file name")))?;
            if !names.insert(name) {
                return Err(malformed(format!(
                    "two stages are named {name:?}: their results would share a directory \
                     (give each a distinct `name`)"
                )));
            }
            if stage.has_vad_params() {
                stage
                    .vad_params()
                    .map_err(|e| malformed(crate::stages::one_line(&e)))?;
            }
        }
        let isolation = file
            .isolation
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(malformed)?;
        Ok(Self {
            path: path.to_path_buf(),
            isolation,
            stages: file.stages,
        })
    }

    /// A pipeline of `models` in order, each stage named after its model, with default
    /// parameters (what a test or a program builds without a pipeline file).
    ///
    /// # Errors
    /// As [`Pipeline::parse`]: no model, a model given twice, too many.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_run::pipeline::Pipeline;
    ///
    /// let p = Pipeline::of_models(&["silero-vad", "speaker-embedder"])?;
    /// assert_eq!(p.stages().len(), 2);
    /// assert!(Pipeline::of_models(&["silero-vad", "silero-vad"]).is_err());
    /// # Ok::<(), masp_run::Error>(())
    /// ```
    pub fn of_models(models: &[&str]) -> Result<Self> {
        let mut text = String::new();
        for model in models {
            // Quoted as a TOML basic string: the name is data, not syntax.
            let quoted = toml::Value::String((*model).to_owned()).to_string();
            text.push_str(&format!("[[stage]]\nmodel = {quoted}\n"));
        }
        Self::parse(&text, Path::new("<pipeline of models>"))
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the pipeline's models run, if it says.
    pub fn isolation(&self) -> Option<Isolation> {
        self.isolation
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[StageSpec] {
        &self.stages
    }

    /// sha256 of the whole pipeline: every stage's model, model file and parameters.
    pub fn sha256(&self, registry: &Registry) -> String {
        let doc: Vec<serde_json::Value> = self
            .stages
            .iter()
            .map(|stage| {
                serde_json::json!({
                    "stage": stage,
                    "model_sha256": model_identity(registry, &stage.model),
                })
            })
            .collect();
        sha256_json(&serde_json::Value::Array(doc))
    }

    /// The batch: every file through every stage, each stage after the file's previous one,
    /// results under `out/<stage>/`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an unknown model, invalid VAD parameters, or two inputs
    /// that are the same file.
    pub fn tasks(&self, registry: &Registry, files: &[PathBuf], out: &Path) -> Result<Vec<Task>> {
        let names = result_names(files)?;
        let mut tasks: Vec<Task> = Vec::with_capacity(files.len() * self.stages.len());
        for (file, result) in files.iter().zip(&names) {
            let mut previous: Option<usize> = None;
            for stage in &self.stages {
                let spec = registry
                    .get(&stage.model)
                    .ok_or_else(|| Error::InvalidParameter {
                        name: "stage model",
                        reason: format!(
                            "pipeline stage uses unknown model {:?} (known: {})",
                            stage.model,
                            registry.names().join(", ")
                        ),
                    })?;
                let name = stage.name();
                let dir = out.join(name);
                if spec.kind != ModelKind::Vad && stage.has_vad_params() {
                    return Err(Error::InvalidParameter {
                        name: "stage",
                        reason: format!(
                            "stage {name}: threshold, min_speech_ms, min_silence_ms and \
                             speech_pad_ms apply to VAD models, and {} is a {} model",
                            stage.model,
                            spec.kind.as_str()
                        ),
                    });
                }
                let params = match spec.kind {
                    ModelKind::Vad => TaskParams::Vad(stage.vad_params()?),
                    ModelKind::SpeakerEmbedding => TaskParams::Embed {
                        output: Some(result_files(&dir, file)?),
                        windows: None,
                    },
                    ModelKind::Generic => TaskParams::Generic {
                        output: result_files(&dir, file)?,
                    },
                };
                let task = AudioTask {
                    label: format!("{name} {}", file.display()),
                    model: stage.model.clone(),
                    input: file.clone(),
                    params,
                };
                let config_sha256 = config_sha(registry, &task);
                tasks.push(Task {
                    batch: BatchTask {
                        task,
                        depends_on: previous.into_iter().collect(),
                        priority: 0,
                    },
                    dir,
                    // Both parts are single path components (no `/`), so no two pairs of
                    // (stage, input) make one key, whatever spaces the names hold.
                    key: format!("{name}/{result}"),
                    config_sha256,
                });
                previous = Some(tasks.len() - 1);
            }
        }
        Ok(tasks)
    }
}

/// One task of a pipeline run.
#[derive(Debug, Clone)]
pub struct Task {
    /// What the orchestrator runs.
    pub batch: BatchTask,
    /// Where its results go (`out/<stage>`).
    pub dir: PathBuf,
    /// Its key in the journal: `<stage>/<result name>`, one per (stage, input) pair.
    pub key: String,
    /// What identifies its configuration in the journal.
    pub config_sha256: String,
}

/// sha256 of what determines a task's result besides its input: model, model file, parameters
/// (not where the run directory is: a moved or merged run directory keeps its results).
pub fn config_sha(registry: &Registry, task: &AudioTask) -> String {
    let mut params = serde_json::to_value(&task.params).unwrap_or_default();
    strip_outputs(&mut params);
    sha256_json(&serde_json::json!({
        "model": task.model,
        "model_sha256": model_identity(registry, &task.model),
        "params": params,
    }))
}

fn strip_outputs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("output");
            map.values_mut().for_each(strip_outputs);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_outputs),
        _ => {}
    }
}

/// Persist a task's result as `<dir>/<result name>.json` (tensors are already in `dir`),
/// atomically; returns every output file of the task.
///
/// # Errors
/// [`Error::Output`] naming the file.
pub fn save(task: &AudioTask, dir: &Path, output: &TaskOutput) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let path = dir.join(format!("{}.json", result_name(&task.input)));
    let shown = task.input.to_string_lossy();
    let encoded = match output {
        // The object `masp vad --format json` prints for the file, fields in its order.
        TaskOutput::Segments(outcome) => {
            serde_json::to_vec_pretty(&crate::format::segments::file_json(&shown, outcome))
        }
        TaskOutput::Embeddings {
            utterance,
            n_windows,
            windows,
        } => {
            files.extend(windows.iter().map(|w| w.path.clone()));
            serde_json::to_vec_pretty(&serde_json::json!({
                "path": task.input, "n_windows": n_windows, "windows": windows, "embedding": utterance.to_vec()
            }))
        }
        TaskOutput::Tensors(tensors) => {
            files.extend(tensors.iter().map(|t| t.path.clone()));
            serde_json::to_vec_pretty(&serde_json::json!({"path": task.input, "tensors": tensors}))
        }
        _ => serde_json::to_vec_pretty(&serde_json::json!({"path": task.input})),
    };
    let bytes = encoded.map_err(|e| Error::Output {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
    crate::write_file(&path, &bytes)?;
    files.push(path);
    Ok(files)
}

/// How to run a pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Redo every task, even those the journal records as finished. Default false.
    pub no_resume: bool,
}

/// What a pipeline run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Tasks the journal had as done: skipped.
    pub n_resumed: usize,
    /// Partial files of an interrupted run removed at the start.
    pub n_leftovers: usize,
    /// Tasks that failed (each reported to the observer).
    pub n_failed: usize,
    /// The orchestrator's batch summary (loads, planned loads).
    pub batch: BatchSummary,
    /// Inputs with a failed task.
    pub failed_inputs: std::collections::BTreeSet<PathBuf>,
}

/// Run `pipeline` over `files` into the run directory `out`: each model loaded as few times as
/// the plan says, every result written then journaled, what the journal has skipped.
///
/// # Errors
/// Planning errors, the journal, and a result that cannot be written: the run then stops
/// cleanly (what is done is journaled; the same call resumes) with [`Error::Output`].
pub fn run(
    orch: &mut SequentialOrchestrator,
    pipeline: &Pipeline,
    files: &[PathBuf],
    out: &Path,
    options: RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary> {
    let all = pipeline.tasks(orch.registry(), files, out)?;
    let mut journal = Journal::open(out)?;
    let mut summary = RunSummary {
        n_leftovers: crate::journal::remove_temporaries(out),
        ..RunSummary::default()
    };
    // What identifies a task's result: its input's content and its stage's configuration.
    // An unreadable input gets no hash: it is never "done" and fails when it runs.
    let mut input_sha: HashMap<PathBuf, String> = HashMap::new();
    for t in &all {
        let input = &t.batch.task.input;
        if !input_sha.contains_key(input) {
            let sha = masp_model_registry::assets::sha256_file(input).unwrap_or_default();
            input_sha.insert(input.clone(), sha);
        }
    }
    // Skip what is done; renumber the rest and drop edges to skipped tasks (their results exist).
    let done: Vec<bool> = all
        .iter()
        .map(|t| {
            let sha = &input_sha[&t.batch.task.input];
            !options.no_resume && !sha.is_empty() && journal.is_done(&t.key, sha, &t.config_sha256)
        })
        .collect();
    summary.n_resumed = done.iter().filter(|d| **d).count();
    let mut new_index = vec![usize::MAX; all.len()];
    let mut tasks = Vec::new();
    let mut origin = Vec::new();
    for (i, t) in all.iter().enumerate() {
        if done[i] {
            continue;
        }
        new_index[i] = tasks.len();
        let mut bt = t.batch.clone();
        bt.depends_on = bt
            .depends_on
            .iter()
            .filter(|&&d| !done[d])
            .map(|&d| new_index[d])
            .collect();
        tasks.push(bt);
        origin.push(i);
    }
    let mut write_error: Option<Error> = None;
    observer.stage_started("run", tasks.len());
    let batch = orch.run_batch_until(&tasks, &mut |i, result| {
        let task = &tasks[i].task;
        observer.input_done(
            "run",
            match &result {
                Ok(TaskOutput::Segments(o)) => o.duration_s(),
                _ => 0.0,
            },
        );
        let origin = &all[origin[i]];
        match result {
            Ok(output) => {
                let saved = save(task, &origin.dir, &output).and_then(|outputs| {
                    let outputs = outputs
                        .iter()
                        .map(|p| p.strip_prefix(out).unwrap_or(p).to_path_buf())
                        .collect();
                    journal.record(Entry {
                        task: origin.key.clone(),
                        input_sha256: input_sha[&task.input].clone(),
                        config_sha256: origin.config_sha256.clone(),
                        outputs,
                    })
                });
                if let Err(e) = saved {
                    // Nothing more can be kept: stop cleanly; the journal holds what is done.
                    summary.n_failed += 1;
                    summary.failed_inputs.insert(task.input.clone());
                    observer.failed(&task.input, &one_line(&e));
                    write_error.get_or_insert(e);
                    return ControlFlow::Break(());
                }
            }
            Err(err) => {
                summary.n_failed += 1;
                summary.failed_inputs.insert(task.input.clone());
                observer.failed(&task.input, &format!("{}: {}", task.label, one_line(&err)));
            }
        }
        ControlFlow::Continue(())
    })?;
    observer.stage_finished("run");
    summary.batch = batch;
    match write_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}
