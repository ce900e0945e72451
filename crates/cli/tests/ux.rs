//! The small things that make masp pleasant: `--version`, `masp doctor`, shell completions.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn masp(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_masp"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("masp runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn version_names_masp_onnx_runtime_and_the_asset_cache() {
    let out = masp(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("masp {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("ONNX Runtime: "), "{text}");
    assert!(text.contains("asset cache:"), "{text}");
}

#[test]
fn version_says_how_to_get_a_missing_runtime() {
    let out = masp(
        &["--version"],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("not found at /nonexistent/libonnxruntime.so"),
        "{text}"
    );
    assert!(text.contains("cargo xtask setup"), "{text}");
}

#[test]
fn doctor_explains_a_missing_runtime_and_exits_2() {
    let out = masp(
        &["doctor"],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let problem = text
        .lines()
        .position(|l| l.starts_with("problem") && l.contains("onnx runtime"))
        .unwrap_or_else(|| panic!("no runtime problem line in:\n{text}"));
    let explained = text
        .lines()
        .skip(problem)
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        explained.contains("/nonexistent/libonnxruntime.so"),
        "{explained}"
    );
    assert!(explained.contains("ORT_DYLIB_PATH"), "{explained}");
    assert!(explained.contains("cargo xtask setup"), "{explained}");
}

#[test]
fn doctor_is_all_ok_with_the_normal_setup() {
    // The runtime and models come from the asset cache (`cargo xtask setup`).
    let out = masp(&["doctor"], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().all(|l| !l.starts_with("problem")), "{text}");
    for topic in [
        "onnx runtime",
        "silero-vad",
        "budget",
        "trim",
        "mmap threshold",
        "disk",
        "cgroup",
        "hard limit",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(topic)),
            "no ok line for {topic}:\n{text}"
        );
    }
    // Which mechanism holds the limit, and why no cgroup caps the workers (or that one could).
    let hard = text
        .lines()
        .find(|l| l.contains("hard limit"))
        .unwrap_or_default();
    assert!(
        hard.contains("watchdog") && hard.contains("RLIMIT_AS") && hard.contains("cgroup"),
        "{hard}"
    );
}

#[test]
fn doctor_reports_an_invalid_budget_setting() {
    let out = masp(&["doctor"], &[("MASP_BUDGET", "lots")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("problem") && l.contains("MASP_BUDGET")),
        "{text}"
    );
}

#[test]
fn bash_completions_know_the_subcommands() {
    let out = masp(&["completions", "bash"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for command in ["vad", "diarize", "doctor", "models"] {
        assert!(text.contains(command), "{command} missing from completions");
    }
}

#[test]
fn completions_reject_an_unknown_shell_as_a_usage_error() {
    let out = masp(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

/// 20 copies of the speech sample under other names.
fn twenty_files(dir: &std::path::Path) -> Vec<String> {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/samples/two_voices.wav");
    (0..20)
        .map(|i| {
            let p = dir.join(format!("talk{i:02}.wav"));
            std::fs::copy(&sample, &p).unwrap();
            p.to_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_batch_shows_live_progress_on_a_terminal_and_none_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let files = twenty_files(dir.path());
    let masp_bin = env!("CARGO_BIN_EXE_masp");
    // On a terminal: `script` runs masp on a pseudo-terminal and records what it drew.
    let command = format!(
        "stty cols 200 rows 40; {masp_bin} vad --format csv {} > {}",
        files.join(" "),
        dir.path().join("out.csv").display()
    );
    let typescript = dir.path().join("typescript");
    let status = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&typescript)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script (util-linux) runs");
    assert!(status.success());
    let drawn = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    for needle in ["vad", "/20 files", "real time", "ETA", "of "] {
        assert!(
            drawn.contains(needle),
            "no {needle:?} in what the terminal showed:\n{drawn}"
        );
    }
    assert!(
        drawn.contains("20/20 files") || drawn.contains("silero-vad"),
        "{drawn}"
    );
    // Piped: the same run's stderr has no progress at all; stdout has every file.
    let mut args = vec!["vad", "--format", "csv"];
    args.extend(files.iter().map(String::as_str));
    let out = masp(&args, &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ETA") && !stderr.contains("files"),
        "{stderr}"
    );
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains("talk"))
            .map(|l| l.split(',').next().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        20
    );
}

#[test]
fn verbose_logs_loads_unloads_and_cleanups() {
    let dir = tempfile::tempdir().unwrap();
    let files = twenty_files(dir.path());
    let out = masp(&["vad", "-v", "--format", "csv", &files[0], &files[1]], &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loaded silero-vad-sequence in"), "{stderr}");
    assert!(
        stderr.contains("unloaded silero-vad-sequence (end)"),
        "{stderr}"
    );
    assert!(stderr.contains("allocator trim returned"), "{stderr}");
    assert!(
        !stderr.contains("talk00.wav:"),
        "-v does not log every task: {stderr}"
    );
    let out = masp(&["vad", "-vv", "--format", "csv", &files[0]], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vad "),
        "-vv logs tasks"
    );
}

#[test]
fn config_show_says_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("masp.toml");
    std::fs::write(
        &config,
        "[defaults]\nbudget = \"3GiB\"\nthreads = 2\nformat = \"rttm\"\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = masp(
        &["config", "show", "--config", c, "--threads", "4"],
        &[("MASP_ISOLATION", "process")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert!(
        line("budget").contains("3 GiB") && line("budget").contains("[defaults]"),
        "{text}"
    );
    assert!(
        line("threads").contains('4') && line("threads").contains("flag --threads"),
        "{text}"
    );
    assert!(
        line("isolation").contains("environment MASP_ISOLATION"),
        "{text}"
    );
    assert!(line("max_resident").contains("default"), "{text}");
    assert!(text.contains("silero-vad"), "{text}");
    // The file's format is used when no flag says otherwise.
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/samples/two_voices.wav");
    let out = masp(&["vad", "--config", c, sample.to_str().unwrap()], &[]);
    assert!(
        stdout(&out).starts_with("SPEAKER two_voices 1 "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn audacity_labels_are_one_track_for_one_file() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/samples/two_voices.wav");
    let s = sample.to_str().unwrap();
    let out = masp(&["vad", "--format", "audacity", s], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    let fields: Vec<&str> = first.split('\t').collect();
    assert_eq!(fields.len(), 3, "{first}");
    assert!(fields[0].parse::<f64>().unwrap() < fields[1].parse::<f64>().unwrap());
    assert_eq!(fields[2], "speech");
    let out = masp(&["vad", "--format", "audacity", s, s], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one audio file"));
}
