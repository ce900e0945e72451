//! `--shard K/N` and `masp merge`: flags, then `masp-run`'s shards (the partition and the
//! manifests are documented in `masp_run::shard`).

use std::path::PathBuf;

use clap::Args;
pub use masp_run::shard::{Shard, ShardRun, select};

/// Flags selecting a shard of the inputs.
#[derive(Debug, Clone, Default, Args)]
pub struct ShardArgs {
    /// Process only shard K of N (K from 0 to N-1) of the inputs, e.g. `--shard 2/8`.
    #[arg(
        long,
        global = true,
        value_name = "K/N",
        conflicts_with = "shard_from_env"
    )]
    pub shard: Option<Shard>,
    /// Take the shard from the scheduler: SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) of
    /// SLURM_ARRAY_TASK_COUNT, or Kubernetes' JOB_COMPLETION_INDEX of `--shard-count`.
    #[arg(long, global = true)]
    pub shard_from_env: bool,
    /// The number of shards, when the environment does not say (Kubernetes Indexed Jobs).
    #[arg(long, global = true, value_name = "N")]
    pub shard_count: Option<usize>,
}

impl ShardArgs {
    /// The shard the flags (or the environment) select, if any.
    ///
    /// # Errors
    /// Malformed or missing environment variables, a missing `--shard-count`.
    pub fn resolve(&self) -> anyhow::Result<Option<Shard>> {
        if let Some(shard) = self.shard {
            if self.shard_count.is_some_and(|n| n != shard.count) {
                anyhow::bail!("--shard {shard} and --shard-count disagree");
            }
            return Ok(Some(shard));
        }
        if !self.shard_from_env {
            if self.shard_count.is_some() {
                anyhow::bail!("--shard-count needs --shard-from-env");
            }
            return Ok(None);
        }
        let env = |name: &str| std::env::var(name).ok();
        Ok(Some(masp_run::shard::shard_from_env(
            self.shard_count,
            &env,
        )?))
    }
}

/// Flags of `masp merge`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  masp merge --out merged/ runs/shard-*\n\n\
Exit status: 0 when every input of the job is done, 2 when some are missing or failed (they \
are listed with the shard to rerun), 1 when the shards cannot be merged (different \
configurations or inputs).")]
pub struct MergeArgs {
    /// The merged run directory (created; must not be one of the shards).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The shards' run directories.
    #[arg(required = true, value_name = "RUN_DIR")]
    shards: Vec<PathBuf>,
}

/// `masp merge`: check the shards and combine them into one run directory.
pub fn merge(args: &MergeArgs) -> anyhow::Result<crate::Outcome> {
    let summary = masp_run::shard::merge(&args.shards, &args.out)?;
    let count = summary.n_shards;
    eprintln!(
        "masp merge: {} of {} input(s) done across {} of {count} shard(s) into {}",
        summary.done,
        summary.n_inputs,
        summary.shards.len(),
        args.out.display()
    );
    for m in &summary.missing {
        eprintln!(
            "masp merge: {} {} — rerun shard {}/{count}",
            m.path.display(),
            m.status,
            m.shard
        );
    }
    if !summary.absent.is_empty() {
        let list: Vec<String> = summary
            .absent
            .iter()
            .map(|k| format!("{k}/{count}"))
            .collect();
        eprintln!(
            "masp merge: {} input(s) in shard(s) not given: {} — run or pass them",
            summary.n_inputs.saturating_sub(summary.n_listed),
            list.join(", ")
        );
    }
    Ok(if summary.is_complete() {
        crate::Outcome::AllSucceeded
    } else {
        crate::Outcome::SomeFailed
    })
}
