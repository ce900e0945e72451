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
        "disk",
        "cgroup",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(topic)),
            "no ok line for {topic}:\n{text}"
        );
    }
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
