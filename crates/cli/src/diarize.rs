//! `masp diarize`: who spoke when — VAD, speaker embeddings of windows over the speech, then
//! clustering into speakers — as a sequential plan with intermediate results in a run directory.
//!
//! Under the default policy (`--max-resident 1`) the work is two batches: the VAD batch (VAD
//! loaded once for all files, its segments written to `<run-dir>/<id>.segments.json`), then,
//! after the VAD is unloaded and memory cleaned up, the embedding batch built from those files
//! (the embedder loaded once; embeddings written to `<run-dir>/<id>.embeddings.json`). Clustering
//! then reads one file's embeddings at a time, so memory does not grow with the number of files.
//! The run directory's journal records each finished result with the sha256 of its input file
//! and of its stage's configuration, after the result is synced and renamed into place: running
//! the same command again skips what is done, and redoes what changed or was cut off.
//! With `--max-resident 2` or more both models stay loaded and each file goes through both in
//! turn (for comparison: faster switching, higher peak).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use masp_models::embedder::Embedding;
use masp_models::vad::VadParams;
use masp_orchestrator::AudioTask;
use masp_orchestrator::batch::BatchTask;
use masp_orchestrator::task::{RangeEmbedding, TaskOutput, TaskParams};
use masp_run::diarize::{self, Clustering, SpeakerOptions, Turn, WindowConfig};
use masp_run::journal::{self, Entry, Journal};
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::context::{Common, Session};

/// Output formats of `masp diarize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiarizeFormat {
    /// NIST RTTM: one `SPEAKER <file-id> 1 <start> <dur> <NA> <NA> <speaker> <NA> <NA>` line per
    /// turn; the file id is the file name without extension.
    Rttm,
    /// A JSON array with one object per file (path, duration, speakers, turns).
    Json,
    /// An Audacity label track (`start<TAB>end<TAB>SPEAKER_00`): File → Import → Labels over
    /// the audio to listen to who spoke when. One input per run.
    Audacity,
}

