//! Sharded runs: shard K of N keeps a deterministic part of the inputs, and leaves a
//! `shard.json` in its run directory saying which inputs were its own and how each ended;
//! [`merge`] checks a set of shard run directories and combines them (docs/SCALING.md).
//!
//! The partition hashes each input path as given (sha256, first 8 bytes, modulo N): it does not
//! depend on the order of the list or on which machine runs the shard, and needs no file to be
//! read. Every shard must be given the same list of paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::journal::{JOURNAL_FILE, TEMP_SUFFIX};
use crate::{Error, Result};

/// The file a shard leaves in its run directory.
pub const SHARD_FILE: &str = "shard.json";
/// The summary [`merge`] writes.
pub const MERGE_FILE: &str = "merge.json";
/// The most shards a job may have: far more than any cluster runs, small enough that a
/// per-shard table is never a large allocation.
pub const MAX_SHARDS: usize = 1 << 20;
/// The largest `shard.json` read, in bytes (a shard of a million inputs is ~100 MB; more is
/// not a manifest masp wrote).
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

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
        if count > MAX_SHARDS {
            return Err(format!(
                "a shard count of {count} is over the limit of {MAX_SHARDS}"
            ));
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
    /// The manifest cannot be written; [`Error::InUse`] when another process runs in `dir`.
    pub fn start(
        dir: &Path,
        command: &str,
        config_sha256: &str,
        shard: Shard,
        all_files: &[PathBuf],
    ) -> Result<Self> {
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

    fn save(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, &e))?;
        // Another masp running in the directory must not have its manifest replaced: fail as
        // its journal would. This process may hold the lock already (its run is open).
        let _lock = crate::lock::RunLock::acquire_unless_held_here(&self.dir)?;
        let path = self.dir.join(SHARD_FILE);
        let bytes = serde_json::to_vec_pretty(&self.manifest).map_err(|e| Error::Output {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::write_file(&path, &bytes)
    }

    /// Record how every input ended (`failed` holds the inputs that failed; the others are
    /// done) and save the manifest.
    ///
    /// # Errors
    /// The manifest cannot be written; [`Error::InUse`] when another process runs in `dir`.
    pub fn finish(mut self, failed: &BTreeSet<PathBuf>) -> Result<()> {
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

/// Every file under `dir` (relative paths), except the journal, shard manifests, merge
/// summaries and temporaries.
fn result_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in std::fs::read_dir(&here).map_err(|e| Error::io(&here, &e))? {
            let entry = entry.map_err(|e| Error::io(&here, &e))?;
            let name = entry.file_name();
            let rel_path = rel.join(&name);
            // Not followed: a link in a shard is not a result of it.
            let kind = entry
                .file_type()
                .map_err(|e| Error::io(here.join(&name), &e))?;
            if kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                stack.push(rel_path);
                continue;
            }
            let n = name.to_string_lossy();
            let top = rel.as_os_str().is_empty();
            if (top
                && (n == JOURNAL_FILE
                    || n == SHARD_FILE
                    || n == MERGE_FILE
                    || n == crate::lock::LOCK_FILE))
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

/// Largest result file compared or copied by [`merge`]: 4 GiB, above any result masp writes
/// (a day of frame-level `.npy` output); a larger file is refused, not read into memory.
pub const MAX_RESULT_BYTES: u64 = 4 << 30;

/// The content of a file of a shard's run directory: a regular file, not a link (never
/// followed out of the shard), at most [`MAX_RESULT_BYTES`].
fn read_result(path: &Path) -> Result<Vec<u8>> {
    masp_model_registry::file::read_regular(
        path,
        masp_model_registry::file::Links::Refuse,
        MAX_RESULT_BYTES,
    )
    .map_err(|e| Error::io(path, &e))
}

/// Hard-link `from` to `to`, or copy it where links are not possible.
fn place(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, &e))?;
    }
    if std::fs::hard_link(from, to).is_err() {
        let bytes = read_result(from)?;
        crate::write_file(to, &bytes)?;
    }
    Ok(())
}

/// What [`merge`] found, as `merge.json` records it.
#[derive(Debug, Clone, Serialize)]
pub struct MergeSummary {
    /// The shards' command.
    pub command: String,
    /// Their configuration.
    pub config_sha256: String,
    /// Shards of the job.
    pub n_shards: usize,
    /// Inputs of the job.
    pub n_inputs: usize,
    /// Inputs done.
    pub done: usize,
    /// Each shard given.
    pub shards: Vec<MergedShard>,
    /// Inputs not done, with the shard to rerun.
    pub missing: Vec<Missing>,
    /// Shards of the job that were not given.
    #[serde(skip)]
    pub absent: Vec<usize>,
    /// Inputs listed by the shards given.
    #[serde(skip)]
    pub n_listed: usize,
}

