//! Sharded runs as a scheduler runs them: 4 shards as 4 processes, merged and compared with one
//! unsharded run; a shard killed and rerun; shards of different configurations refused.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples")
}

fn masp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_masp"))
}

/// The shard of `count` a path belongs to: what docs/SCALING.md documents (sha256 of the path
/// as given, first 8 bytes little-endian, modulo the count).
fn shard_of(path: &Path, count: u64) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let d = Sha256::digest(path.as_os_str().as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap()) % count
}

struct Job {
    dir: tempfile::TempDir,
    pipeline: PathBuf,
    files: Vec<PathBuf>,
}

/// A VAD + embedding pipeline over 8 short files (copies of the two samples under other names).
fn job() -> Job {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "[[stage]]\nmodel = \"silero-vad\"\n[[stage]]\nmodel = \"speaker-embedder\"\n",
    )
    .unwrap();
    let audio = dir.path().join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    let mut files = Vec::new();
    for i in 0..8 {
        let (source, ext) = if i % 2 == 0 {
            ("two_voices.wav", "wav")
        } else {
            ("noisy_mix_44k_stereo.flac", "flac")
        };
        let file = audio.join(format!("call-{i}.{ext}"));
        std::fs::copy(samples().join(source), &file).unwrap();
        files.push(file);
    }
    Job {
        dir,
        pipeline,
        files,
    }
}

impl Job {
    fn run(&self, out: &Path, extra: &[&str]) -> Command {
        let mut c = masp();
        c.arg("run")
            .arg("--pipeline")
            .arg(&self.pipeline)
            .arg("--out")
            .arg(out)
            .args(extra)
            .args(&self.files);
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn output(mut c: Command) -> Output {
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn merge(out: &Path, shards: &[PathBuf]) -> Output {
    output({
        let mut c = masp();
        c.arg("merge").arg("--out").arg(out).args(shards);
        c
    })
}

/// Result files under `dir` (relative path → content with `dirs` written as OUT), without the
/// journal and merge summary.
fn results(dir: &Path, dirs: &[&Path]) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if ["journal.jsonl", "merge.json", "shard.json"].contains(&rel.to_str().unwrap()) {
                continue;
            }
            let mut bytes = std::fs::read(&p).unwrap();
            if rel.extension().is_some_and(|e| e == "json") {
                let mut text = String::from_utf8(bytes).unwrap();
                for d in dirs {
                    text = text.replace(d.to_str().unwrap(), "OUT");
                }
                bytes = text.into_bytes();
            }
            out.insert(rel, bytes);
        }
    }
    out
}

