//! The test suites, the demo, and `cargo xtask test` (what CI runs).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup;

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn ensure_setup() -> Result<()> {
    if !setup::looks_complete() {
        println!("assets missing: running setup first");
        setup::run(false)?;
    }
    Ok(())
}

/// One step of a suite: a named command whose exit status is the verdict.
struct Step {
    name: &'static str,
    command: Command,
}

fn step(name: &'static str, args: &[&str]) -> Step {
    let mut command = cargo();
    command.args(args).current_dir(workspace_root());
    Step { name, command }
}

/// Run steps in order (all of them, even after a failure, so one run shows every problem) and
/// end with the `N passed, N failed` line.
fn run_steps(suite: &str, steps: Vec<Step>) -> Result<()> {
    let mut failed = Vec::new();
    let total = steps.len();
    for mut s in steps {
        println!("\n==> {suite}: {}", s.name);
        let ok = s.command.status().map(|st| st.success()).unwrap_or(false);
        if !ok {
            failed.push(s.name);
        }
    }
    println!(
        "\n{suite}: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{suite}: failed steps: {}", failed.join(", "))
    }
}

pub fn demo() -> Result<()> {
    ensure_setup()?;
    let sample = workspace_root().join("assets/samples/two_voices.wav");
    println!("masp vad {}", sample.display());
    let status = cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "masp-cli",
            "--",
            "vad",
            "--format",
        ])
        .args(["text", "--stats"])
        .arg(&sample)
        .current_dir(workspace_root())
        .status()
        .context("running masp")?;
    if !status.success() {
        bail!("masp vad failed");
    }
    Ok(())
}

pub fn test_all() -> Result<()> {
    ensure_setup()?;
    let mut check_layers = Command::new(std::env::current_exe()?);
    check_layers
        .arg("check-layers")
        .current_dir(workspace_root());
    let mut steps = vec![
        step("format", &["fmt", "--all", "--check"]),
        Step {
            name: "layers",
            command: check_layers,
        },
        step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step(
            "unit, integration and doc tests",
            &["test", "--workspace", "--quiet"],
        ),
    ];
    steps.extend(sequential_steps());
    steps.extend(memory_steps());
    run_steps("test", steps)
}

/// The model and orchestration suites, one test at a time: memory figures must not mix.
fn sequential_steps() -> Vec<Step> {
    vec![
        step(
            "model and orchestration suites (MinimalTestFramework, sequential)",
            &[
                "test",
                "--release",
                "--quiet",
                "-p",
                "masp-tests",
                "--test",
                "suites",
                "--",
                "--test-threads=1",
                // Each suite prints its table, ending with `N passed, N failed`.
                "--nocapture",
            ],
        ),
        step(
            "orchestration suite (sequential)",
            &[
                "test",
                "--quiet",
                "-p",
                "masp-orchestrator",
                "--test",
                "it",
                "--",
                "--test-threads=1",
            ],
        ),
        step(
            "model scenarios (sequential)",
            &[
                "test",
                "--quiet",
                "-p",
                "masp-tests",
                "--test",
                "scenarios",
                "--",
                "--test-threads=1",
            ],
        ),
    ]
}

/// GiB-sized models under tight budgets, optimised build, one test at a time.
fn memory_steps() -> Vec<Step> {
    vec![step(
        "memory suite (release, one at a time)",
        &[
            "test",
            "--release",
            "--quiet",
            "-p",
            "masp-tests",
            "--test",
            "memory",
            "--",
            "--test-threads=1",
        ],
    )]
}

pub fn test_sequential() -> Result<()> {
    ensure_setup()?;
    run_steps("test-sequential", sequential_steps())
}

pub fn test_profile() -> Result<()> {
    ensure_setup()?;
    let reports = workspace_root().join("target/masp-reports");
    std::fs::create_dir_all(&reports)?;
    let mut steps = sequential_steps();
    for s in &mut steps {
        s.command.env("MASP_TEST_REPORTS", &reports);
    }
    let result = run_steps("test-profile", steps);
    println!("\nreports (report.txt, report.json, timeline.svg, suite.txt, suite.json):");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&reports)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        println!("  {}", dir.display());
    }
    result
}

pub fn test_memory() -> Result<()> {
    ensure_setup()?;
    run_steps("test-memory", memory_steps())
}

/// The kill-and-resume harness at full length: 20 SIGKILLs at random points of a batch, each
/// followed by a resume, ending byte-identical to a clean run. (`cargo test` runs 5.)
pub fn test_faults() -> Result<()> {
    ensure_setup()?;
    let mut s = step(
        "kill-and-resume, 20 kills",
        &[
            "test",
            "--quiet",
            "-p",
            "masp-cli",
            "--test",
            "resume",
            "--",
            "--nocapture",
        ],
    );
    s.command.env("MASP_KILLS", "20");
    run_steps("test-faults", vec![s])
}