/// One merged shard.
#[derive(Debug, Clone, Serialize)]
pub struct MergedShard {
    /// Its index.
    pub index: usize,
    /// Its run directory.
    pub dir: PathBuf,
    /// Inputs done.
    pub done: usize,
    /// Inputs failed.
    pub failed: usize,
    /// Inputs not finished.
    pub pending: usize,
}

/// An input of the job that is not done.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    /// The input.
    pub path: PathBuf,
    /// Its shard.
    pub shard: usize,
    /// `failed` or `not finished`.
    pub status: String,
}

impl MergeSummary {
    /// Whether every input of the job is done.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.absent.is_empty()
    }
}

fn read_manifest(dir: &Path) -> Result<ShardManifest> {
    let path = dir.join(SHARD_FILE);
    // Only an absent file means "not a shard"; anything else there (a FIFO, a directory) is
    // named as what it is by `read_bounded`.
    if path.symlink_metadata().is_err() {
        return Err(Error::Malformed {
            path: dir.to_path_buf(),
            reason: format!(
                "not a shard's run directory (no {SHARD_FILE}; was it run with --shard?)"
            ),
        });
    }
    let text = crate::run_dir::read_bounded(&path, MAX_MANIFEST_BYTES)?;
    let manifest: ShardManifest = serde_json::from_str(&text).map_err(|e| Error::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // Every number and hash is taken from a file: check them where they are parsed, so the
    // merge below may index, count and print them without a second thought.
    let malformed = |reason: String| Error::Malformed {
        path: path.clone(),
        reason,
    };
    Shard::new(manifest.shard.index, manifest.shard.count).map_err(malformed)?;
    for (field, value) in [
        ("config_sha256", &manifest.config_sha256),
        ("inputs_sha256", &manifest.inputs_sha256),
    ] {
        if !masp_model_registry::assets::is_sha256_hex(value) {
            return Err(malformed(format!(
                "{field} is not a sha256 ({} lowercase hex digits): {:?}",
                masp_model_registry::assets::SHA256_HEX_LEN,
                value.chars().take(80).collect::<String>()
            )));
        }
    }
    if manifest.inputs.len() > manifest.n_inputs_total {
        return Err(malformed(format!(
            "lists {} inputs of a job of {} (n_inputs_total)",
            manifest.inputs.len(),
            manifest.n_inputs_total
        )));
    }
    Ok(manifest)
}

fn refuse(reason: String) -> Error {
    Error::Refused { reason }
}

/// Check the shards' run directories `shards` and combine them into `out`: results (identical
/// files may repeat; different ones under one name may not) and journals, then `merge.json`.
///
/// # Errors
/// [`Error::Refused`] when they are not shards of one job (different commands, configurations,
/// counts or input lists; a shard given twice; an input in the wrong shard), or when two
/// shards hold different results under one name; I/O errors naming the file.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<MergeSummary> {
    let mut manifests = Vec::new();
    for dir in shards {
        if std::path::absolute(dir).ok() == std::path::absolute(out).ok() {
            return Err(refuse(format!(
                "--out {} is one of the shards",
                out.display()
            )));
        }
        manifests.push((dir.clone(), read_manifest(dir)?));
    }
    let Some((first_dir, first)) = manifests.first() else {
        return Err(refuse("no shard given".into()));
    };
    for (dir, m) in &manifests[1..] {
        let differs = |what: &str, a: &str, b: &str| {
            refuse(format!(
                "{} and {} differ in {what} ({a} vs {b}); shards of one job must run the same \
                 command with the same models, parameters and input list",
                first_dir.display(),
                dir.display()
            ))
        };
        let short = |s: &str| s.chars().take(12).collect::<String>();
        if m.command != first.command {
            return Err(differs("command", &first.command, &m.command));
        }
        if m.config_sha256 != first.config_sha256 {
            return Err(differs(
                "configuration",
                &short(&first.config_sha256),
                &short(&m.config_sha256),
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
            return Err(refuse(format!(
                "{} and {} are both shard {}",
                other.display(),
                dir.display(),
                m.shard
            )));
        }
    }
    // Every input exactly once, in the shard the partition gives it.
    let mut seen: BTreeMap<&Path, usize> = BTreeMap::new();
    for (dir, m) in &manifests {
        for input in &m.inputs {
            let owner = shard_of(&input.path, count);
            if owner != m.shard.index {
                return Err(refuse(format!(
                    "{} lists {} in shard {}, but it belongs to shard {owner}",
                    dir.display(),
                    input.path.display(),
                    m.shard.index,
                )));
            }
            if let Some(k) = seen.insert(&input.path, m.shard.index) {
                return Err(refuse(format!(
                    "{} is in shards {k} and {}",
                    input.path.display(),
                    m.shard.index
                )));
            }
        }
    }

    // Combine: results (identical files may repeat; different ones may not), then journals.
    // `out` is written like a run directory, so it is locked like one.
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, &e))?;
    let _lock = crate::lock::RunLock::acquire(out)?;
    let mut placed: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut journal_lines = Vec::new();
    for (dir, _) in &manifests {
        for rel in result_files(dir)? {
            let from = dir.join(&rel);
            let to = out.join(&rel);
            if let Some(earlier) = placed.get(&rel) {
                if read_result(earlier)? != read_result(&from)? {
                    return Err(refuse(format!(
                        "{} and {} are different results under the same name",
                        earlier.display(),
                        from.display()
                    )));
                }
                continue;
            }
            if to.exists() {
                std::fs::remove_file(&to).map_err(|e| Error::io(&to, &e))?;
            }
            place(&from, &to)?;
            placed.insert(rel, from);
        }
        let journal = dir.join(JOURNAL_FILE);
        match read_result(&journal) {
            Ok(bytes) => {
                // Complete lines only: a killed shard may have left a torn last line.
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                journal_lines.extend_from_slice(&bytes[..complete]);
            }
            // A shard that never finished a task has no journal.
            Err(_) if journal.symlink_metadata().is_err() => {}
            Err(e) => return Err(e),
        }
    }
    crate::write_file(&out.join(JOURNAL_FILE), &journal_lines)?;

    let mut merged = Vec::new();
    let mut missing = Vec::new();
    for (dir, m) in &manifests {
        let count_of = |s: Status| m.inputs.iter().filter(|i| i.status == s).count();
        merged.push(MergedShard {
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
    let summary = MergeSummary {
        command: first.command.clone(),
        config_sha256: first.config_sha256.clone(),
        n_shards: count,
        n_inputs: first.n_inputs_total,
        done: merged.iter().map(|s| s.done).sum(),
        shards: merged,
        missing,
        absent: (0..count).filter(|k| !by_index.contains_key(k)).collect(),
        n_listed: manifests.iter().map(|(_, m)| m.inputs.len()).sum(),
    };
    let bytes = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Output {
        path: out.join(MERGE_FILE),
        reason: e.to_string(),
    })?;
    crate::write_file(&out.join(MERGE_FILE), &bytes)?;
    Ok(summary)
}

/// The shard a scheduler's environment names: SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN)
/// of SLURM_ARRAY_TASK_COUNT (or `count`), else Kubernetes' JOB_COMPLETION_INDEX of `count`.
/// `env` reads a variable.
///
/// # Errors
/// [`Error::InvalidParameter`] for a variable that is not a number, a missing count, an index
/// below the minimum or out of range, or neither scheduler's variables.
pub fn shard_from_env(count: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    let invalid = |reason: String| Error::InvalidParameter {
        name: "shard",
        reason,
    };
    let number = |name: &str| -> Result<Option<usize>> {
        env(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| invalid(format!("{name}={v:?} is not a number")))
            })
            .transpose()
    };
    let (index, count, source) = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let count = match (count, number("SLURM_ARRAY_TASK_COUNT")?) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(invalid(
                    "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard-count"
                        .into(),
                ));
            }
        };
        let index = id.checked_sub(min).ok_or_else(|| {
            invalid(format!(
                "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
            ))
        })?;
        (index, count, "SLURM_ARRAY_TASK_ID")
    } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = count.ok_or_else(|| {
            invalid(
                "JOB_COMPLETION_INDEX is set: give the Job's completions as --shard-count".into(),
            )
        })?;
        (index, count, "JOB_COMPLETION_INDEX")
    } else {
        return Err(invalid(
            "--shard-from-env: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set".into(),
        ));
    };
    Shard::new(index, count).map_err(|e| invalid(format!("{source}: {e}")))
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
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            shard_from_env(None, &slurm).unwrap(),
            Shard { index: 2, count: 4 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert!(shard_from_env(None, &k8s).is_err(), "needs --shard-count");
        assert_eq!(
            shard_from_env(Some(3), &k8s).unwrap(),
            Shard { index: 1, count: 3 }
        );
        let out_of_range = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert!(shard_from_env(Some(3), &out_of_range).is_err());
        assert!(shard_from_env(None, &env(&[])).is_err());
        let garbage = env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        assert!(shard_from_env(None, &garbage).is_err());
        let huge = env(&[
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "1099511627776"),
        ]);
        assert!(shard_from_env(None, &huge).is_err());
    }
}