/// `(task, input sha, config sha)` of every journal line.
fn journal(dir: &Path) -> Vec<(String, String, String)> {
    let mut lines: Vec<_> = std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["task"].as_str().unwrap().to_owned(),
                v["input_sha256"].as_str().unwrap().to_owned(),
                v["config_sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn four_shards_as_four_processes_merge_into_what_one_run_gives() {
    let job = job();
    let shards: Vec<PathBuf> = (0..4).map(|k| job.path(&format!("shards/{k}"))).collect();
    // Shards 0 and 2 by flag, 1 as a Slurm array task (ids 1..4), 3 as a Kubernetes Indexed Job.
    let mut children: Vec<Child> = Vec::new();
    for (k, out) in shards.iter().enumerate() {
        let mut c = match k {
            1 => {
                let mut c = job.run(out, &["--shard-from-env"]);
                c.env("SLURM_ARRAY_TASK_ID", "2")
                    .env("SLURM_ARRAY_TASK_MIN", "1")
                    .env("SLURM_ARRAY_TASK_COUNT", "4");
                c
            }
            3 => {
                let mut c = job.run(out, &["--shard-from-env", "--shard-count", "4"]);
                c.env("JOB_COMPLETION_INDEX", "3");
                c
            }
            _ => job.run(out, &["--shard", &format!("{k}/4")]),
        };
        children.push(c.stderr(Stdio::piped()).spawn().unwrap());
    }
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Every input in exactly one shard, where the documented hash puts it.
    let mut covered = Vec::new();
    for (k, dir) in shards.iter().enumerate() {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("shard.json")).unwrap())
                .unwrap();
        assert_eq!(m["shard"]["index"], k);
        for input in m["inputs"].as_array().unwrap() {
            let path = PathBuf::from(input["path"].as_str().unwrap());
            assert_eq!(shard_of(&path, 4), k as u64);
            assert_eq!(input["status"], "done");
            covered.push(path);
        }
    }
    covered.sort();
    let mut expected = job.files.clone();
    expected.sort();
    assert_eq!(covered, expected);

    let merged = job.path("merged");
    let o = merge(&merged, &shards);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 of 8 input(s) done"),
        "{}",
        stderr(&o)
    );

    let single = job.path("single");
    let o = output(job.run(&single, &[]));
    assert!(o.status.success(), "{}", stderr(&o));

    let mut dirs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    dirs.push(&merged);
    dirs.push(&single);
    let (m, s) = (results(&merged, &dirs), results(&single, &dirs));
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        s.keys().collect::<Vec<_>>(),
        "merged and single runs hold different files"
    );
    for (rel, bytes) in &m {
        assert!(bytes == &s[rel], "{} differs", rel.display());
    }
    assert_eq!(journal(&merged), journal(&single));
    // The merged directory is a finished run: the unsharded command resumes everything.
    let o = output(job.run(&merged, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("16 task(s) already done"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_killed_shard_is_listed_by_merge_and_its_rerun_completes_the_job() {
    let mut job = job();
    // A long file that lands in shard 2, so that shard is surely mid-run when it is killed.
    let long = (0..)
        .map(|i| job.path(&format!("audio/long-{i}.wav")))
        .find(|p| shard_of(p, 4) == 2)
        .unwrap();
    masp_testkit::fixtures::write_audio(
        long.parent().unwrap(),
        long.file_name().unwrap().to_str().unwrap(),
        &masp_testkit::fixtures::AudioSpec::tone(220.0, 300.0),
    )
    .unwrap();
    job.files.push(long.clone());
    let shards: Vec<PathBuf> = (0..4).map(|k| job.path(&format!("shards/{k}"))).collect();
    for k in [0, 1, 3] {
        let o = output(job.run(&shards[k], &["--shard", &format!("{k}/4")]));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let mut victim = job
        .run(&shards[2], &["--shard", "2/4"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as it has said which inputs are its own: its 5-minute file cannot be done
    // by then, however fast the machine.
    while !shards[2].join("shard.json").exists() {
        if let Some(status) = victim.try_wait().unwrap() {
            panic!("shard 2 ended ({status}) before it started");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    victim.kill().unwrap();
    let status = victim.wait().unwrap();
    assert!(!status.success(), "shard 2 finished before it was killed");

    let merged = job.path("merged");
    let o = merge(&merged, &shards);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("rerun shard 2/4"), "{}", stderr(&o));
    assert!(stderr(&o).contains("long-"), "{}", stderr(&o));

    // Rerun just that shard (it resumes from its journal), then the merge is whole.
    let o = output(job.run(&shards[2], &["--shard", "2/4"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = merge(&merged, &shards);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("merge.json")).unwrap()).unwrap();
    assert_eq!(summary["done"], 9);
    assert!(summary["missing"].as_array().unwrap().is_empty());
}

#[test]
fn merge_refuses_shards_of_different_configurations_and_missing_manifests() {
    let job = job();
    let (a, b) = (job.path("a"), job.path("b"));
    let o = output(job.run(&a, &["--shard", "0/2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    // Shard 1 with another VAD threshold: not the same job.
    let other = job.path("other.toml");
    std::fs::write(
        &other,
        "[[stage]]\nmodel = \"silero-vad\"\nthreshold = 0.7\n[[stage]]\nmodel = \"speaker-embedder\"\n",
    )
    .unwrap();
    let mut c = masp();
    c.args(["run", "--shard", "1/2", "--pipeline"])
        .arg(&other)
        .arg("--out")
        .arg(&b)
        .args(&job.files);
    let o = output(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = merge(&job.path("merged"), &[a.clone(), b]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("differ in configuration"),
        "{}",
        stderr(&o)
    );
    // A directory that is not a shard's.
    let o = merge(&job.path("merged"), &[a, job.path("audio")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a shard's run directory"),
        "{}",
        stderr(&o)
    );
    // A shard that does not exist.
    let o = output(job.run(&job.path("c"), &["--shard", "2/2"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("numbered 0 to 1"), "{}", stderr(&o));
}
