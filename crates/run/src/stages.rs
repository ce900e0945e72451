//! The stages of a durable run — VAD, then speaker embeddings of ranges over the speech — each
//! as one batch (the model loaded once for all inputs), resumable from a [`RunDir`].
//!
//! Under the default policy (one resident model) the work is two batches: [`vad_stage`] writes
//! each input's speech segments as it comes, then [`embed_stage`] embeds ranges chosen from
//! them, after the VAD is unloaded and memory cleaned up. With room for both models,
//! [`interleaved`] sends each input through both in turn (faster switching, higher peak).
//! Every result is written, then journaled with the sha256 of its input and of its stage's
//! configuration ([`StageKeys`]): running the same stages again skips what is done, and redoes
//! what changed or was cut off.
//!
//! Nothing here prints: progress and per-input failures go to an [`Observer`]. A failed input
//! is marked on its [`Job`] and the others go on.

use std::path::Path;

use masp_model_registry::manifest::Registry;
use masp_orchestrator::batch::BatchTask;
use masp_orchestrator::task::{RangeEmbedding, TaskOutput, TaskParams, VadOutcome, VadParams};
use masp_orchestrator::{AudioTask, SequentialOrchestrator};

use crate::config::{model_identity, sha256_json};
use crate::diarize::{self, WindowConfig};
use crate::job::Job;
use crate::run_dir::RunDir;
use crate::{Error, Result};

/// The models of the two stages and how ranges are cut from speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// The VAD model (a registry name). Default `silero-vad`.
    pub vad_model: String,
    /// The speaker-embedding model (a registry name). Default `speaker-embedder`.
    pub embed_model: String,
    /// Windows over speech for diarization and per-window embeddings. Default 1.5 s every
    /// 0.75 s.
    pub windows: WindowConfig,
}

impl Default for Stages {
    fn default() -> Self {
        Self {
            vad_model: "silero-vad".into(),
            embed_model: "speaker-embedder".into(),
            windows: WindowConfig::default(),
        }
    }
}

/// What the embedding stage embeds of each input's speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ranges {
    /// One embedding per speech segment.
    Segments,
    /// One embedding per window over the speech ([`Stages::windows`]).
    Windows,
}

/// The configuration hashes of the two stages, which a result must match to be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageKeys {
    /// The VAD stage's.
    pub vad: String,
    /// The embedding stage's (it includes the VAD stage's: new segments, new embeddings).
    pub embed: String,
}

impl StageKeys {
    /// The keys of `stages` embedding `ranges`, with the default VAD parameters, the models'
    /// identities taken from `registry`.
    pub fn new(registry: &Registry, stages: &Stages, ranges: Ranges) -> Self {
        let vad = sha256_json(&serde_json::json!({
            "stage": "vad",
            "model": stages.vad_model,
            "model_sha256": model_identity(registry, &stages.vad_model),
            "params": VadParams::default(),
        }));
        let windows = match ranges {
            Ranges::Segments => serde_json::json!("segments"),
            Ranges::Windows => serde_json::json!({"speech_windows": {
                "window_s": stages.windows.window_s,
                "hop_s": stages.windows.hop_s,
            }}),
        };
        let embed = sha256_json(&serde_json::json!({
            "stage": "embed",
            "after": vad,
            "model": stages.embed_model,
            "model_sha256": model_identity(registry, &stages.embed_model),
            "windows": windows,
        }));
        Self { vad, embed }
    }
}