/// Flags of `masp diarize`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  masp diarize meeting.wav\n  \
masp diarize --speakers 2 --format rttm calls/*.wav > calls.rttm\n  \
masp diarize --report report/ --run-dir work/ *.flac\n\n\
Exit status: 0 when every file succeeded, 2 when any file failed (each failure is one line on \
stderr and the other files are still processed), 1 for usage errors.")]
pub struct DiarizeArgs {
    /// Exactly this many speakers per file (fewer only if a file has fewer windows).
    #[arg(long, value_name = "N", conflicts_with = "threshold")]
    speakers: Option<usize>,
    /// Cosine distance (0..2) at which speaker clusters stop merging [default: 1.2].
    #[arg(long, value_name = "T")]
    threshold: Option<f64>,
    /// Average each window's embedding with those within this many seconds in its segment.
    #[arg(long, default_value_t = 1.5, value_name = "SECONDS")]
    smoothing_s: f64,
    /// Cluster raw embeddings instead of embeddings centred on the file's mean.
    #[arg(long)]
    no_centre: bool,
    /// Output format [default: rttm; MASP_FORMAT; masp.toml].
    #[arg(long, value_enum)]
    format: Option<DiarizeFormat>,
    #[command(flatten)]
    stages: StageArgs,
    /// Where intermediate results (segments, embeddings) go; reused on the next run
    /// [default: masp-run/diarize, and masp-run/diarize/shard-K-of-N for a shard].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    /// Audio files (wav, flac, mp3, ogg/vorbis).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Flags shared by `masp diarize` and `masp embed`: models and windows.
#[derive(Debug, Clone, Args)]
pub struct StageArgs {
    /// Embedding window length over speech, in seconds.
    #[arg(long, default_value_t = 1.5, value_name = "SECONDS")]
    pub window_s: f64,
    /// Seconds between embedding windows.
    #[arg(long, default_value_t = 0.75, value_name = "SECONDS")]
    pub hop_s: f64,
    /// The VAD model (a registry name).
    #[arg(long, default_value = "silero-vad", value_name = "NAME")]
    pub vad_model: String,
    /// The speaker-embedding model (a registry name).
    #[arg(long, default_value = "speaker-embedder", value_name = "NAME")]
    pub embed_model: String,
}

impl StageArgs {
    pub fn windows(&self) -> WindowConfig {
        WindowConfig {
            window_s: self.window_s,
            hop_s: self.hop_s,
        }
    }
}

/// What the VAD stage leaves in the run directory for one file.
#[derive(Debug, Serialize, Deserialize)]
pub struct SegmentsDoc {
    pub path: PathBuf,
    pub duration_s: f64,
    /// Speech segments `[start_s, end_s]`.
    pub segments: Vec<(f64, f64)>,
}

/// What the embedding stage leaves in the run directory for one file.
#[derive(Debug, Serialize, Deserialize)]
struct EmbeddingsDoc {
    path: PathBuf,
    windows: Vec<(f64, f64)>,
    embeddings: Vec<Vec<f32>>,
}

/// One input through the stages: where its intermediate files go, and whether it failed.
#[derive(Debug)]
pub struct Job {
    pub path: PathBuf,
    /// Run-directory name: `<stem>-<hash of the path>`, so equal stems do not collide.
    pub id: String,
    /// sha256 of the file's content; empty when it cannot be read (never "done", fails when
    /// it runs).
    pub input_sha: String,
    pub failed: bool,
}

impl Job {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            id: masp_run::name::result_name(path),
            input_sha: masp_model_registry::assets::sha256_file(path).unwrap_or_default(),
            failed: false,
        }
    }

    pub fn segments_path(&self, run_dir: &Path) -> PathBuf {
        run_dir.join(format!("{}.segments.json", self.id))
    }

    fn embeddings_path(&self, run_dir: &Path) -> PathBuf {
        run_dir.join(format!("{}.embeddings.json", self.id))
    }

    /// Report a failure: one line on stderr naming the file; the batch goes on.
    pub fn fail(&mut self, reason: &str) {
        self.failed = true;
        eprintln!("masp: {}: {reason}", self.path.display());
    }
}

/// This run's jobs — the shard's inputs, or all — and, for a shard, its manifest started in
/// `run_dir` (its configuration is both stages').
pub fn shard_jobs(
    command: &str,
    run_dir: &Path,
    keys: &StageKeys,
    shard: Option<crate::shard::Shard>,
    files: &[PathBuf],
) -> anyhow::Result<(Option<crate::shard::ShardRun>, Vec<Job>)> {
    let shard_run = match shard {
        Some(s) => Some(crate::shard::ShardRun::start(
            run_dir,
            command,
            &crate::context::sha256_json(&serde_json::json!([keys.vad, keys.embed]))?,
            s,
            files,
        )?),
        None => None,
    };
    let jobs = crate::shard::select(shard, files)
        .iter()
        .map(|p| Job::new(p))
        .collect();
    Ok((shard_run, jobs))
}

/// The inputs of `jobs` that failed.
pub fn failed_paths(jobs: &[Job]) -> std::collections::BTreeSet<PathBuf> {
    jobs.iter()
        .filter(|j| j.failed)
        .map(|j| j.path.clone())
        .collect()
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a file that
/// exists is complete (a later run may trust it).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    journal::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// A run directory: intermediate results, and the journal saying which are complete.
pub struct RunDir {
    pub path: PathBuf,
    journal: Journal,
    /// Results resumed from the journal, per stage: (VAD, embeddings).
    pub resumed: (usize, usize),
}

/// The configuration hashes of the two stages, which a result must match to be reused.
pub struct StageKeys {
    pub vad: String,
    pub embed: String,
}

impl StageKeys {
    /// `vad_model` with the default VAD parameters, then `embed_model` over `windows` (a JSON
    /// description of how ranges are chosen from the segments).
    pub fn new(
        session: &Session,
        stages: &StageArgs,
        windows: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let vad = crate::context::sha256_json(&serde_json::json!({
            "stage": "vad",
            "model": stages.vad_model,
            "model_sha256": crate::context::model_identity(session, &stages.vad_model),
            "params": VadParams::default(),
        }))?;
        let embed = crate::context::sha256_json(&serde_json::json!({
            "stage": "embed",
            "after": vad,
            "model": stages.embed_model,
            "model_sha256": crate::context::model_identity(session, &stages.embed_model),
            "windows": windows,
        }))?;
        Ok(Self { vad, embed })
    }
}

impl RunDir {
    /// Open (or create) `path` and its journal; remove temporaries an interrupted run left.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let journal = Journal::open(path)?;
        let leftovers = journal::remove_temporaries(path);
        if leftovers > 0 {
            eprintln!(
                "masp: removed {leftovers} partial file(s) left in {} by an interrupted run",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            journal,
            resumed: (0, 0),
        })
    }

    pub fn done(&self, task: &str, job: &Job, config: &str, output: &Path) -> bool {
        !job.input_sha.is_empty()
            && self.journal.is_done(task, &job.input_sha, config)
            && output.is_file()
    }

    pub fn record(
        &mut self,
        task: String,
        job: &Job,
        config: &str,
        output: &Path,
    ) -> anyhow::Result<()> {
        let relative = output
            .strip_prefix(&self.path)
            .unwrap_or(output)
            .to_path_buf();
        self.journal.record(Entry {
            task,
            input_sha256: job.input_sha.clone(),
            config_sha256: config.to_owned(),
            outputs: vec![relative],
        })?;
        Ok(())
    }

    /// Say what was resumed, if anything.
    pub fn report_resumed(&self, command: &str) {
        let (vad, embed) = self.resumed;
        if vad + embed > 0 {
            eprintln!(
                "masp {command}: resumed {vad} VAD and {embed} embedding result(s) from {}",
                self.path.display()
            );
        }
    }
}

fn vad_key(job: &Job) -> String {
    format!("vad {}", job.id)
}

fn embed_key(job: &Job) -> String {
    format!("embed {}", job.id)
}

/// Save a file's segments and journal them.
fn finish_vad(job: &Job, run: &mut RunDir, config: &str, output: TaskOutput) -> anyhow::Result<()> {
    save_segments(job, &run.path, output)?;
    run.record(vad_key(job), job, config, &job.segments_path(&run.path))
}

/// Save a file's embeddings and journal them.
fn finish_embed(
    job: &Job,
    run: &mut RunDir,
    config: &str,
    embeddings: &[RangeEmbedding],
) -> anyhow::Result<()> {
    save_embeddings(job, &run.path, embeddings)?;
    run.record(embed_key(job), job, config, &job.embeddings_path(&run.path))
}

fn save_segments(job: &Job, run_dir: &Path, output: TaskOutput) -> anyhow::Result<()> {
    let TaskOutput::Segments(outcome) = output else {
        anyhow::bail!("the VAD model returned no speech segments");
    };
    let doc = SegmentsDoc {
        path: job.path.clone(),
        duration_s: outcome.duration_s(),
        segments: outcome
            .segments
            .iter()
            .map(|s| (s.start_s(), s.end_s()))
            .collect(),
    };
    write_atomically(&job.segments_path(run_dir), &serde_json::to_vec(&doc)?)
}

pub fn read_segments(job: &Job, run_dir: &Path) -> anyhow::Result<SegmentsDoc> {
    let path = job.segments_path(run_dir);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

fn vad_task(job: &Job, model: &str) -> AudioTask {
    AudioTask {
        label: format!("vad {}", job.path.display()),
        model: model.to_string(),
        input: job.path.clone(),
        params: TaskParams::Vad(VadParams::default()),
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

/// The VAD stage as one batch: every file without a journaled result for this input and
/// configuration goes through the VAD, loaded once; each result is written and journaled as it
/// comes.
pub fn vad_stage(
    session: &mut Session,
    jobs: &mut [Job],
    run: &mut RunDir,
    model: &str,
    config: &str,
) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    let mut tasks = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if job.failed {
            continue;
        }
        if run.done(&vad_key(job), job, config, &job.segments_path(&run.path)) {
            run.resumed.0 += 1;
            continue;
        }
        todo.push(i);
        tasks.push(BatchTask {
            task: vad_task(job, model),
            depends_on: Vec::new(),
            priority: 0,
        });
    }
    if tasks.is_empty() {
        return Ok(());
    }
    let mut bar = session.progress.stage("vad", tasks.len(), "files");
    session
        .orchestrator
        .run_batch(&tasks, &mut |k, result| {
            let job = &mut jobs[todo[k]];
            let audio_s = match &result {
                Ok(TaskOutput::Segments(o)) => o.duration_s(),
                _ => 0.0,
            };
            let saved = result
                .map_err(|e| crate::one_line(&e))
                .and_then(|out| finish_vad(job, run, config, out).map_err(|e| format!("{e:#}")));
            bar.file_done(audio_s);
            if let Err(reason) = saved {
                job.fail(&reason);
            }
        })
        .context("planning the VAD batch")?;
    bar.finish();
    Ok(())
}

/// Time ranges to embed from a file's speech segments.
pub type WindowsOf<'a> = dyn Fn(&[(f64, f64)]) -> anyhow::Result<Vec<(f64, f64)>> + 'a;
/// Receives a file's embeddings as soon as they exist (or are read back from the run
/// directory).
pub type OnEmbedded<'a> = dyn FnMut(&Job, Vec<RangeEmbedding>) -> anyhow::Result<()> + 'a;

/// The embedding stage as one batch: for every file that got through the VAD, the ranges
/// `windows_of(segments)` are embedded (the embedder loaded once), written to the run
/// directory and journaled, and handed to `on_result` as soon as each file is done. Files
/// whose embeddings are journaled for this input and configuration are read back instead.
#[allow(clippy::too_many_arguments)]
pub fn embed_stage(
    session: &mut Session,
    jobs: &mut [Job],
    run: &mut RunDir,
    model: &str,
    config: &str,
    windows_of: &WindowsOf<'_>,
    on_result: &mut OnEmbedded<'_>,
) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    let mut tasks = Vec::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        if job.failed {
            continue;
        }
        // Journaled and readable: hand it on. Unreadable although journaled (edited by
        // hand?): redo it.
        if run.done(
            &embed_key(job),
            job,
            config,
            &job.embeddings_path(&run.path),
        ) && let Ok(embeddings) = read_embeddings(job, &run.path)
        {
            run.resumed.1 += 1;
            if let Err(e) = on_result(job, embeddings) {
                job.fail(&format!("{e:#}"));
            }
            continue;
        }
        let windows = read_segments(job, &run.path).and_then(|doc| windows_of(&doc.segments));
        match windows {
            // No speech: nothing to embed; the file has an empty result.
            Ok(w) if w.is_empty() => {
                let handled =
                    finish_embed(job, run, config, &[]).and_then(|()| on_result(job, Vec::new()));
                if let Err(e) = handled {
                    job.fail(&format!("{e:#}"));
                }
            }
            Ok(w) => {
                todo.push(i);
                tasks.push(BatchTask {
                    task: embed_task(job, model, w),
                    depends_on: Vec::new(),
                    priority: 0,
                });
            }
            Err(e) => job.fail(&format!("{e:#}")),
        }
    }
    if tasks.is_empty() {
        return Ok(());
    }
    let mut bar = session.progress.stage("embed", tasks.len(), "files");
    session
        .orchestrator
        .run_batch(&tasks, &mut |k, result| {
            let job = &mut jobs[todo[k]];
            // Audio covered: up to the end of the last range embedded.
            let audio_s = match &result {
                Ok(TaskOutput::RangeEmbeddings { embeddings, .. }) => {
                    embeddings.iter().map(|e| e.end_s).fold(0.0, f64::max)
                }
                _ => 0.0,
            };
            bar.file_done(audio_s);
            let handled = match result {
                Ok(TaskOutput::RangeEmbeddings { embeddings, .. }) => {
                    finish_embed(job, run, config, &embeddings)
                        .and_then(|()| on_result(job, embeddings))
                        .map_err(|e| format!("{e:#}"))
                }
                Ok(_) => Err("the embedding model returned no range embeddings".into()),
                Err(e) => Err(crate::one_line(&e)),
            };
            if let Err(reason) = handled {
                job.fail(&reason);
            }
        })
        .context("planning the embedding batch")?;
    bar.finish();
    Ok(())
}

/// Both models resident: each file through the VAD then the embedder (`--max-resident` ≥ 2).
fn interleaved(
    session: &mut Session,
    jobs: &mut [Job],
    run: &mut RunDir,
    stages: &StageArgs,
    keys: &StageKeys,
) -> anyhow::Result<()> {
    session.orchestrator.load_model(&stages.vad_model)?;
    session.orchestrator.load_model(&stages.embed_model)?;
    let windows = stages.windows();
    for job in jobs.iter_mut() {
        let result = (|| -> anyhow::Result<()> {
            if run.done(&vad_key(job), job, &keys.vad, &job.segments_path(&run.path)) {
                run.resumed.0 += 1;
            } else {
                let out = session
                    .orchestrator
                    .process_task(&vad_task(job, &stages.vad_model))
                    .map_err(|e| anyhow::anyhow!(crate::one_line(&e)))?;
                finish_vad(job, run, &keys.vad, out)?;
            }
            if run.done(
                &embed_key(job),
                job,
                &keys.embed,
                &job.embeddings_path(&run.path),
            ) {
                run.resumed.1 += 1;
                return Ok(());
            }
            let doc = read_segments(job, &run.path)?;
            let w = diarize::speech_windows(&doc.segments, &windows)?;
            let embeddings = if w.is_empty() {
                Vec::new()
            } else {
                match session
                    .orchestrator
                    .process_task(&embed_task(job, &stages.embed_model, w))
                    .map_err(|e| anyhow::anyhow!(crate::one_line(&e)))?
                {
                    TaskOutput::RangeEmbeddings { embeddings, .. } => embeddings,
                    _ => anyhow::bail!("the embedding model returned no range embeddings"),
                }
            };
            finish_embed(job, run, &keys.embed, &embeddings)
        })();
        if let Err(e) = result {
            job.fail(&format!("{e:#}"));
        }
    }
    Ok(())
}

fn save_embeddings(job: &Job, run_dir: &Path, embeddings: &[RangeEmbedding]) -> anyhow::Result<()> {
    let doc = EmbeddingsDoc {
        path: job.path.clone(),
        windows: embeddings.iter().map(|e| (e.start_s, e.end_s)).collect(),
        embeddings: embeddings.iter().map(|e| e.embedding.to_vec()).collect(),
    };
    write_atomically(&job.embeddings_path(run_dir), &serde_json::to_vec(&doc)?)
}

/// A file's embeddings as the embedding stage left them in the run directory.
fn read_embeddings(job: &Job, run_dir: &Path) -> anyhow::Result<Vec<RangeEmbedding>> {
    let path = job.embeddings_path(run_dir);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: EmbeddingsDoc =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    if doc.windows.len() != doc.embeddings.len() {
        anyhow::bail!(
            "{}: {} windows but {} embeddings",
            path.display(),
            doc.windows.len(),
            doc.embeddings.len()
        );
    }
    doc.windows
        .iter()
        .zip(&doc.embeddings)
        .map(|(&(start_s, end_s), e)| {
            Ok(RangeEmbedding {
                start_s,
                end_s,
                embedding: Embedding::try_from(e.as_slice()).with_context(|| {
                    format!("{}: an embedding is not 256 values", path.display())
                })?,
            })
        })
        .collect()
}

/// Clustering and turns of one file, from its files in the run directory.
fn cluster_file(
    job: &Job,
    run_dir: &Path,
    options: &SpeakerOptions,
) -> anyhow::Result<(SegmentsDoc, Vec<Turn>)> {
    let segments = read_segments(job, run_dir)?;
    let ranges = read_embeddings(job, run_dir)?;
    let windows: Vec<(f64, f64)> = ranges.iter().map(|r| (r.start_s, r.end_s)).collect();
    let embeddings: Vec<Embedding> = ranges.iter().map(|r| r.embedding).collect();
    let turns = diarize::assign_speakers(&segments.segments, &windows, &embeddings, options)?;
    Ok((segments, turns))
}

/// Rounds seconds to the millisecond for output.
fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn speaker_name(index: usize) -> String {
    format!("SPEAKER_{index:02}")
}

/// Writes one file's turns in `format`; JSON objects after the first are preceded by a comma.
fn write_turns(
    out: &mut dyn Write,
    format: DiarizeFormat,
    first: bool,
    segments: &SegmentsDoc,
    turns: &[Turn],
) -> anyhow::Result<()> {
    match format {
        DiarizeFormat::Rttm => {
            let id = segments
                .path
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default()
                .replace(char::is_whitespace, "_");
            for t in turns {
                writeln!(
                    out,
                    "SPEAKER {id} 1 {:.3} {:.3} <NA> <NA> {} <NA> <NA>",
                    ms(t.start_s),
                    ms(t.end_s - t.start_s),
                    speaker_name(t.speaker)
                )?;
            }
        }
        DiarizeFormat::Audacity => {
            for t in turns {
                crate::output::audacity_label(out, t.start_s, t.end_s, &speaker_name(t.speaker))?;
            }
        }
        DiarizeFormat::Json => {
            let doc = serde_json::json!({
                "path": segments.path,
                "duration_s": ms(segments.duration_s),
                "n_speakers": diarize::n_speakers(turns),
                "turns": turns.iter().map(|t| serde_json::json!({
                    "start_s": ms(t.start_s),
                    "end_s": ms(t.end_s),
                    "speaker": speaker_name(t.speaker),
                })).collect::<Vec<_>>(),
            });
            let sep = if first { "" } else { ",\n" };
            write!(out, "{sep}{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run(args: &DiarizeArgs) -> anyhow::Result<Outcome> {
    let clustering = match (args.speakers, args.threshold) {
        (Some(n), _) => Clustering::Speakers(n),
        (None, Some(t)) => Clustering::Threshold(t),
        (None, None) => Clustering::default(),
    };
    clustering.validate()?;
    let options = SpeakerOptions {
        clustering,
        smoothing_s: args.smoothing_s,
        centre: !args.no_centre,
    };
    let windows = args.stages.windows();
    windows.validate()?;
    let settings = crate::config::Settings::resolve(&args.common)?;
    let format = settings.format("diarize", args.format, DiarizeFormat::Rttm)?;
    if format == DiarizeFormat::Audacity && args.files.len() > 1 {
        anyhow::bail!(
            "--format audacity writes one label track, for one audio file: give one input \
             (or run once per file)"
        );
    }
    let started = Instant::now();
    let shard = args.common.shard.resolve()?;
    let run_dir = crate::context::run_dir_for(args.run_dir.as_deref(), "masp-run/diarize", shard);
    let mut run = RunDir::open(&run_dir)?;
    let mut session = Session::start_with(&args.common, settings)?;
    let keys = StageKeys::new(
        &session,
        &args.stages,
        serde_json::json!({"speech_windows": {"window_s": windows.window_s, "hop_s": windows.hop_s}}),
    )?;
    let (shard_run, mut jobs) = shard_jobs("diarize", &run_dir, &keys, shard, &args.files)?;

    if session.settings.max_resident.value >= 2 {
        interleaved(&mut session, &mut jobs, &mut run, &args.stages, &keys)?;
    } else {
        vad_stage(
            &mut session,
            &mut jobs,
            &mut run,
            &args.stages.vad_model,
            &keys.vad,
        )?;
        embed_stage(
            &mut session,
            &mut jobs,
            &mut run,
            &args.stages.embed_model,
            &keys.embed,
            &|segments| Ok(diarize::speech_windows(segments, &windows)?),
            &mut |_, _| Ok(()),
        )?;
    }
    run.report_resumed("diarize");

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if format == DiarizeFormat::Json {
        writeln!(out, "[")?;
    }
    let (mut n_written, mut audio_s) = (0usize, 0.0f64);
    for job in jobs.iter_mut().filter(|j| !j.failed) {
        match cluster_file(job, &run_dir, &options) {
            Ok((segments, turns)) => {
                audio_s += segments.duration_s;
                write_turns(&mut out, format, n_written == 0, &segments, &turns)
                    .context("writing to stdout")?;
                n_written += 1;
            }
            Err(e) => job.fail(&format!("{e:#}")),
        }
    }
    if format == DiarizeFormat::Json {
        writeln!(out, "{}]", if n_written == 0 { "" } else { "\n" })?;
    }
    drop(out);
    let n_failed = jobs.iter().filter(|j| j.failed).count();
    if let Some(shard_run) = shard_run {
        shard_run.finish(&failed_paths(&jobs))?;
    }
    let peak = session.peak_text();
    let loads: Vec<String> = session
        .orchestrator
        .stats()
        .iter()
        .map(|(name, s)| format!("{name} {}", s.loads))
        .collect();
    let report = session.finish()?;
    if args.common.stats {
        let wall_s = started.elapsed().as_secs_f64();
        let speed = if wall_s > 0.0 { audio_s / wall_s } else { 0.0 };
        eprintln!(
            "masp diarize: {n_written} file(s) ok, {n_failed} failed; {audio_s:.1} s of audio in \
             {wall_s:.2} s ({speed:.0}× real time); loads: {}; {peak}",
            loads.join(", ")
        );
    }
    if let Some(dir) = report {
        eprintln!("masp: report in {}", dir.display());
    }
    Ok(Outcome::from_failures(n_failed))
}
