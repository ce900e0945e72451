//! The `masp` binary as a user runs it: outputs, bad inputs, exit codes.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masp_testkit::results::{result_file, results_of};

fn masp(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masp"))
        .args(args)
        .output()
        .expect("masp runs")
}

/// The stdout of a run that must have exited 0 (else fails with both outputs).
fn succeeded(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples/two_voices.wav")
}

/// A WAV file: `format` 1 = PCM, 3 = IEEE float; `declared_data` may lie about `data`'s length.
fn wav(format: u16, bits: u16, rate: u32, data: &[u8], declared_data: u32) -> Vec<u8> {
    let block = bits / 8;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + declared_data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&declared_data.to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn tone_pcm16(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let v = ((i as f32 * 0.05).sin() * 8000.0) as i16;
            v.to_le_bytes()
        })
        .collect()
}

struct BadInputs {
    _dir: tempfile::TempDir,
    files: Vec<(&'static str, PathBuf)>,
}

fn bad_inputs() -> BadInputs {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let pcm = tone_pcm16(16_000);
    let mut nan = Vec::new();
    for i in 0..16_000 {
        let v = if i == 8_000 {
            f32::NAN
        } else {
            (i as f32 * 0.01).sin() * 0.3
        };
        nan.extend_from_slice(&v.to_le_bytes());
    }
    let mut inf = Vec::new();
    for i in 0..16_000 {
        let v = if i == 100 { f32::INFINITY } else { 0.1 };
        inf.extend_from_slice(&v.to_le_bytes());
    }
    let files = vec![
        ("missing", p("does_not_exist.wav")),
        ("empty", p("empty.wav")),
        ("truncated", p("truncated.wav")),
        ("not audio", p("notes.wav")),
        ("zero samples", p("zero.wav")),
        ("nan", p("nan.wav")),
        ("inf", p("inf.wav")),
    ];
    std::fs::write(&files[1].1, b"").unwrap();
    std::fs::write(
        &files[2].1,
        wav(1, 16, 16_000, &pcm[..pcm.len() / 2], pcm.len() as u32),
    )
    .unwrap();
    std::fs::write(
        &files[3].1,
        b"these are my meeting notes, not audio\n".repeat(50),
    )
    .unwrap();
    std::fs::write(&files[4].1, wav(1, 16, 16_000, &[], 0)).unwrap();
    std::fs::write(&files[5].1, wav(3, 32, 16_000, &nan, nan.len() as u32)).unwrap();
    std::fs::write(&files[6].1, wav(3, 32, 16_000, &inf, inf.len() as u32)).unwrap();
    BadInputs { _dir: dir, files }
}

#[test]
fn every_bad_input_is_one_line_naming_file_and_the_batch_goes_on() {
    let bad = bad_inputs();
    let good = sample();
    let mut args: Vec<&std::ffi::OsStr> = vec!["vad".as_ref(), "--format".as_ref(), "csv".as_ref()];
    for (_, path) in &bad.files {
        args.push(path.as_os_str());
    }
    args.push(good.as_os_str()); // after the bad ones: it must still be processed
    let out = masp(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (what, path) in &bad.files {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&*path.to_string_lossy()))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: expected one line naming {}: {stderr}",
            path.display()
        );
        eprintln!("{what:>12}: {}", lines[0]);
    }
    assert!(
        stdout
            .lines()
            .filter(|l| l.contains("two_voices.wav"))
            .count()
            >= 4,
        "{stdout}"
    );
}

