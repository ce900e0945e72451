//! Sharded batch runs: `--shard K/N` keeps the inputs of shard K out of N, and leaves a
//! `shard.json` in the run directory saying which inputs were this shard's and how each ended;
//! `masp merge` checks a set of shard run directories and combines them (see docs/SCALING.md).
//!
//! The partition hashes each input path as given on the command line (sha256, first 8 bytes,
//! modulo N): it does not depend on the order of the list or on which machine runs the shard,
//! and needs no file to be read. Every shard must be given the same list of paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use masp_run::journal::{self, JOURNAL_FILE, TEMP_SUFFIX};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file a shard leaves in its run directory.
pub const SHARD_FILE: &str = "shard.json";
/// The summary `masp merge` writes.
pub const MERGE_FILE: &str = "merge.json";

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

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0 ..= count - 1.
    pub index: usize,
    /// At least 1.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not K/N, e.g. 0/4"))?;
        let index: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("shard index {k:?} is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count {n:?} is not a number"))?;
        Shard::new(index, count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Shard `index` of `count`, checked.
    ///
    /// # Errors
    /// A message when `count` is 0 or `index` is not below it.
    pub fn new(index: usize, count: usize) -> Result<Self, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index} of {count} does not exist: shards are numbered 0 to {}",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether `path` (as given) belongs to this shard.
    pub fn owns(&self, path: &Path) -> bool {
        shard_of(path, self.count) == self.index
    }
}

/// The shard of `count` that `path`, as given, belongs to.
pub fn shard_of(path: &Path, count: usize) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let digest = Sha256::digest(path.as_os_str().as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(head) % count.max(1) as u64) as usize
}

impl ShardArgs {
    /// The shard the flags (or the environment) select, if any.
    ///
    /// # Errors
    /// Malformed or missing environment variables, a missing `--shard-count`.
    pub fn resolve(&self) -> anyhow::Result<Option<Shard>> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Shard>> {
        if let Some(shard) = self.shard {
            if self.shard_count.is_some_and(|n| n != shard.count) {
                bail!("--shard {shard} and --shard-count disagree");
            }
            return Ok(Some(shard));
        }
        if !self.shard_from_env {
            if self.shard_count.is_some() {
                bail!("--shard-count needs --shard-from-env");
            }
            return Ok(None);
        }
        let number = |name: &str| -> anyhow::Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{name}={v:?} is not a number"))
                })
                .transpose()
        };
        let (index, count, source) = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = match (self.shard_count, number("SLURM_ARRAY_TASK_COUNT")?) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => bail!(
                    "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard-count"
                ),
            };
            let index = id.checked_sub(min).with_context(|| {
                format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
            })?;
            (index, count, "SLURM_ARRAY_TASK_ID")
        } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = self.shard_count.context(
                "JOB_COMPLETION_INDEX is set: give the Job's completions as --shard-count",
            )?;
            (index, count, "JOB_COMPLETION_INDEX")
        } else {
            bail!("--shard-from-env: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set");
        };
        Shard::new(index, count)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{source}: {e}"))
    }
}

/// How one input of a shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not finished: the shard has not run to the end (or was killed).
    Pending,
    /// Every result of the input is in the run directory.
    Done,
    /// It failed (the reason was printed; the shard went on).
    Failed,
}

/// One input of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInput {
    /// As given on the command line.
    pub path: PathBuf,
    /// How it ended.
    pub status: Status,
}

/// What a shard leaves in its run directory (`shard.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// The command: `run`, `vad`, `diarize`, `embed`.
    pub command: String,
    /// sha256 of what determines the results besides the inputs (models, parameters).
    pub config_sha256: String,
    /// Which shard.
    pub shard: Shard,
    /// sha256 of the whole input list (sorted), the same for every shard of one job.
    pub inputs_sha256: String,
    /// Inputs of the whole job.
    pub n_inputs_total: usize,
    /// This shard's inputs and how each ended.
    pub inputs: Vec<ShardInput>,
}

