//! `masp diarize` and `masp embed` as a user runs them: RTTM against the known turns, a bad
//! file in the batch, resume, and one load per model for a 20-file batch.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masp_testkit::results::result_file;

fn masp(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masp"))
        .args(args)
        .output()
        .expect("masp runs")
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples")
}

/// `(start_s, end_s, speaker)` of each RTTM line.
fn rttm(text: &str) -> Vec<(f64, f64, String)> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 10, "{l}");
            assert_eq!((f[0], f[1], f[2]), ("SPEAKER", "two_voices", "1"), "{l}");
            let start: f64 = f[3].parse().unwrap();
            let dur: f64 = f[4].parse().unwrap();
            (start, start + dur, f[7].to_string())
        })
        .collect()
}

#[test]
fn rttm_of_two_voices_matches_the_known_turns_and_a_bad_file_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let missing = dir.path().join("missing.wav");
    let args = |extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> = vec!["diarize".into(), "--run-dir".into()];
        a.push(run_dir.clone().into());
        a.extend(extra.iter().map(|s| s.into()));
        a.push(samples().join("two_voices.wav").into());
        a.push(missing.clone().into());
        a
    };
    let out = masp(
        &args(&["--format", "rttm"])
            .iter()
            .map(|s| s.as_os_str())
            .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("missing.wav"))
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");

    let turns = rttm(&String::from_utf8_lossy(&out.stdout));
    let known: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(samples().join("two_voices.turns.json")).unwrap(),
    )
    .unwrap();
    let known = known["turns"].as_array().unwrap();
    assert_eq!(turns.len(), known.len(), "{turns:?}");
    let mut speakers: Vec<&str> = turns.iter().map(|t| t.2.as_str()).collect();
    speakers.dedup();
    assert_eq!(speakers.len(), known.len(), "turns alternate: {turns:?}");
    speakers.sort_unstable();
    speakers.dedup();
    assert_eq!(speakers, ["SPEAKER_00", "SPEAKER_01"]);
    for (ours, theirs) in turns.iter().zip(known) {
        assert!(
            (ours.0 - theirs["start_s"].as_f64().unwrap()).abs() <= 0.5,
            "{ours:?}"
        );
        assert!(
            (ours.1 - theirs["end_s"].as_f64().unwrap()).abs() <= 0.5,
            "{ours:?}"
        );
    }

    // Again: segments and embeddings in the run directory are reused (no model runs).
    let again = masp(
        &args(&["--format", "json", "--speakers", "2", "--stats"])
            .iter()
            .map(|s| s.as_os_str())
            .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("resumed 1 VAD and 1 embedding result(s)"),
        "{stderr}"
    );
    // Only the missing file went to the VAD again (and failed again); nothing was embedded.
    assert!(
        !stderr.contains("speaker-embedder"),
        "the embedder ran again: {stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(doc[0]["n_speakers"], 2, "{doc}");
    assert_eq!(doc[0]["turns"].as_array().unwrap().len(), 6, "{doc}");
}

