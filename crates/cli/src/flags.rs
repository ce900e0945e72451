//! The flags every command that runs models shares, and where a command's run directory is.

use std::path::{Path, PathBuf};

use clap::Args;
use masp_budget::Bytes;
use masp_model_registry::manifest::Isolation;

/// Flags shared by every command that runs models.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Hard memory budget, e.g. `4GiB` or `512MiB` (default: MASP_BUDGET, else 16 GiB; never
    /// more than physical memory or the cgroup limit).
    #[arg(long, global = true, value_name = "SIZE")]
    pub budget: Option<Bytes>,
    /// Configuration and model manifest (TOML: `[defaults]`, `[[model]]`); default
    /// ./masp.toml if present.
    #[arg(
        long = "config",
        alias = "manifest",
        global = true,
        value_name = "FILE"
    )]
    pub manifest: Option<PathBuf>,
    /// Write a memory report (report.txt, report.json, timeline.svg, run.json) into DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Intra-op threads per model [default: 1; MASP_THREADS; masp.toml].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Models that may stay resident at once (1 = load one, unload it, load the next)
    /// [default: 1; MASP_MAX_RESIDENT; masp.toml].
    #[arg(long, global = true, value_name = "N")]
    pub max_resident: Option<usize>,
    /// Print a summary line (files, audio time, speed, peak memory) on stderr.
    #[arg(long, global = true)]
    pub stats: bool,
    /// Where models run: `in-process` (default, fastest) or `process` (each model in a worker
    /// process of its own, ended on unload: memory back with certainty, a hard memory cap,
    /// crashes survived). A model's manifest entry may set its own.
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_isolation)]
    pub isolation: Option<Isolation>,
    #[command(flatten)]
    pub shard: crate::shard::ShardArgs,
    /// No progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log loads, unloads and cleanups with sizes and times (-v); every task too (-vv).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The run directory of a command: `given`, else `default` — under which a shard gets a
/// directory of its own, `shard-K-of-N`.
pub fn run_dir_for(
    given: Option<&Path>,
    default: &str,
    shard: Option<crate::shard::Shard>,
) -> PathBuf {
    match (given, shard) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(s)) => Path::new(default).join(format!("shard-{}-of-{}", s.index, s.count)),
        (None, None) => PathBuf::from(default),
    }
}

/// `in-process` or `process`.
fn parse_isolation(text: &str) -> Result<Isolation, String> {
    text.parse()
}