/// A running shard: its inputs and where its manifest goes.
#[derive(Debug)]
pub struct ShardRun {
    dir: PathBuf,
    manifest: ShardManifest,
}

/// sha256 of the sorted input list, one path per line.
fn list_sha(files: &[PathBuf]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for f in sorted {
        hasher.update(f.as_os_str().as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Keep `shard`'s inputs; with no shard, all of them.
pub fn select(shard: Option<Shard>, files: &[PathBuf]) -> Vec<PathBuf> {
    match shard {
        Some(s) => files.iter().filter(|f| s.owns(f)).cloned().collect(),
        None => files.to_vec(),
    }
}

impl ShardRun {
    /// Start shard `shard` of a `command` job over `all_files` in `dir`: write its manifest
    /// with every one of its inputs pending.
    ///
    /// # Errors
    /// The manifest cannot be written.
    pub fn start(
        dir: &Path,
        command: &str,
        config_sha256: &str,
        shard: Shard,
        all_files: &[PathBuf],
    ) -> anyhow::Result<Self> {
        let inputs = select(Some(shard), all_files)
            .into_iter()
            .map(|path| ShardInput {
                path,
                status: Status::Pending,
            })
            .collect();
        let run = Self {
            dir: dir.to_path_buf(),
            manifest: ShardManifest {
                command: command.to_owned(),
                config_sha256: config_sha256.to_owned(),
                shard,
                inputs_sha256: list_sha(all_files),
                n_inputs_total: all_files.len(),
                inputs,
            },
        };
        run.save()?;
        Ok(run)
    }

    fn save(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(SHARD_FILE);
        journal::write_atomic(&path, &serde_json::to_vec_pretty(&self.manifest)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Record how every input ended (`failed` holds the inputs that failed; the others are
    /// done) and save the manifest.
    ///
    /// # Errors
    /// The manifest cannot be written.
    pub fn finish(mut self, failed: &BTreeSet<PathBuf>) -> anyhow::Result<()> {
        for input in &mut self.manifest.inputs {
            input.status = if failed.contains(&input.path) {
                Status::Failed
            } else {
                Status::Done
            };
        }
        self.save()
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

fn read_manifest(dir: &Path) -> anyhow::Result<ShardManifest> {
    let path = dir.join(SHARD_FILE);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a shard's run directory (no {SHARD_FILE}; was it run with --shard?)",
            dir.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

/// Every file under `dir` (relative paths), except the journal, shard manifests, merge
/// summaries and temporaries.
fn result_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in
            std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            let rel_path = rel.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(rel_path);
                continue;
            }
            let n = name.to_string_lossy();
            let top = rel.as_os_str().is_empty();
            if (top && (n == JOURNAL_FILE || n == SHARD_FILE || n == MERGE_FILE))
                || n.ends_with(TEMP_SUFFIX)
            {
                continue;
            }
            out.push(rel_path);
        }
    }
    out.sort();
    Ok(out)
}

/// Hard-link `from` to `to`, or copy it where links are not possible.
fn place(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if std::fs::hard_link(from, to).is_err() {
        let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        journal::write_atomic(to, &bytes).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

/// What `masp merge` found.
#[derive(Debug, Serialize)]
struct MergeSummary {
    command: String,
    config_sha256: String,
    n_shards: usize,
    n_inputs: usize,
    done: usize,
    shards: Vec<MergedShard>,
    /// Inputs not done, with the shard to rerun.
    missing: Vec<Missing>,
}

#[derive(Debug, Serialize)]
struct MergedShard {
    index: usize,
    dir: PathBuf,
    done: usize,
    failed: usize,
    pending: usize,
}

#[derive(Debug, Serialize)]
struct Missing {
    path: PathBuf,
    shard: usize,
    status: String,
}

/// `masp merge`: check the shards and combine them into one run directory.
pub fn merge(args: &MergeArgs) -> anyhow::Result<crate::Outcome> {
    let mut manifests = Vec::new();
    for dir in &args.shards {
        if std::path::absolute(dir).ok() == std::path::absolute(&args.out).ok() {
            bail!("--out {} is one of the shards", args.out.display());
        }
        manifests.push((dir.clone(), read_manifest(dir)?));
    }
    let (first_dir, first) = &manifests[0];
    for (dir, m) in &manifests[1..] {
        let differs = |what: &str, a: &str, b: &str| {
            anyhow::anyhow!(
                "refusing to merge: {} and {} differ in {what} ({a} vs {b}); shards of one job \
                 must run the same command with the same models, parameters and input list",
                first_dir.display(),
                dir.display()
            )
        };
        if m.command != first.command {
            return Err(differs("command", &first.command, &m.command));
        }
        if m.config_sha256 != first.config_sha256 {
            return Err(differs(
                "configuration",
                &first.config_sha256[..12.min(first.config_sha256.len())],
                &m.config_sha256[..12.min(m.config_sha256.len())],
            ));
        }
        if m.shard.count != first.shard.count {
            return Err(differs(
                "shard count",
                &first.shard.count.to_string(),
                &m.shard.count.to_string(),
            ));
        }
        if m.inputs_sha256 != first.inputs_sha256 {
            return Err(differs(
                "input list",
                &format!("{} inputs", first.n_inputs_total),
                &format!("{} inputs", m.n_inputs_total),
            ));
        }
    }
    let count = first.shard.count;
    let mut by_index: BTreeMap<usize, &Path> = BTreeMap::new();
    for (dir, m) in &manifests {
        if let Some(other) = by_index.insert(m.shard.index, dir) {
            bail!(
                "refusing to merge: {} and {} are both shard {}",
                other.display(),
                dir.display(),
                m.shard
            );
        }
    }
    // Every input exactly once, in the shard the partition gives it.
    let mut seen: BTreeMap<&Path, usize> = BTreeMap::new();
    for (dir, m) in &manifests {
        for input in &m.inputs {
            if shard_of(&input.path, count) != m.shard.index {
                bail!(
                    "refusing to merge: {} lists {} in shard {}, but it belongs to shard {}",
                    dir.display(),
                    input.path.display(),
                    m.shard.index,
                    shard_of(&input.path, count)
                );
            }
            if let Some(k) = seen.insert(&input.path, m.shard.index) {
                bail!(
                    "refusing to merge: {} is in shards {k} and {}",
                    input.path.display(),
                    m.shard.index
                );
            }
        }
    }

    // Combine: results (identical files may repeat; different ones may not), then journals.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut placed: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut journal_lines = Vec::new();
    for (dir, _) in &manifests {
        for rel in result_files(dir)? {
            let from = dir.join(&rel);
            let to = args.out.join(&rel);
            if let Some(earlier) = placed.get(&rel) {
                if std::fs::read(earlier)? != std::fs::read(&from)? {
                    bail!(
                        "refusing to merge: {} and {} are different results under the same name",
                        earlier.display(),
                        from.display()
                    );
                }
                continue;
            }
            if to.exists() {
                std::fs::remove_file(&to).with_context(|| format!("replacing {}", to.display()))?;
            }
            place(&from, &to)?;
            placed.insert(rel, from);
        }
        let journal = dir.join(JOURNAL_FILE);
        if let Ok(bytes) = std::fs::read(&journal) {
            // Complete lines only: a killed shard may have left a torn last line.
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            journal_lines.extend_from_slice(&bytes[..complete]);
        }
    }
    journal::write_atomic(&args.out.join(JOURNAL_FILE), &journal_lines)
        .with_context(|| format!("writing {}", args.out.join(JOURNAL_FILE).display()))?;

    let mut shards = Vec::new();
    let mut missing = Vec::new();
    for (dir, m) in &manifests {
        let count_of = |s: Status| m.inputs.iter().filter(|i| i.status == s).count();
        shards.push(MergedShard {
            index: m.shard.index,
            dir: dir.clone(),
            done: count_of(Status::Done),
            failed: count_of(Status::Failed),
            pending: count_of(Status::Pending),
        });
        for input in m.inputs.iter().filter(|i| i.status != Status::Done) {
            missing.push(Missing {
                path: input.path.clone(),
                shard: m.shard.index,
                status: match input.status {
                    Status::Failed => "failed".into(),
                    _ => "not finished".into(),
                },
            });
        }
    }
    let listed: usize = manifests.iter().map(|(_, m)| m.inputs.len()).sum();
    let absent: Vec<usize> = (0..count).filter(|k| !by_index.contains_key(k)).collect();
    let done = shards.iter().map(|s| s.done).sum();
    let summary = MergeSummary {
        command: first.command.clone(),
        config_sha256: first.config_sha256.clone(),
        n_shards: count,
        n_inputs: first.n_inputs_total,
        done,
        shards,
        missing,
    };
    journal::write_atomic(
        &args.out.join(MERGE_FILE),
        &serde_json::to_vec_pretty(&summary)?,
    )?;

    eprintln!(
        "masp merge: {} of {} input(s) done across {} of {count} shard(s) into {}",
        summary.done,
        summary.n_inputs,
        manifests.len(),
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
    if !absent.is_empty() {
        let list: Vec<String> = absent.iter().map(|k| format!("{k}/{count}")).collect();
        eprintln!(
            "masp merge: {} input(s) in shard(s) not given: {} — run or pass them",
            first.n_inputs_total.saturating_sub(listed),
            list.join(", ")
        );
    }
    Ok(if summary.missing.is_empty() && absent.is_empty() {
        crate::Outcome::AllSucceeded
    } else {
        crate::Outcome::SomeFailed
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn shards_parse_and_refuse_what_does_not_exist() {
        assert_eq!(
            "2/8".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 8 }
        );
        assert!("8/8".parse::<Shard>().unwrap_err().contains("0 to 7"));
        assert!("1/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
    }

    #[test]
    fn every_input_is_in_exactly_one_shard_whatever_the_order() {
        let files: Vec<PathBuf> = (0..200).map(|i| format!("audio/f{i}.wav").into()).collect();
        let mut reversed = files.clone();
        reversed.reverse();
        for n in [1, 2, 3, 4, 7] {
            let mut all = Vec::new();
            for k in 0..n {
                let shard = Shard::new(k, n).unwrap();
                let mut a = select(Some(shard), &files);
                let mut b = select(Some(shard), &reversed);
                a.sort();
                b.sort();
                assert_eq!(a, b, "order changed shard {k}/{n}");
                all.extend(a);
            }
            all.sort();
            let mut expected = files.clone();
            expected.sort();
            assert_eq!(all, expected, "n = {n}");
        }
        // Reasonably even: 200 files over 4 shards.
        for k in 0..4 {
            let n = select(Some(Shard::new(k, 4).unwrap()), &files).len();
            assert!((25..=75).contains(&n), "shard {k}: {n}");
        }
    }

    #[test]
    fn the_environment_names_the_shard() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let from_env = ShardArgs {
            shard_from_env: true,
            ..ShardArgs::default()
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            from_env.resolve_with(&slurm).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert!(from_env.resolve_with(&k8s).is_err(), "needs --shard-count");
        let counted = ShardArgs {
            shard_count: Some(3),
            ..from_env.clone()
        };
        assert_eq!(
            counted.resolve_with(&k8s).unwrap(),
            Some(Shard { index: 1, count: 3 })
        );
        let out_of_range = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert!(counted.resolve_with(&out_of_range).is_err());
        assert!(from_env.resolve_with(&env(&[])).is_err());
        let garbage = env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        assert!(from_env.resolve_with(&garbage).is_err());
        assert_eq!(ShardArgs::default().resolve_with(&slurm).unwrap(), None);
    }
}
