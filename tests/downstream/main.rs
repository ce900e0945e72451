//! A downstream crate's tests: masp's built-in silero VAD checked through masp-testkit's public
//! API alone (`masp_testkit::*`), the way a crate that embeds masp would test its models.
// A test fails by panicking; unwrapping fixtures is part of the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Mutex, MutexGuard};

use masp_testkit::fixtures::{self, AudioSpec};
use masp_testkit::{Bytes, LeakVerdict, MinimalTestFramework};

/// Both tests measure the process's memory: never at the same time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn silero_vad_passes_the_model_suite_under_a_1_gib_budget() {
    let _serial = serial();
    let framework = MinimalTestFramework::builtin(Bytes::from_gib(1)).with_reports_from_env();
    let result = framework.model_tests("silero-vad");
    println!("{result}");
    result.assert_success();
    let report = result.report.as_ref().unwrap();
    assert_eq!(report.cycles.len(), framework.config().cycles);
    assert_eq!(report.models[0].leak.verdict, LeakVerdict::NoLeak);
    masp_testkit::assert_peak_below!(report, Bytes::from_gib(1));
}

#[test]
fn silero_vad_runs_a_batch_of_fixtures_sequentially_and_cleans_up() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![fixtures::speech_sample().unwrap()];
    inputs.extend(fixtures::generated_batch(dir.path(), 2.0).unwrap());
    inputs.push(
        fixtures::write_audio(dir.path(), "long.wav", &AudioSpec::tone(300.0, 60.0)).unwrap(),
    );
    let framework = MinimalTestFramework::builtin(Bytes::from_gib(1)).with_report_dir(dir.path());
    let result = framework.orchestration_tests(&["silero-vad"], &inputs);
    println!("{result}");
    result.assert_success();
    let paths = result.reports.as_ref().unwrap();
    let svg = std::fs::read_to_string(&paths.profile.as_ref().unwrap()[2]).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("silero-vad"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.suite_json).unwrap()).unwrap();
    assert_eq!(json["checks"].as_array().unwrap().len(), 5);
}