/// Hears what the stages do, as they do it. Every method has an empty default.
pub trait Observer {
    /// A stage starts with `n_inputs` to process (those not resumed).
    fn stage_started(&mut self, _stage: &str, _n_inputs: usize) {}
    /// An input of the stage is done (well or not), after `audio_s` seconds of its audio.
    fn input_done(&mut self, _stage: &str, _audio_s: f64) {}
    /// The stage is over.
    fn stage_finished(&mut self, _stage: &str) {}
    /// `input` failed for `reason` (one line); the others go on.
    fn failed(&mut self, _input: &Path, _reason: &str) {}
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {}

fn fail(job: &mut Job, observer: &mut dyn Observer, reason: &str) {
    job.failed = true;
    observer.failed(&job.path, reason);
}

/// An error as one line (messages of nested errors joined), for per-input reports.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

fn vad_key(job: &Job) -> String {
    format!("vad {}", job.name)
}

fn embed_key(job: &Job) -> String {
    format!("embed {}", job.name)
}

/// The VAD task of `job` with `params`.
pub fn vad_task(job: &Job, model: &str, params: VadParams) -> AudioTask {
    AudioTask {
        label: format!("vad {}", job.path.display()),
        model: model.to_string(),
        input: job.path.clone(),
        params: TaskParams::Vad(params),
    }
}

fn embed_task(job: &Job, model: &str, windows: Vec<(f64, f64)>) -> AudioTask {
    AudioTask {
        label: format!("embed {}", job.path.display()),
        model: model.to_string(),
        input: job.path.clone(),
        params: TaskParams::Embed {
            output: None,
            windows: Some(windows),
        },
    }
}

/// `job`'s VAD result, if journaled for `config` and readable.
pub fn resumed_vad(run: &RunDir, job: &Job, config: &str) -> Option<VadOutcome> {
    run.done(&vad_key(job), job, config, &run.vad_path(job))
        .then(|| run.read_vad(job).ok())
        .flatten()
}

/// Keep `job`'s VAD result in `run`, journaled for `config`.
///
/// # Errors
/// [`Error::Output`] naming the file.
pub fn keep_vad(run: &mut RunDir, job: &Job, config: &str, outcome: &VadOutcome) -> Result<()> {
    run.save_vad(vad_key(job), job, config, outcome)
}

/// The VAD stage as one batch: every job without a journaled result for its input and
/// `config` goes through `model`, loaded once; each result is written and journaled as it
/// comes.
///
/// # Errors
/// Planning errors (the batch cannot run at all); a failing input only fails its job.
pub fn vad_stage(
    orch: &mut SequentialOrchestrator,
    jobs: &mut [Job],
    run: &mut RunDir,
    model: &str,
    config: &str,
    observer: &mut dyn Observer,
) -> Result<()> {
    let mut todo = Vec::new();
    let mut tasks = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if job.failed {
            continue;
        }
        if run.done(&vad_key(job), job, config, &run.vad_path(job)) {
            run.resumed.vad += 1;
            continue;
        }
        todo.push(i);
        tasks.push(BatchTask {
            task: vad_task(job, model, VadParams::default()),
            depends_on: Vec::new(),
            priority: 0,
        });
    }
    if tasks.is_empty() {
        return Ok(());
    }
    observer.stage_started("vad", tasks.len());
    orch.run_batch(&tasks, &mut |k, result| {
        let job = &mut jobs[todo[k]];
        let audio_s = match &result {
            Ok(TaskOutput::Segments(o)) => o.duration_s(),
            _ => 0.0,
        };
        let saved = match result {
            Ok(TaskOutput::Segments(outcome)) => {
                keep_vad(run, job, config, &outcome).map_err(|e| one_line(&e))
            }
            Ok(_) => Err(format!("model {model} is not a VAD model")),
            Err(e) => Err(one_line(&e)),
        };
        observer.input_done("vad", audio_s);
        if let Err(reason) = saved {
            fail(job, observer, &reason);
        }
    })?;
    observer.stage_finished("vad");
    Ok(())
}

/// Time ranges `(start_s, end_s)` to embed, from a file's speech segments (in seconds).
pub fn ranges_of(
    ranges: Ranges,
    windows: &WindowConfig,
    segments: &[(f64, f64)],
) -> Result<Vec<(f64, f64)>> {
    match ranges {
        Ranges::Segments => Ok(segments.to_vec()),
        Ranges::Windows => Ok(diarize::speech_windows(segments, windows)?),
    }
}

/// A VAD result's segments in seconds.
pub fn segments_s(outcome: &VadOutcome) -> Vec<(f64, f64)> {
    outcome
        .segments
        .iter()
        .map(|s| (s.start_s(), s.end_s()))
        .collect()
}

/// Receives an input's embeddings as soon as they exist (or are read back from the run
/// directory).
pub type OnEmbedded<'a> = dyn FnMut(&Job, Vec<RangeEmbedding>) -> Result<()> + 'a;

