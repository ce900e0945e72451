//! `masp vad`: speech segments of each input file.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use masp_audio::AudioInfo;
use masp_models::vad::{SpeechSegment, VadOutcome, VadParams};
use masp_orchestrator::AudioTask;
use masp_orchestrator::task::{TaskOutput, TaskParams};
use serde::{Deserialize, Serialize};

use crate::diarize::{Job, RunDir, write_atomically};

use crate::Outcome;
use crate::context::{Common, Session};
use crate::output::{Format, SegmentWriter};

/// Flags of `masp vad`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  masp vad talk.wav\n  masp vad --format rttm *.flac > speech.rttm\n  \
masp vad --budget 512MiB --report report/ long.wav\n\n\
Exit status: 0 when every file succeeded, 2 when any file failed (each failure is one line on \
stderr and the other files are still processed), 1 for usage errors."
)]
pub struct VadArgs {
    /// Output format [default: json; MASP_FORMAT; masp.toml].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Speech probability threshold (0..1).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Shortest speech kept, in milliseconds.
    #[arg(long, default_value_t = 250)]
    min_speech_ms: u32,
    /// Silence needed to end speech, in milliseconds.
    #[arg(long, default_value_t = 100)]
    min_silence_ms: u32,
    /// Padding added around each segment, in milliseconds.
    #[arg(long, default_value_t = 30)]
    speech_pad_ms: u32,
    /// Split segments longer than this many seconds (default: never).
    #[arg(long)]
    max_speech_s: Option<f64>,
    /// The VAD model (a registry name). The default, silero's sequence export, gives the same
    /// segments as `silero-vad` with many frames per call (2.5× faster on an hour of speech).
    #[arg(long, default_value = "silero-vad-sequence")]
    model: String,
    /// Keep each file's result in DIR with a journal: running the same command again prints
    /// finished files from DIR instead of redoing them (changed files or parameters are redone).
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    /// Audio files (wav, flac, mp3, ogg/vorbis).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// One file's result as kept in a run directory.
#[derive(Debug, Serialize, Deserialize)]
struct VadRecord {
    codec: String,
    source_sample_rate_hz: u32,
    n_channels: usize,
    n_source_frames: Option<u64>,
    n_samples: u64,
    /// `[start_sample, end_sample)` at 16 kHz.
    segments: Vec<(u64, u64)>,
}

fn record_path(run: &RunDir, job: &Job) -> PathBuf {
    run.path.join(format!("{}.vad.json", job.id))
}

fn save_record(run: &mut RunDir, job: &Job, config: &str, o: &VadOutcome) -> anyhow::Result<()> {
    let record = VadRecord {
        codec: o.info.codec.clone(),
        source_sample_rate_hz: o.info.source_sample_rate_hz,
        n_channels: o.info.n_channels,
        n_source_frames: o.info.n_source_frames,
        n_samples: o.n_samples,
        segments: o
            .segments
            .iter()
            .map(|s| (s.start_sample, s.end_sample))
            .collect(),
    };
    let path = record_path(run, job);
    write_atomically(&path, &serde_json::to_vec(&record)?)?;
    run.record(format!("vad {}", job.id), job, config, &path)
}

fn read_record(run: &RunDir, job: &Job) -> anyhow::Result<VadOutcome> {
    let path = record_path(run, job);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let r: VadRecord =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok(VadOutcome {
        info: AudioInfo {
            path: job.path.clone(),
            codec: r.codec,
            source_sample_rate_hz: r.source_sample_rate_hz,
            n_channels: r.n_channels,
            n_source_frames: r.n_source_frames,
        },
        n_samples: r.n_samples,
        segments: r
            .segments
            .into_iter()
            .map(|(start_sample, end_sample)| SpeechSegment {
                start_sample,
                end_sample,
            })
            .collect(),
    })
}

pub fn run(args: &VadArgs) -> anyhow::Result<Outcome> {
    let params = VadParams {
        threshold: args.threshold,
        min_speech_ms: args.min_speech_ms,
        min_silence_ms: args.min_silence_ms,
        speech_pad_ms: args.speech_pad_ms,
        max_speech_s: args.max_speech_s.unwrap_or(f64::INFINITY),
        ..VadParams::default()
    };
    params.validate()?;
    let settings = crate::config::Settings::resolve(&args.common)?;
    let format = settings.format("vad", args.format, Format::Json)?;
    if format == Format::Audacity && args.files.len() > 1 {
        anyhow::bail!(
            "--format audacity writes one label track, for one audio file: give one input \
             (or run once per file)"
        );
    }
    let started = Instant::now();
    let shard = args.common.shard.resolve()?;
    if shard.is_some() && args.run_dir.is_none() {
        anyhow::bail!(
            "--shard needs --run-dir: each shard keeps its results for `masp merge` there"
        );
    }
    let files = crate::shard::select(shard, &args.files);
    let mut run = args.run_dir.as_deref().map(RunDir::open).transpose()?;
    let mut session = Session::start_with(&args.common, settings)?;
    let config = crate::context::sha256_json(&serde_json::json!({
        "stage": "vad",
        "model": args.model,
        "model_sha256": crate::context::model_identity(&session, &args.model),
        "params": params,
    }))?;
    let mut n_resumed = 0usize;
    let shard_run = match (shard, &args.run_dir) {
        (Some(s), Some(dir)) => Some(crate::shard::ShardRun::start(
            dir,
            "vad",
            &config,
            s,
            &args.files,
        )?),
        _ => None,
    };
    let mut failed = std::collections::BTreeSet::new();
    let mut bar = session.progress.stage("vad", files.len(), "files");
    // Load before the first file: a missing or refused model is one error, not one per file.
    session.orchestrator.load_model(&args.model)?;

    let stdout = std::io::stdout();
    let mut writer = SegmentWriter::new(stdout.lock(), format);
    writer.begin().context("writing to stdout")?;
    let (mut n_ok, mut n_failed, mut audio_s) = (0usize, 0usize, 0.0f64);
    for path in &files {
        let job = run.as_ref().map(|_| Job::new(path));
        if let (Some(run), Some(job)) = (&run, &job)
            && run.done(
                &format!("vad {}", job.id),
                job,
                &config,
                &record_path(run, job),
            )
            && let Ok(outcome) = read_record(run, job)
        {
            n_ok += 1;
            n_resumed += 1;
            audio_s += outcome.duration_s();
            bar.file_done(outcome.duration_s());
            writer.file(path, &outcome).context("writing to stdout")?;
            continue;
        }
        let task = AudioTask {
            label: format!("vad {}", path.display()),
            model: args.model.clone(),
            input: path.clone(),
            params: TaskParams::Vad(params.clone()),
        };
        match session.orchestrator.process_task(&task) {
            Ok(TaskOutput::Segments(outcome)) => {
                if let (Some(run), Some(job)) = (run.as_mut(), &job)
                    && let Err(e) = save_record(run, job, &config, &outcome)
                {
                    // The result is still printed; only resuming (or merging) it is lost.
                    failed.insert(path.clone());
                    eprintln!(
                        "masp: {}: not kept in the run directory: {e:#}",
                        path.display()
                    );
                }
                n_ok += 1;
                audio_s += outcome.duration_s();
                bar.file_done(outcome.duration_s());
                writer.file(path, &outcome).context("writing to stdout")?;
            }
            Ok(_) => anyhow::bail!("model {} is not a VAD model", args.model),
            Err(err) => {
                n_failed += 1;
                failed.insert(path.clone());
                bar.file_done(0.0);
                // One line, naming the file and the reason; the batch goes on.
                eprintln!("masp: {}: {}", path.display(), crate::one_line(&err));
            }
        }
    }
    bar.finish();
    writer.end().context("writing to stdout")?;
    drop(writer);
    if let Some(shard_run) = shard_run {
        shard_run.finish(&failed)?;
    }
    if n_resumed > 0
        && let Some(dir) = &args.run_dir
    {
        eprintln!(
            "masp vad: resumed {n_resumed} file(s) from {}",
            dir.display()
        );
    }
    let peak = session.peak_text();
    let report = session.finish()?;
    if args.common.stats {
        let wall_s = started.elapsed().as_secs_f64();
        let speed = if wall_s > 0.0 { audio_s / wall_s } else { 0.0 };
        let _ = writeln!(
            std::io::stderr().lock(),
            "masp vad: {n_ok} file(s) ok, {n_failed} failed; {audio_s:.1} s of audio in {wall_s:.2} s \
             ({speed:.0}× real time); {peak}"
        );
    }
    if let Some(dir) = report {
        eprintln!("masp: report in {}", dir.display());
    }
    Ok(Outcome::from_failures(n_failed))
}
