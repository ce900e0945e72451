//! The guard binary end to end on a real model from the asset cache: refused, then admitted.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The model: `GUARD_ONNX_MODEL`, else silero-vad's sequence model in `MASP_HOME`
/// (default `~/.cache/masp`), which tract can load (the other cached models use ops it lacks).
fn model() -> PathBuf {
    let path = std::env::var_os("GUARD_ONNX_MODEL").map_or_else(
        || {
            let home = std::env::var_os("MASP_HOME").map_or_else(
                || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/masp"),
                PathBuf::from,
            );
            home.join("models/silero-vad-6.2.3/silero_vad_16k_sequence.onnx")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask setup` in the masp workspace (or set GUARD_ONNX_MODEL)",
        path.display()
    );
    path
}

fn guard(budget: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guard-onnx"))
        .arg(model())
        .arg(budget)
        .output()
        .unwrap()
}

#[test]
fn refuses_a_budget_too_small_before_loading() {
    let out = guard("16MiB");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reserve") && stderr.contains("16 MiB limit"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing is loaded or reported");
}

#[test]
fn loads_runs_and_profiles_with_enough_budget() {
    let out = guard("512MiB");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("budget       512 MiB"), "{stdout}");
    assert!(stdout.contains("load peak"), "{stdout}");
    assert!(stdout.contains("cycle        1 loaded"), "{stdout}");
}

#[test]
fn rejects_a_budget_that_is_not_a_size() {
    let out = guard("lots");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("invalid size \"lots\""), "{stderr}");
}
