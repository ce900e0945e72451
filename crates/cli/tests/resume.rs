//! Nothing lost: a batch killed with SIGKILL at random points and resumed each time ends with
//! exactly the outputs of a clean run, byte for byte, and no partial files.
//!
//! `MASP_KILLS` sets how many kills (default 5; `cargo xtask test-faults` runs 20).
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use masp_testkit::results::{without_hash, without_hashes};

const FILES: [&str; 4] = ["a.wav", "b.wav", "c.flac", "d.wav"];

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples");
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "[[stage]]\nmodel = \"silero-vad\"\n\n[[stage]]\nname = \"embed\"\nmodel = \"speaker-embedder\"\n",
    )
    .unwrap();
    for (i, name) in FILES.iter().enumerate() {
        let src = if name.ends_with(".flac") {
            "noisy_mix_44k_stereo.flac"
        } else {
            "two_voices.wav"
        };
        std::fs::copy(samples.join(src), dir.path().join(name)).unwrap();
        if i == 3 {
            // One input differs from the others, so results are not all alike.
            let mut bytes = std::fs::read(dir.path().join(name)).unwrap();
            let n = bytes.len();
            bytes.truncate(n - 64_000);
            let data = (n - 64_000 - 44) as u32;
            bytes[40..44].copy_from_slice(&data.to_le_bytes());
            bytes[4..8].copy_from_slice(&(data + 36).to_le_bytes());
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
    }
    dir
}

fn masp_run(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_masp"));
    cmd.current_dir(dir)
        .args(["run", "--pipeline", "pipeline.toml", "--out", "out"])
        .args(FILES);
    cmd
}

/// Every file under `out`, except the journal, with its content.
fn outputs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, into);
            } else if path.file_name().unwrap() != "journal.jsonl" {
                // The clean and the killed runs read copies in different folders: their results'
                // names differ by the path hash only.
                let mut bytes = std::fs::read(&path).unwrap();
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    bytes = without_hashes(text).into_bytes();
                }
                into.insert(without_hash(path.strip_prefix(root).unwrap()), bytes);
            }
        }
    }
    let mut map = BTreeMap::new();
    walk(&dir.join("out"), &dir.join("out"), &mut map);
    map
}

#[test]
fn a_batch_killed_at_random_points_and_resumed_matches_a_clean_run() {
    let kills: usize = std::env::var("MASP_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let clean = workdir();
    let started = Instant::now();
    let out = masp_run(clean.path()).output().unwrap();
    let clean_s = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = outputs(clean.path());
    assert_eq!(
        expected
            .keys()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .count(),
        8
    );

    let killed = workdir();
    let mut seed: u64 = std::env::var("MASP_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill seed {seed} (MASP_KILL_SEED to replay); clean run {clean_s:.1} s");
    let mut finished_early = 0;
    let mut completed = 0;
    for k in 0..kills {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Kill after a random number of finished tasks plus a random delay (up to a fraction of
        // a task's time): during start-up, a model load, inference, a write, the journal append.
        let journal_lines = || {
            std::fs::read_to_string(killed.path().join("out/journal.jsonl"))
                .map_or(0, |j| j.lines().count())
        };
        if journal_lines() == 8 {
            // This directory is complete: check it, then start over so every kill lands in work.
            verify(killed.path(), &expected);
            std::fs::remove_dir_all(killed.path().join("out")).unwrap();
            completed += 1;
        }
        let target = journal_lines() + (seed >> 33) as usize % 3;
        let delay =
            Duration::from_secs_f64(clean_s / 8.0 * ((seed >> 11) as f64 / (1u64 << 53) as f64));
        let mut child = masp_run(killed.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Polling and the delay decide only where the kill lands; nothing checked depends on it.
        while journal_lines() < target && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let at = delay;
        eprintln!(
            "kill {k}: {:.2} s after task {target}; journal now {} line(s)",
            at.as_secs_f64(),
            journal_lines()
        );
    }
    let out = masp_run(killed.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("final run: {}", stderr.lines().last().unwrap_or_default());
    verify(killed.path(), &expected);
    eprintln!(
        "{kills} kills ({finished_early} after the run had finished); {} killed batches completed, \
         each identical to a clean run",
        completed + 1
    );
}

/// The run directory holds exactly the clean run's outputs, byte for byte, no partial files,
/// and one journal line per task.
fn verify(dir: &Path, expected: &BTreeMap<PathBuf, Vec<u8>>) {
    let got = outputs(dir);
    let temporaries: Vec<_> = got
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".masp-tmp"))
        .collect();
    assert!(
        temporaries.is_empty(),
        "partial files left: {temporaries:?}"
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in expected {
        assert!(
            got[path] == *bytes,
            "{} differs from the clean run",
            path.display()
        );
    }
    let journal = std::fs::read_to_string(dir.join("out/journal.jsonl")).unwrap();
    assert_eq!(
        journal.lines().count(),
        8,
        "each task recorded exactly once:\n{journal}"
    );
}

#[test]
fn a_changed_input_is_redone_and_the_others_are_not() {
    let dir = workdir();
    assert!(masp_run(dir.path()).output().unwrap().status.success());
    std::fs::copy(dir.path().join("d.wav"), dir.path().join("a.wav")).unwrap();
    let out = masp_run(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("6 task(s) already done"), "{stderr}");
}

#[test]
fn an_unwritable_output_stops_cleanly_with_one_clear_error_and_resume_finishes() {
    let dir = workdir();
    assert!(masp_run(dir.path()).output().unwrap().status.success());
    // Change an input so its tasks must be redone, and put a regular file where the VAD stage's
    // directory is: its write fails (for root too, unlike permissions).
    std::fs::copy(dir.path().join("d.wav"), dir.path().join("b.wav")).unwrap();
    let vad_dir = dir.path().join("out/silero-vad");
    let kept = dir.path().join("kept-vad");
    std::fs::rename(&vad_dir, &kept).unwrap();
    std::fs::write(&vad_dir, b"in the way").unwrap();
    let out = masp_run(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("out/silero-vad") && stderr.contains("the same command resumes"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The journal is consistent: with the directory back, resuming redoes only b's tasks.
    std::fs::remove_file(&vad_dir).unwrap();
    std::fs::rename(&kept, &vad_dir).unwrap();
    let out = masp_run(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("6 task(s) already done"), "{stderr}");
}
