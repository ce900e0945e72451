//! What a weights model costs ONNX Runtime in resident memory, measured in a fresh process.
//!
//! A test process runs many tests on parallel threads, and freed memory is not always given
//! back to the OS, so the growth caused by one session is measured in a child: this test binary
//! re-run with only [`load_probe_child`] selected and the model named in the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use masp_testkit::memory::measure;
use masp_testkit::synthetic::{self, ActivationModel, Layout, WeightsModel};

use crate::sessions::{run_x, session};

const MODEL_ENV: &str = "MASP_TESTKIT_PROBE_MODEL";
const REPORT_MARK: &str = "MASP_PROBE_REPORT ";

/// Loads the model, measuring the session creation, and runs it once on zeros.
fn probe(path: &Path, k: usize) -> serde_json::Value {
    // Warm up: the runtime library, its environment and thread pools are not the model's cost.
    let warm_up = synthetic::activation_model(
        &synthetic::cache_dir(),
        ActivationModel {
            bytes_per_input_sample: 4,
            name: "warm-up".into(),
        },
    )
    .unwrap();
    run_x(&mut session(&warm_up), [1, 4], &[0.0; 4]);

    let (mut session, load) = measure(|| session(path));
    let (_, run) = measure(|| run_x(&mut session, [1, k], &vec![0.0; k]));
    serde_json::json!({ "load": load, "run": run })
}

#[test]
fn load_probe_child() {
    let (path, k) = match std::env::var_os(MODEL_ENV) {
        Some(path) => (PathBuf::from(path), WeightsModel::INPUT_WIDTH as usize),
        // Run on its own (as in a normal test run): probe a small model.
        None => {
            let spec = WeightsModel {
                weight_bytes: 1 << 20,
                layout: Layout::Embedded,
                name: "probe-1m".into(),
            };
            (
                synthetic::weights_model(&synthetic::cache_dir(), spec).unwrap(),
                1024,
            )
        }
    };
    let report = probe(&path, k);
    // The test harness prints its own text on the same line first.
    println!("\n{REPORT_MARK}{report}");
    let rss = report["load"]["rss_after"].as_u64().unwrap();
    assert!(rss > 0, "{report}");
}

/// Runs [`load_probe_child`] on `model` in a fresh process; its report.
fn probe_in_child(model: &Path) -> serde_json::Value {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "synthetic_memory::load_probe_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODEL_ENV, model)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(REPORT_MARK).map(|(_, report)| report))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    serde_json::from_str(line).unwrap()
}

fn check_growth(layout: Layout) {
    let spec = WeightsModel {
        weight_bytes: 64 << 20,
        layout,
        name: "rss-64m".into(),
    };
    let weights = spec.actual_weight_bytes() as f64;
    let path = synthetic::weights_model(&synthetic::cache_dir(), spec).unwrap();
    let report = probe_in_child(&path);
    let load = &report["load"];
    let growth =
        load["rss_after"].as_u64().unwrap() as f64 - load["rss_before"].as_u64().unwrap() as f64;
    let ratio = growth / weights;
    assert!(
        (0.8..=3.0).contains(&ratio),
        "{layout:?}: session creation grew RSS by {ratio:.2}× the weights: {report}"
    );
}

#[test]
fn embedded_weights_are_resident_after_loading() {
    check_growth(Layout::Embedded);
}

#[test]
fn external_weights_are_resident_after_loading() {
    check_growth(Layout::External);
}