/// The embedding stage as one batch: for every job that got through the VAD, `ranges` of its
/// speech are embedded (`stages.embed_model` loaded once), written to the run directory and
/// journaled, and handed to `on_result` as soon as each input is done. Jobs whose embeddings
/// are journaled for their input and `config` are read back instead.
///
/// # Errors
/// Planning errors; a failing input only fails its job.
#[allow(clippy::too_many_arguments)] // The stage's inputs; a struct would only rename them.
pub fn embed_stage(
    orch: &mut SequentialOrchestrator,
    jobs: &mut [Job],
    run: &mut RunDir,
    stages: &Stages,
    ranges: Ranges,
    config: &str,
    on_result: &mut OnEmbedded<'_>,
    observer: &mut dyn Observer,
) -> Result<()> {
    let mut todo = Vec::new();
    let mut tasks = Vec::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        if job.failed {
            continue;
        }
        // Journaled and readable: hand it on. Unreadable although journaled (edited by
        // hand?): redo it.
        if run.done(&embed_key(job), job, config, &run.embeddings_path(job))
            && let Ok(embeddings) = run.read_embeddings(job)
        {
            run.resumed.embed += 1;
            if let Err(e) = on_result(job, embeddings) {
                fail(job, observer, &one_line(&e));
            }
            continue;
        }
        let windows = run
            .read_vad(job)
            .and_then(|o| ranges_of(ranges, &stages.windows, &segments_s(&o)));
        match windows {
            // No speech: nothing to embed; the input has an empty result.
            Ok(w) if w.is_empty() => {
                let handled = run
                    .save_embeddings(embed_key(job), job, config, &[])
                    .and_then(|()| on_result(job, Vec::new()));
                if let Err(e) = handled {
                    fail(job, observer, &one_line(&e));
                }
            }
            Ok(w) => {
                todo.push(i);
                tasks.push(BatchTask {
                    task: embed_task(job, &stages.embed_model, w),
                    depends_on: Vec::new(),
                    priority: 0,
                });
            }
            Err(e) => fail(job, observer, &one_line(&e)),
        }
    }
    if tasks.is_empty() {
        return Ok(());
    }
    observer.stage_started("embed", tasks.len());
    orch.run_batch(&tasks, &mut |k, result| {
        let job = &mut jobs[todo[k]];
        // Audio covered: up to the end of the last range embedded.
        let audio_s = match &result {
            Ok(TaskOutput::RangeEmbeddings { embeddings, .. }) => {
                embeddings.iter().map(|e| e.end_s).fold(0.0, f64::max)
            }
            _ => 0.0,
        };
        observer.input_done("embed", audio_s);
        let handled = match result {
            Ok(TaskOutput::RangeEmbeddings { embeddings, .. }) => run
                .save_embeddings(embed_key(job), job, config, &embeddings)
                .and_then(|()| on_result(job, embeddings))
                .map_err(|e| one_line(&e)),
            Ok(_) => Err("the embedding model returned no range embeddings".into()),
            Err(e) => Err(one_line(&e)),
        };
        if let Err(reason) = handled {
            fail(job, observer, &reason);
        }
    })?;
    observer.stage_finished("embed");
    Ok(())
}

/// Both models resident: each job through the VAD then the embedder (needs room for both,
/// e.g. `max_resident` ≥ 2). Results are kept and journaled as by the two stages.
///
/// # Errors
/// When either model cannot be loaded; a failing input only fails its job.
pub fn interleaved(
    orch: &mut SequentialOrchestrator,
    jobs: &mut [Job],
    run: &mut RunDir,
    stages: &Stages,
    keys: &StageKeys,
    observer: &mut dyn Observer,
) -> Result<()> {
    orch.load_model(&stages.vad_model)?;
    orch.load_model(&stages.embed_model)?;
    for job in jobs.iter_mut() {
        let result = (|| -> Result<()> {
            if run.done(&vad_key(job), job, &keys.vad, &run.vad_path(job)) {
                run.resumed.vad += 1;
            } else {
                let task = vad_task(job, &stages.vad_model, VadParams::default());
                match orch.process_task(&task)? {
                    TaskOutput::Segments(outcome) => keep_vad(run, job, &keys.vad, &outcome)?,
                    _ => {
                        return Err(Error::InvalidParameter {
                            name: "vad model",
                            reason: format!("{} is not a VAD model", stages.vad_model),
                        });
                    }
                }
            }
            if run.done(&embed_key(job), job, &keys.embed, &run.embeddings_path(job)) {
                run.resumed.embed += 1;
                return Ok(());
            }
            let outcome = run.read_vad(job)?;
            let w = diarize::speech_windows(&segments_s(&outcome), &stages.windows)?;
            let embeddings = if w.is_empty() {
                Vec::new()
            } else {
                match orch.process_task(&embed_task(job, &stages.embed_model, w))? {
                    TaskOutput::RangeEmbeddings { embeddings, .. } => embeddings,
                    _ => {
                        return Err(Error::InvalidParameter {
                            name: "embedding model",
                            reason: "it returned no range embeddings".into(),
                        });
                    }
                }
            };
            run.save_embeddings(embed_key(job), job, &keys.embed, &embeddings)
        })();
        if let Err(e) = result {
            fail(job, observer, &one_line(&e));
        }
    }
    Ok(())
}

