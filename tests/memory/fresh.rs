//! Running one test of this binary again in a child process: for figures free of other tests'
//! heap history, and for a helper process that takes memory away from the system.

use std::process::{Child, Command, Stdio};

/// Set in a child started by [`in_fresh_process`] or [`spawn_role`].
const CHILD_ENV: &str = "MASP_MEMORY_CHILD";

/// Runs the test `name` (full path, e.g. `drift::x`) again in a fresh process of this test
/// binary. Returns true in the child, where the caller runs the body; in the parent it waits for
/// the child, prints its output and fails if it failed.
pub fn in_fresh_process(name: &str) -> bool {
    in_fresh_process_with(name, &[])
}

/// [`in_fresh_process`] with extra environment variables for the child.
pub fn in_fresh_process_with(name: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "fresh")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Indented, so that the child's `test result:` line is not counted as a second run of the
    // test by `cargo xtask test`'s summary.
    for line in text.lines() {
        println!("  child | {line}");
    }
    assert!(out.status.success(), "child process for {name} failed");
    assert!(text.contains("1 passed"), "child ran no test: {text}");
    false
}

/// The role this process was started in by [`spawn_role`], if any.
pub fn role() -> Option<String> {
    std::env::var(CHILD_ENV)
        .ok()
        .filter(|r| r.starts_with("role:"))
        .map(|r| r["role:".len()..].to_owned())
}

/// Starts test `name` of this binary as a helper process in `role` (see [`role`]), with piped
/// stdin and stdout so the parent can wait for it to be ready and tell it to stop.
pub fn spawn_role(name: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("role:{role}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}