#[test]
fn each_bad_input_alone_fails_with_exit_code_2() {
    let bad = bad_inputs();
    for (what, path) in &bad.files {
        let out = masp(&["vad".as_ref(), path.as_os_str()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // JSON output stays a valid (empty) document.
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc, serde_json::json!([]), "{what}");
    }
}

#[test]
fn json_output_lists_segments_per_file() {
    let good = sample();
    let out = masp(&["vad".as_ref(), good.as_os_str(), good.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = doc.as_array().unwrap();
    assert_eq!(files.len(), 2);
    let first = &files[0];
    assert_eq!(first["sample_rate_hz"], 16_000);
    assert!((first["duration_s"].as_f64().unwrap() - 26.073).abs() < 0.01);
    let segments = first["segments"].as_array().unwrap();
    assert!(!segments.is_empty());
    for s in segments {
        assert!(s["start_s"].as_f64().unwrap() < s["end_s"].as_f64().unwrap());
    }
}

#[test]
fn rttm_lines_have_the_nist_fields() {
    let good = sample();
    let out = masp(&[
        "vad".as_ref(),
        "--format".as_ref(),
        "rttm".as_ref(),
        good.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 10, "{line}");
        assert_eq!(
            (fields[0], fields[1], fields[2]),
            ("SPEAKER", "two_voices", "1")
        );
        assert!(fields[3].parse::<f64>().unwrap() >= 0.0);
        assert!(fields[4].parse::<f64>().unwrap() > 0.0);
    }
}

#[test]
fn usage_errors_exit_with_1_and_help_with_0() {
    assert_eq!(masp(&["vad".as_ref()]).status.code(), Some(1));
    assert_eq!(masp(&["bogus".as_ref()]).status.code(), Some(1));
    let s = sample();
    let bad_threshold = masp(&[
        "vad".as_ref(),
        "--threshold".as_ref(),
        "7".as_ref(),
        s.as_os_str(),
    ]);
    assert_eq!(bad_threshold.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_threshold.stderr).contains("threshold"));
    assert_eq!(masp(&["--help".as_ref()]).status.code(), Some(0));
}

#[test]
fn missing_runtime_is_explained_not_a_panic() {
    let s = sample();
    let out = Command::new(env!("CARGO_BIN_EXE_masp"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["vad".as_ref(), s.as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cargo xtask setup") && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn pipeline_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "[[stage]]\nmodel = \"silero-vad\"\n\n[[stage]]\nname = \"embed\"\nmodel = \"speaker-embedder\"\n",
    )
    .unwrap();
    for i in 0..3 {
        std::fs::copy(sample(), dir.path().join(format!("f{i}.wav"))).unwrap();
    }
    dir
}

#[test]
fn plan_loads_each_model_once_for_a_batch() {
    let dir = pipeline_dir();
    let p = dir.path();
    let out = Command::new(env!("CARGO_BIN_EXE_masp"))
        .current_dir(p)
        .args([
            "plan",
            "--pipeline",
            "pipeline.toml",
            "--budget",
            "1GiB",
            "f0.wav",
            "f1.wav",
            "f2.wav",
        ])
        .output()
        .unwrap();
    let text = succeeded(&out);
    assert!(text.contains("6 tasks in 2 loads"), "{text}");
    assert!(text.contains("1 GiB (configured"), "{text}");
    // Uncalibrated models start at the default chunk, 2 s.
    assert!(
        text.lines()
            .any(|l| l.starts_with("chunks: ") && l.ends_with("in 32000 samples (2.00 s)")),
        "{text}"
    );
}

#[test]
fn run_writes_every_stage_and_a_report_and_a_bad_file_fails_alone() {
    let dir = pipeline_dir();
    let p = dir.path();
    std::fs::write(p.join("bad.wav"), b"not audio").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_masp"))
        .current_dir(p)
        .args([
            "run",
            "--pipeline",
            "pipeline.toml",
            "--out",
            "out",
            "--report",
            "report",
        ])
        .args(["f0.wav", "bad.wav", "f1.wav"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The bad file fails its VAD stage, and its embedding stage is skipped as a dependent.
    assert!(
        stderr.lines().filter(|l| l.contains("bad.wav")).count() == 2,
        "{stderr}"
    );
    assert!(stderr.contains("2 model load(s) (planned 2)"), "{stderr}");
    for stem in ["f0", "f1"] {
        let vad: serde_json::Value = serde_json::from_slice(
            &std::fs::read(result_file(&p.join("out/silero-vad"), stem, "json")).unwrap(),
        )
        .unwrap();
        assert_eq!(vad["segments"].as_array().unwrap().len(), 6);
        let embed: serde_json::Value = serde_json::from_slice(
            &std::fs::read(result_file(&p.join("out/embed"), stem, "json")).unwrap(),
        )
        .unwrap();
        let e: Vec<f64> = embed["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(e.len(), 256);
        let norm: f64 = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "embedding norm {norm}");
        assert!(result_file(&p.join("out/embed"), stem, "embeddings.npy").is_file());
    }
    assert!(results_of(&p.join("out/silero-vad"), "bad", "json").is_empty());
    for file in ["report.txt", "report.json", "timeline.svg", "run.json"] {
        assert!(p.join("report").join(file).is_file(), "{file} missing");
    }
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("report/run.json")).unwrap()).unwrap();
    assert_eq!(run["models"]["silero-vad"]["loads"], 1);
    assert_eq!(run["models"]["speaker-embedder"]["loads"], 1);
    assert_eq!(run["failures"].as_array().unwrap().len(), 1, "{run}");
}

#[test]
fn models_list_and_verify_report_every_builtin() {
    let list = masp(&["models".as_ref(), "list".as_ref()]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(list.status.code(), Some(0));
    assert!(
        text.contains("silero-vad") && text.contains("speaker-embedder"),
        "{text}"
    );
    let verify = masp(&["models".as_ref(), "verify".as_ref()]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok")).count(),
        3,
        "{text}"
    );
}

#[test]
fn models_verify_fails_on_a_corrupt_user_model_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.onnx"),
        b"definitely not a protobuf model",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("masp.toml"),
        "[[model]]\nname = \"broken\"\nkind = \"vad\"\npath = \"broken.onnx\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_masp"))
        .current_dir(dir.path())
        .args(["models", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED") && l.contains("broken")),
        "{text}"
    );
}

#[test]
fn a_budget_too_small_for_the_model_is_one_clear_error() {
    let s = sample();
    let out = masp(&[
        "vad".as_ref(),
        "--budget".as_ref(),
        "1MiB".as_ref(),
        s.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("too large for the budget") && stderr.contains("1 MiB"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn models_quantize_keeps_an_int8_vad_that_agrees_and_vad_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = dir.path().join("vad.int8.onnx");
    let noisy = sample().with_file_name("noisy_mix_44k_stereo.flac");
    let out = masp(&[
        "models".as_ref(),
        "quantize".as_ref(),
        "silero-vad-sequence".as_ref(),
        "--calibrate".as_ref(),
        noisy.as_os_str(),
        "--check".as_ref(),
        sample().as_os_str(),
        "--out".as_ref(),
        int8.as_os_str(),
    ]);
    let text = succeeded(&out);
    assert!(text.contains("6 convolution(s) now int8"), "{text}");
    assert!(text.contains("two_voices.wav"), "{text}");
    assert!(int8.is_file());
    // Used as the command suggests: a manifest entry of kind vad.
    let manifest = dir.path().join("masp.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nname = \"vad-int8\"\nkind = \"vad\"\npath = \"vad.int8.onnx\"\n",
    )
    .unwrap();
    let run = |model: &str| {
        let out = masp(&[
            "vad".as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--model".as_ref(),
            model.as_ref(),
            "--format".as_ref(),
            "csv".as_ref(),
            sample().as_os_str(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    // The same number of speech segments (six) as the float model.
    assert_eq!(run("vad-int8"), run("silero-vad-sequence"));
}

#[test]
fn models_quantize_refuses_a_copy_that_disagrees_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = dir.path().join("bad.int8.onnx");
    // Ranges cut at the median of |x| clip most of the signal: the copy hears no speech.
    let out = masp(&[
        "models".as_ref(),
        "quantize".as_ref(),
        "silero-vad-sequence".as_ref(),
        "--calibrate".as_ref(),
        sample().as_os_str(),
        "--percentile".as_ref(),
        "51".as_ref(),
        "--out".as_ref(),
        int8.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not kept") && err.contains("97%"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_model_marked_lean_runs_from_a_copy_written_once_into_the_cache() {
    // A private asset cache that shares the real one's runtime and models, so the lean copy
    // lands where this test can see it.
    let real = masp_model_registry::assets::masp_home().unwrap();
    let home = tempfile::tempdir().unwrap();
    for part in ["runtime", "models"] {
        std::os::unix::fs::symlink(real.join(part), home.path().join(part)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        // The sequence export: its weights are graph initializers, which the copy moves out
        // (the per-frame export keeps them inside `If` branches).
        masp_model_registry::assets::SILERO_VAD_SEQUENCE
            .locate()
            .unwrap(),
        dir.path().join("vad.onnx"),
    )
    .unwrap();
    let manifest = dir.path().join("masp.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nname = \"vad-lean\"\nkind = \"vad\"\npath = \"vad.onnx\"\nlean = true\n",
    )
    .unwrap();
    let run = |model: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_masp"))
            .args(["vad", "-v", "--model", model, "--format", "csv"])
            .arg("--manifest")
            .arg(&manifest)
            .arg(sample())
            .env("MASP_HOME", home.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let (segments, log) = run("vad-lean");
    assert!(log.contains("wrote the lean copy of vad-lean"), "{log}");
    let copies: Vec<_> = std::fs::read_dir(home.path().join("lean"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].join("model.onnx").is_file());
    assert!(copies[0].join("model.onnx.data").is_file());
    // The same segments as the built-in model, and the copy is not written twice.
    assert_eq!(segments, run("silero-vad-sequence").0);
    let (again, log) = run("vad-lean");
    assert_eq!(again, segments);
    assert!(!log.contains("wrote the lean copy"), "{log}");
}

#[test]
fn a_generic_model_whose_input_does_not_fit_its_window_is_named_before_loading() {
    use masp_testkit::synthetic::{self, Layout, WeightsModel};
    // The weights model takes [1, 1024]: 64 ms at 16 kHz. The entry says 500 ms.
    let generated = synthetic::weights_model(
        &synthetic::cache_dir(),
        WeightsModel {
            weight_bytes: 64 << 10,
            layout: Layout::Embedded,
            name: "window-64ms".into(),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::copy(&generated, p.join("w.onnx")).unwrap();
    std::fs::write(
        p.join("masp.toml"),
        "[[model]]\nname = \"w\"\nkind = \"generic\"\npath = \"w.onnx\"\n\
         [model.generic]\ninput = \"x\"\nwindow_ms = 500\n",
    )
    .unwrap();
    std::fs::write(p.join("pipeline.toml"), "[[stage]]\nmodel = \"w\"\n").unwrap();
    std::fs::copy(sample(), p.join("a.wav")).unwrap();
    let reason = "input \"x\" takes [1, 1024], but window_ms = 500 at 16000 Hz gives 8000 samples";

    let out = Command::new(env!("CARGO_BIN_EXE_masp"))
        .current_dir(p)
        .args(["models", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(" w ") && l.contains(reason)),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_masp"))
        .current_dir(p)
        .args([
            "run",
            "-v",
            "--pipeline",
            "pipeline.toml",
            "--out",
            "out",
            "a.wav",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    // Refused before loading: no session was created.
    assert!(!stderr.contains("loaded w"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `a/x.wav` and `b/x.flac`: one stem, two folders, different audio.
fn same_stem_dir() -> tempfile::TempDir {
    let dir = pipeline_dir();
    let p = dir.path();
    std::fs::create_dir_all(p.join("a")).unwrap();
    std::fs::create_dir_all(p.join("b")).unwrap();
    std::fs::copy(sample(), p.join("a/x.wav")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../assets/samples/noisy_mix_44k_stereo.flac"),
        p.join("b/x.flac"),
    )
    .unwrap();
    dir
}

fn masp_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masp"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn same_named_inputs_in_different_folders_keep_their_own_results() {
    let dir = same_stem_dir();
    let p = dir.path();
    let inputs = ["a/x.wav", "b/x.flac"];

    // masp run: one result per input and stage, and a second run resumes all four tasks.
    let args = [
        &["run", "--pipeline", "pipeline.toml", "--out", "out"][..],
        &inputs,
    ]
    .concat();
    succeeded(&masp_in(p, &args));
    let vad = results_of(&p.join("out/silero-vad"), "x", "json");
    assert_eq!(vad.len(), 2, "{vad:?}");
    let docs: Vec<serde_json::Value> = vad
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    let paths: std::collections::BTreeSet<_> =
        docs.iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, inputs.into_iter().collect());
    assert_eq!(
        results_of(&p.join("out/embed"), "x", "embeddings.npy").len(),
        2
    );
    let again = masp_in(p, &args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("4 task(s) already done"), "{stderr}");

    // masp vad --run-dir: two records, and a second run prints both from them.
    let args = [&["vad", "--run-dir", "vrd"][..], &inputs].concat();
    let first = succeeded(&masp_in(p, &args));
    assert_eq!(results_of(&p.join("vrd"), "x", "vad.json").len(), 2);
    let resumed = masp_in(p, &args);
    assert_eq!(succeeded(&resumed), first);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resumed 2 file(s)"));

    // masp embed --out: one embeddings file per input.
    let args = [&["embed", "--run-dir", "erd", "--out", "emb"][..], &inputs].concat();
    succeeded(&masp_in(p, &args));
    assert_eq!(results_of(&p.join("emb"), "x", "embeddings.json").len(), 2);

    // masp diarize: both inputs' results kept apart in the run directory, both printed.
    let args = [
        &["diarize", "--run-dir", "drd", "--format", "json"][..],
        &inputs,
    ]
    .concat();
    let first = succeeded(&masp_in(p, &args));
    let turns: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(turns.as_array().unwrap().len(), 2);
    assert_eq!(results_of(&p.join("drd"), "x", "vad.json").len(), 2);
    assert_eq!(results_of(&p.join("drd"), "x", "embeddings.json").len(), 2);
    let resumed = masp_in(p, &args);
    assert_eq!(succeeded(&resumed), first);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resumed 2 VAD and 2 embedding"));
}

#[test]
fn the_same_input_twice_is_refused_before_any_work() {
    let dir = same_stem_dir();
    let p = dir.path();
    let out = masp_in(
        p,
        &[
            "run",
            "--pipeline",
            "pipeline.toml",
            "--out",
            "out",
            "a/x.wav",
            "a/./x.wav",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("are the same file"), "{stderr}");
    assert!(!p.join("out/silero-vad").exists());
}

/// Issue class "paths that leave their directory": every name that becomes a path is one plain
/// component, and every file a manifest points at stays in the manifest's directory, links
/// resolved, whether the manifest is given or the default `./masp.toml`.
#[test]
fn names_and_manifest_paths_cannot_leave_their_directory() {
    let outer = tempfile::tempdir().unwrap();
    let work = outer.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::copy(sample(), work.join("x.wav")).unwrap();
    std::fs::write(outer.path().join("secret.onnx"), b"not yours").unwrap();
    std::os::unix::fs::symlink("../secret.onnx", work.join("link.onnx")).unwrap();
    std::os::unix::fs::symlink("..", work.join("up")).unwrap();

    // The default manifest, found in the current directory, and the same file given by flag.
    for path in [
        "link.onnx",
        "up/secret.onnx",
        "../secret.onnx",
        "/etc/passwd",
    ] {
        let manifest = format!("[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"{path}\"\n");
        std::fs::write(work.join("masp.toml"), &manifest).unwrap();
        for args in [
            &["models", "list"][..],
            &["models", "list", "--manifest", "masp.toml"],
        ] {
            let out = masp_in(&work, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{path} {args:?}: {stderr}");
            assert!(
                stderr.contains("leaves the manifest's directory") && stderr.contains(path),
                "{path} {args:?}: {stderr}"
            );
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
    }

    // Model names become directories of a pipeline run: `..`, `.`, separators are refused.
    for name in ["..", ".", ".x", "a/b", "../../x"] {
        let manifest =
            format!("[[model]]\nname = \"{name}\"\nkind = \"vad\"\nasset = \"silero-vad\"\n");
        std::fs::write(work.join("masp.toml"), &manifest).unwrap();
        let out = masp_in(&work, &["models", "list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("name"), "{name}: {stderr}");
    }
    std::fs::remove_file(work.join("masp.toml")).unwrap();

    // Stage names too: nothing is written anywhere, inside `--out` or outside it.
    for name in ["../../escaped", "..", "a/b", ".hidden", "x\\u0001y"] {
        std::fs::write(
            work.join("p.toml"),
            format!("[[stage]]\nmodel = \"silero-vad\"\nname = \"{name}\"\n"),
        )
        .unwrap();
        let out = masp_in(
            &work,
            &["run", "--pipeline", "p.toml", "--out", "out", "x.wav"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("not a plain file name"), "{name}: {stderr}");
        assert!(!work.join("out").exists(), "{name}");
        assert!(!outer.path().join("escaped").exists(), "{name}");
    }
    let left: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only work/ and secret.onnx: {left:?}");
}