/// Speaker turns of one job, from its VAD result and embeddings in the run directory (read one
/// input at a time, so memory does not grow with the number of inputs).
///
/// The clustering's distance matrix grows as the square of the file's windows, so it is
/// reserved against `budget` first ([`diarize::linkage_bytes`]) and released after.
///
/// # Errors
/// Reading the records; [`Error::InvalidParameter`] for invalid `options`; [`Error::Budget`]
/// when the clustering does not fit the budget.
pub fn speaker_turns(
    run: &RunDir,
    job: &Job,
    options: &diarize::SpeakerOptions,
    budget: &masp_budget::Budget,
) -> Result<(VadOutcome, Vec<diarize::Turn>)> {
    let outcome = run.read_vad(job)?;
    let ranges = run.read_embeddings(job)?;
    let _clustering = budget.try_reserve(
        diarize::linkage_bytes(ranges.len()),
        &format!("clustering {} windows", ranges.len()),
    )?;
    let windows: Vec<(f64, f64)> = ranges.iter().map(|r| (r.start_s, r.end_s)).collect();
    let embeddings: Vec<_> = ranges.iter().map(|r| r.embedding).collect();
    let turns = diarize::assign_speakers(&segments_s(&outcome), &windows, &embeddings, options)?;
    Ok((outcome, turns))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use masp_audio::AudioInfo;
    use masp_budget::{Budget, BudgetConfig, Bytes};
    use masp_models::embedder::EMBEDDING_DIM;
    use masp_orchestrator::task::SpeechSegment;

    use super::*;

    /// A run directory holding a VAD result of one segment and `n` window embeddings for
    /// `a.wav`, alternating between two directions (two speakers).
    fn recorded(n: usize) -> (tempfile::TempDir, RunDir, Job) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.wav");
        std::fs::write(&input, b"not read").unwrap();
        let job = Job::new(&input);
        let mut run = RunDir::open(&dir.path().join("run")).unwrap();
        let n_samples = n as u64 * 8_000 + 24_000;
        let outcome = VadOutcome {
            info: AudioInfo {
                path: input.clone(),
                codec: "pcm_s16le".into(),
                source_sample_rate_hz: 16_000,
                n_channels: 1,
                n_source_frames: Some(n_samples),
            },
            n_samples,
            segments: vec![SpeechSegment {
                start_sample: 0,
                end_sample: n_samples,
            }],
        };
        run.save_vad("vad".into(), &job, "c", &outcome).unwrap();
        let embeddings: Vec<RangeEmbedding> = (0..n)
            .map(|i| {
                let mut embedding = [0.0; EMBEDDING_DIM];
                embedding[i % 2] = 1.0;
                RangeEmbedding {
                    start_s: i as f64 * 0.5,
                    end_s: i as f64 * 0.5 + 1.5,
                    embedding,
                }
            })
            .collect();
        run.save_embeddings("embed".into(), &job, "c", &embeddings)
            .unwrap();
        (dir, run, job)
    }

    #[test]
    fn records_over_the_limit_are_refused_before_they_are_read() {
        let (_dir, run, job) = recorded(3);
        for path in [run.vad_path(&job), run.embeddings_path(&job)] {
            // Sparse: a size over the limit without writing it.
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(crate::run_dir::MAX_RECORD_BYTES + 1).unwrap();
        }
        for err in [
            run.read_vad(&job).map(|_| ()).unwrap_err(),
            run.read_embeddings(&job).map(|_| ()).unwrap_err(),
        ] {
            assert!(matches!(err, Error::Malformed { .. }), "{err}");
        }
    }

    #[test]
    fn clustering_is_reserved_against_the_budget_before_its_matrix_is_made() {
        let options = diarize::SpeakerOptions {
            clustering: diarize::Clustering::Speakers(2),
            ..diarize::SpeakerOptions::default()
        };
        let budget = |mib| Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(mib)));
        // 12 000 windows: a 288 MB matrix, over a 256 MiB budget, refused with the figures.
        let (_dir, run, job) = recorded(12_000);
        let small = budget(256);
        match speaker_turns(&run, &job, &options, &small) {
            Err(Error::Budget(masp_budget::Error::OverBudget {
                requested, purpose, ..
            })) => {
                assert_eq!(requested, diarize::linkage_bytes(12_000));
                assert!(purpose.contains("12000 windows"), "{purpose}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(small.reserved(), Bytes::ZERO);
        // Within the budget: done, and the reservation released after.
        let (_dir, run, job) = recorded(40);
        let (_, turns) = speaker_turns(&run, &job, &options, &small).unwrap();
        assert!(turns.iter().any(|t| t.speaker == 1), "{turns:?}");
        assert_eq!(small.reserved(), Bytes::ZERO);
    }
}