#[test]
fn a_twenty_file_batch_loads_each_model_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![
        "diarize".into(),
        "--report".into(),
        dir.path().join("report").into(),
        "--run-dir".into(),
        dir.path().join("run").into(),
    ];
    for i in 0..20 {
        let copy = dir.path().join(format!("talk{i:02}.wav"));
        std::fs::copy(samples().join("two_voices.wav"), &copy).unwrap();
        args.push(copy.into());
    }
    let out = masp(&args.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for i in 0..20 {
        assert!(
            stdout.contains(&format!("SPEAKER talk{i:02} 1 ")),
            "{stdout}"
        );
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report/run.json")).unwrap())
            .unwrap();
    for model in ["silero-vad", "speaker-embedder"] {
        assert_eq!(run["models"][model]["loads"], 1, "{model}: {run}");
        assert_eq!(run["models"][model]["tasks_done"], 20, "{model}: {run}");
    }
    assert!(dir.path().join("report/timeline.svg").is_file());
}

#[test]
fn embed_writes_one_normalised_embedding_per_segment_as_json_and_npy() {
    let dir = tempfile::tempdir().unwrap();
    let file = samples().join("two_voices.wav");
    let run_dir = dir.path().join("run");
    let out = masp(&[
        "embed".as_ref(),
        "--run-dir".as_ref(),
        run_dir.as_os_str(),
        file.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ranges = doc[0]["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 6, "one per speech segment");
    for r in ranges {
        let e: Vec<f64> = r["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(e.len(), 256);
        let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }

    let npy_dir = dir.path().join("npy");
    let out = masp(&[
        "embed".as_ref(),
        "--per-window".as_ref(),
        "--format".as_ref(),
        "npy".as_ref(),
        "--out".as_ref(),
        npy_dir.as_os_str(),
        "--run-dir".as_ref(),
        run_dir.as_os_str(),
        file.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let npy = std::fs::read(result_file(&npy_dir, "two_voices", "embeddings.npy")).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    let ranges: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(result_file(&npy_dir, "two_voices", "ranges.json")).unwrap(),
    )
    .unwrap();
    let n = ranges["ranges"].as_array().unwrap().len();
    assert!(n > 6, "more windows than segments: {n}");
    let header = String::from_utf8_lossy(&npy[..128]);
    assert!(header.contains(&format!("({n}, 256)")), "{header}");
}

/// A `masp` call from string arguments.
fn masp_str(args: &[&str]) -> Output {
    masp(&args.iter().map(std::ffi::OsStr::new).collect::<Vec<_>>())
}

#[test]
fn resume_notices_changed_inputs_and_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let talk = dir.path().join("talk.wav");
    std::fs::copy(samples().join("two_voices.wav"), &talk).unwrap();
    let (run, talk) = (run_dir.to_str().unwrap(), talk.to_str().unwrap());
    let diarize = |extra: &[&str]| {
        let mut a = vec!["diarize", "--run-dir", run, "--stats"];
        a.extend_from_slice(extra);
        a.push(talk);
        let out = masp_str(&a);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (first, _) = diarize(&[]);
    let (same, stderr) = diarize(&[]);
    assert_eq!(same, first);
    assert!(stderr.contains("resumed 1 VAD and 1 embedding"), "{stderr}");
    // Another window length: the segments still hold, the embeddings are redone.
    let (_, stderr) = diarize(&["--window-s", "2.0"]);
    assert!(stderr.contains("resumed 1 VAD and 0 embedding"), "{stderr}");
    // Same name, other content (the file shortened to its first half): both are redone.
    let bytes = std::fs::read(talk).unwrap();
    let half = masp_audio_half(&bytes);
    std::fs::write(talk, half).unwrap();
    let (changed, stderr) = diarize(&[]);
    assert!(!stderr.contains("resumed"), "{stderr}");
    assert_ne!(changed, first);
    // Interrupted-run leftovers are removed and do not count as results.
    std::fs::write(run_dir.join(".x.segments.json.masp-tmp"), b"partial").unwrap();
    let (_, stderr) = diarize(&[]);
    assert!(stderr.contains("removed 1 partial file"), "{stderr}");
    assert!(!run_dir.join(".x.segments.json.masp-tmp").exists());
}

/// A 16-bit PCM WAV cut to the first half of its samples (header sizes fixed up).
fn masp_audio_half(wav: &[u8]) -> Vec<u8> {
    let data_at = wav.windows(4).position(|w| w == b"data").unwrap();
    let len = u32::from_le_bytes(wav[data_at + 4..data_at + 8].try_into().unwrap());
    let half = (len / 2) & !1;
    let mut out = wav[..data_at + 8 + half as usize].to_vec();
    out[data_at + 4..data_at + 8].copy_from_slice(&half.to_le_bytes());
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    out
}

#[test]
fn embed_and_vad_resume_with_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let talk = samples().join("two_voices.wav");
    let talk = talk.to_str().unwrap();
    // embed, npy: the second run reads the embeddings back and writes the same files.
    let run = dir.path().join("run-embed");
    let (out1, out2) = (dir.path().join("npy1"), dir.path().join("npy2"));
    for out in [&out1, &out2] {
        let o = masp_str(&[
            "embed",
            "--format",
            "npy",
            "--run-dir",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            talk,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let npy = |d: &Path| std::fs::read(result_file(d, "two_voices", "embeddings.npy")).unwrap();
    assert_eq!(npy(&out1), npy(&out2));
    assert!(npy(&out1).len() > 256 * 4);
    let ranges = |d: &Path| {
        std::fs::read_to_string(result_file(d, "two_voices", "ranges.json"))
            .unwrap()
            .replace(d.to_str().unwrap(), "OUT")
    };
    assert_eq!(ranges(&out1), ranges(&out2));

    // vad --run-dir: the second run prints the same from the run directory.
    let run = dir.path().join("run-vad");
    let vad = || masp_str(&["vad", "--run-dir", run.to_str().unwrap(), talk]);
    let (a, b) = (vad(), vad());
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("resumed 1 file(s)"),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    // Other parameters are not the same result.
    let c = masp_str(&[
        "vad",
        "--run-dir",
        run.to_str().unwrap(),
        "--threshold",
        "0.7",
        talk,
    ]);
    assert!(!String::from_utf8_lossy(&c.stderr).contains("resumed"));
}
