//! `masp diarize`: who spoke when — flags, then `masp-run`'s VAD and embedding stages and its
//! clustering, printed as turns.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use masp_run::diarize::{Clustering, SpeakerOptions, WindowConfig};
use masp_run::format::{TurnFormat, TurnWriter};
use masp_run::job::{Job, failed_inputs};
use masp_run::run_dir::RunDir;
use masp_run::stages::{self, Ranges, StageKeys, Stages};

use crate::Outcome;
use crate::context::Session;
use crate::flags::Common;
use crate::progress::Shown;

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
    format: Option<TurnFormat>,
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
    /// The stages these flags describe, checked.
    pub fn stages(&self) -> anyhow::Result<Stages> {
        let windows = WindowConfig {
            window_s: self.window_s,
            hop_s: self.hop_s,
        };
        windows.validate()?;
        Ok(Stages {
            vad_model: self.vad_model.clone(),
            embed_model: self.embed_model.clone(),
            windows,
        })
    }
}

/// This run's jobs — the shard's inputs, or all — and, for a shard, its manifest started in
/// `run_dir` (its configuration is both stages').
pub fn shard_jobs(
    command: &str,
    run_dir: &std::path::Path,
    keys: &StageKeys,
    shard: Option<crate::shard::Shard>,
    files: &[PathBuf],
) -> anyhow::Result<(Option<crate::shard::ShardRun>, Vec<Job>)> {
    let shard_run = match shard {
        Some(s) => Some(crate::shard::ShardRun::start(
            run_dir,
            command,
            &masp_run::config::sha256_json(&serde_json::json!([keys.vad, keys.embed])),
            s,
            files,
        )?),
        None => None,
    };
    // Over every input, not only this shard's: two shards must not write one name either.
    masp_run::name::result_names(files)?;
    Ok((shard_run, Job::all(&crate::shard::select(shard, files))?))
}

/// Say what was resumed from `run`, if anything, and what an interrupted run left.
pub fn report_run_dir(command: &str, run: &RunDir) {
    let r = run.resumed;
    if r.vad + r.embed > 0 {
        eprintln!(
            "masp {command}: resumed {} VAD and {} embedding result(s) from {}",
            r.vad,
            r.embed,
            run.path().display()
        );
    }
}

/// Open the run directory, saying when an interrupted run left partial files there.
pub fn open_run_dir(path: &std::path::Path) -> anyhow::Result<RunDir> {
    let run = RunDir::open(path)?;
    if run.leftovers() > 0 {
        eprintln!(
            "masp: removed {} partial file(s) left in {} by an interrupted run",
            run.leftovers(),
            path.display()
        );
    }
    Ok(run)
}

pub fn run(args: &DiarizeArgs) -> anyhow::Result<Outcome> {
    let clustering = match (args.speakers, args.threshold) {
        (Some(n), _) => Clustering::Speakers(n),
        (None, Some(t)) => Clustering::Threshold(t),
        (None, None) => Clustering::default(),
    };
    let options = SpeakerOptions {
        clustering,
        smoothing_s: args.smoothing_s,
        centre: !args.no_centre,
    };
    // Every option before any work: a bad one is a usage error, not a failure of each file
    // after its VAD and embeddings.
    options.validate()?;
    let stages = args.stages.stages()?;
    let settings = crate::config::Settings::resolve(&args.common)?;
    let format = settings.format("diarize", args.format, TurnFormat::Rttm)?;
    if format == TurnFormat::Audacity && args.files.len() > 1 {
        anyhow::bail!(
            "--format audacity writes one label track, for one audio file: give one input \
             (or run once per file)"
        );
    }
    let started = Instant::now();
    let shard = args.common.shard.resolve()?;
    let run_dir = crate::flags::run_dir_for(args.run_dir.as_deref(), "masp-run/diarize", shard);
    let mut run = open_run_dir(&run_dir)?;
    let mut session = Session::start_with(&args.common, settings)?;
    let keys = StageKeys::new(session.orchestrator.registry(), &stages, Ranges::Windows);
    let (shard_run, mut jobs) = shard_jobs("diarize", &run_dir, &keys, shard, &args.files)?;

    let mut shown = Shown::new(&session.progress);
    if session.settings.max_resident.value >= 2 {
        stages::interleaved(
            &mut session.orchestrator,
            &mut jobs,
            &mut run,
            &stages,
            &keys,
            &mut shown,
        )?;
    } else {
        stages::vad_stage(
            &mut session.orchestrator,
            &mut jobs,
            &mut run,
            &stages.vad_model,
            &keys.vad,
            &mut shown,
        )
        .context("the VAD batch")?;
        stages::embed_stage(
            &mut session.orchestrator,
            &mut jobs,
            &mut run,
            &stages,
            Ranges::Windows,
            &keys.embed,
            &mut |_, _| Ok(()),
            &mut shown,
        )
        .context("the embedding batch")?;
    }
    report_run_dir("diarize", &run);

    let mut writer = TurnWriter::new(std::io::stdout().lock(), format);
    writer.begin().context("writing to stdout")?;
    let (mut n_written, mut audio_s) = (0usize, 0.0f64);
    for job in jobs.iter_mut().filter(|j| !j.failed) {
        match stages::speaker_turns(&run, job, &options, session.orchestrator.budget()) {
            Ok((outcome, turns)) => {
                audio_s += outcome.duration_s();
                writer
                    .file(&job.path, outcome.duration_s(), &turns)
                    .context("writing to stdout")?;
                n_written += 1;
            }
            Err(e) => {
                job.failed = true;
                eprintln!("masp: {}: {}", job.path.display(), crate::one_line(&e));
            }
        }
    }
    writer.end().context("writing to stdout")?;
    drop(writer);
    let n_failed = jobs.iter().filter(|j| j.failed).count();
    if let Some(shard_run) = shard_run {
        shard_run.finish(&failed_inputs(&jobs))?;
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
