//! The `masp` binary: parse flags, call [`run`], map the outcome to an exit code. Nothing else
//! decides exit codes.

mod completions;
mod config;
mod config_cmd;
mod context;
mod diarize;
mod doctor;
mod embed;
mod flags;
mod logs;
mod model_files;
mod models;
mod pipeline;
mod progress;
mod report;
mod setting;
mod shard;
mod vad;
mod version;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit code when every input succeeded.
const EXIT_OK: u8 = 0;
/// Exit code for usage and configuration errors: nothing was processed.
const EXIT_USAGE: u8 = 1;
/// Exit code when at least one input failed (the others were still processed).
const EXIT_SOME_FAILED: u8 = 2;
/// `masp worker` only: the pipe to its orchestrator broke or carried garbage. Not 1 or 2, so a
/// worker's exit is never read as a batch outcome.
const EXIT_WORKER_PROTOCOL: u8 = 3;
/// Interrupted by SIGINT (128 + 2, the shell's convention). Finished work is already in the
/// journal; the same command resumes.
const EXIT_INTERRUPTED: i32 = 130;
/// Terminated by SIGTERM (128 + 15), as [`EXIT_INTERRUPTED`].
const EXIT_TERMINATED: i32 = 143;

/// On SIGINT or SIGTERM: kill the worker processes (and what they started), say so, exit.
/// Only async-signal-safe calls: atomics, `kill(2)`, `write(2)`, `_exit(2)`.
extern "C" fn on_stop_signal(signal: libc::c_int) {
    masp_orchestrator::worker::kill_all_workers();
    let (code, message): (i32, &[u8]) = if signal == libc::SIGINT {
        (
            EXIT_INTERRUPTED,
            b"masp: interrupted (SIGINT); finished work is journaled, the same command resumes\n",
        )
    } else {
        (
            EXIT_TERMINATED,
            b"masp: terminated (SIGTERM); finished work is journaled, the same command resumes\n",
        )
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(code);
    }
}

/// Route SIGINT and SIGTERM to [`on_stop_signal`]. Without it the process would die at once,
/// which is as safe for the journal, but leaves whatever a worker started running.
fn install_stop_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with an empty mask and our handler is a valid argument;
        // the handler only makes async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(signal, &raw const action, std::ptr::null_mut());
        }
    }
}

/// masp — run audio ONNX models one at a time under a hard memory budget.
#[derive(Debug, Parser)]
#[command(name = "masp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect speech with silero VAD and print the segments.
    Vad(vad::VadArgs),
    /// Run a pipeline of models over many files, loading each model as few times as possible.
    Run(pipeline::PipelineArgs),
    /// Print the plan `masp run` would follow: order, loads, expected peak memory.
    Plan(pipeline::PipelineArgs),
    /// List, verify, optimise or calibrate models.
    Models(models::ModelsArgs),
    /// Who spoke when: VAD, speaker embeddings over the speech, clustering into speakers.
    Diarize(diarize::DiarizeArgs),
    /// One speaker embedding per speech segment (or per window) of each file.
    Embed(embed::EmbedArgs),
    /// Check this machine: ONNX Runtime, model files, budget, allocator trim, disk, cgroup.
    Doctor(doctor::DoctorArgs),
    /// Show the effective configuration (`masp config show`) and where each value came from.
    Config(config_cmd::ConfigArgs),
    /// Write one self-contained HTML page from a `--report DIR`: timeline, models, failures.
    Report(report::ReportArgs),
    /// Check the run directories of a sharded job and combine them into one (`--shard K/N`).
    Merge(shard::MergeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Serve one model for an orchestrator over stdin/stdout (started by `--isolation
    /// process`; not for direct use).
    #[command(hide = true)]
    Worker,
}

/// What a command reports back to `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every input succeeded.
    AllSucceeded,
    /// At least one input failed; each failure was already reported on stderr.
    SomeFailed,
}

impl Outcome {
    /// The outcome of a batch in which `n_failed` inputs failed.
    pub fn from_failures(n_failed: usize) -> Self {
        if n_failed == 0 {
            Outcome::AllSucceeded
        } else {
            Outcome::SomeFailed
        }
    }
}

pub use masp_run::stages::one_line;

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Vad(args) => vad::run(&args),
        Command::Run(args) => pipeline::run(&args),
        Command::Plan(args) => pipeline::plan(&args),
        Command::Models(args) => models::run(&args),
        Command::Diarize(args) => diarize::run(&args),
        Command::Embed(args) => embed::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Merge(args) => shard::merge(&args),
        Command::Report(args) => report::run(&args),
        Command::Config(args) => config_cmd::run(&args),
        Command::Completions(args) => completions::run(&args, Cli::command()),
        // Handled in `main`: its exit code is the protocol's.
        Command::Worker => Ok(Outcome::AllSucceeded),
    }
}

fn main() -> ExitCode {
    // `--version` names the ONNX Runtime and the asset cache: computed here, as clap's derive
    // only takes constant strings. `-V` stays the short `masp X.Y.Z`.
    let parsed = Cli::command()
        .long_version(version::long_version())
        .try_get_matches()
        .and_then(|mut matches| Cli::from_arg_matches_mut(&mut matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are not errors.
            let code = if err.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if matches!(cli.command, Command::Worker) {
        // A worker keeps the default dispositions: its orchestrator ends it.
        return match masp_orchestrator::worker::serve(&masp_models::registry()) {
            masp_orchestrator::worker::ServeOutcome::Finished => ExitCode::from(EXIT_OK),
            _ => ExitCode::from(EXIT_WORKER_PROTOCOL),
        };
    }
    install_stop_handlers();
    match run(cli) {
        Ok(Outcome::AllSucceeded) => ExitCode::from(EXIT_OK),
        Ok(Outcome::SomeFailed) => ExitCode::from(EXIT_SOME_FAILED),
        Err(err) => {
            eprintln!("masp: error: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
