//! Shared helpers: a budget, a registry, an orchestrator.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::SequentialOrchestrator;

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/samples")
        .join(name)
}

pub fn budget(limit: Bytes) -> Budget {
    Budget::new(BudgetConfig::default().with_limit(limit))
}

pub fn orchestrator(registry: Registry, limit: Bytes) -> SequentialOrchestrator {
    SequentialOrchestrator::builder(budget(limit), registry, masp_models::registry())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Tests in this binary measure the process's memory: run them one at a time, whatever
/// `--test-threads` says. Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run the test `name` (its full path, e.g. `sequential::x`) again in a fresh process of this
/// test binary, so its memory figures do not carry the heap history of other tests. Returns
/// true in the child, where the caller runs the test body; in the parent it waits for the
/// child and fails if the child failed.
pub fn in_fresh_process(name: &str) -> bool {
    if std::env::var_os("MASP_FRESH_CHILD").is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("MASP_FRESH_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "child process for {name} failed");
    assert!(text.contains("1 passed"), "child ran no test: {text}");
    false
}

/// A registry of the built-ins plus a manifest (`manifest_toml`) in a fresh directory that holds
/// a copy of silero VAD named `file`. Keep the directory alive while the registry is used.
pub fn registry_with_silero_copy(file: &str, manifest_toml: &str) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        masp_model_registry::assets::SILERO_VAD.locate().unwrap(),
        dir.path().join(file),
    )
    .unwrap();
    let manifest = dir.path().join("masp.toml");
    std::fs::write(&manifest, manifest_toml).unwrap();
    let mut registry = Registry::builtin();
    registry.add_manifest(&manifest).unwrap();
    (dir, registry)
}
