//! `masp vad`: speech segments of each input file.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use masp_orchestrator::AudioTask;
use masp_orchestrator::task::{TaskOutput, TaskParams, VadParams};
use masp_run::format::{SegmentFormat, SegmentWriter};
use masp_run::job::Job;
use masp_run::stages::{keep_vad, resumed_vad};

use crate::Outcome;
use crate::context::Session;
use crate::flags::Common;

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
    format: Option<SegmentFormat>,
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
    let format = settings.format("vad", args.format, SegmentFormat::Json)?;
    if format == SegmentFormat::Audacity && args.files.len() > 1 {
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
    if args.run_dir.is_some() {
        // Results are kept by name: over every input (all shards'), before any work.
        masp_run::name::result_names(&args.files)?;
    }
    let mut run = args
        .run_dir
        .as_deref()
        .map(crate::diarize::open_run_dir)
        .transpose()?;
    let mut session = Session::start_with(&args.common, settings)?;
    let config = masp_run::config::sha256_json(&serde_json::json!({
        "stage": "vad",
        "model": args.model,
        "model_sha256": masp_run::config::model_identity(session.orchestrator.registry(), &args.model),
        "params": params,
    }));
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
            && let Some(outcome) = resumed_vad(run, job, &config)
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
                    && let Err(e) = keep_vad(run, job, &config, &outcome)
                {
                    // The result is still printed; only resuming (or merging) it is lost.
                    failed.insert(path.clone());
                    eprintln!(
                        "masp: {}: not kept in the run directory: {e}",
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
