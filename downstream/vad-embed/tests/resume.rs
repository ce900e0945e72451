//! The downstream project as its user runs it: embeddings of the committed samples, then the
//! same command resumes every file from the run directory with identical outputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/samples")
        .join(name)
}

#[test]
fn embeds_every_file_then_resumes_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"not audio").unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_vad-embed"))
            .arg(dir.path().join("run"))
            .args([
                sample("two_voices.wav"),
                sample("noisy_mix_44k_stereo.flac"),
                bad.clone(),
            ])
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.wav"), "{stderr}");
    let out = dir.path().join("run/out");
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let ranges = doc["ranges"].as_array().unwrap();
    assert!(!ranges.is_empty());
    assert_eq!(ranges[0]["embedding"].as_array().unwrap().len(), 256);
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    let second = run();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("resumed 2 VAD and 2 embedding"), "{stdout}");
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(before, after);
}
