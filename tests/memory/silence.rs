//! Ten hours of silence: streamed in bounded memory, no speech found, every sample counted.

use masp_budget::{Bytes, probe};
use masp_model_registry::manifest::Registry;
use masp_models::vad::VadParams;
use masp_orchestrator::task::{TaskOutput, TaskParams};
use masp_orchestrator::{AudioTask, OrchestratorConfig};
use masp_testkit::fixtures;

use crate::common::{GIB, orchestrator};

#[test]
fn memory_ten_hours_of_silence_stream_in_the_memory_of_one_minute() {
    let dir = tempfile::tempdir().unwrap();
    let minute = fixtures::silent_flac(dir.path(), "minute.flac", 60.0).unwrap();
    let ten_hours = fixtures::silent_flac(dir.path(), "ten_hours.flac", 36_000.0).unwrap();
    let mut orch = orchestrator(
        Registry::builtin(),
        Bytes::new(2 * GIB),
        OrchestratorConfig::default(),
    );
    let mut peak_of = |path: &std::path::Path| {
        let task = AudioTask {
            label: format!("vad {}", path.display()),
            model: "silero-vad-sequence".into(),
            input: path.to_path_buf(),
            params: TaskParams::Vad(VadParams::default()),
        };
        probe::reset_peak_rss();
        let out = orch.process_task(&task).unwrap();
        let peak = probe::process_peak_rss().unwrap();
        let TaskOutput::Segments(outcome) = out else {
            panic!("not segments")
        };
        (outcome, peak)
    };
    // The model is loaded by the first task; both runs below have it resident.
    let _ = peak_of(&minute);
    let (short, short_peak) = peak_of(&minute);
    let (long, long_peak) = peak_of(&ten_hours);
    println!(
        "silence: 1 min peak {short_peak}, 10 h peak {long_peak} ({:.3}×); {} MiB file for 10 h",
        long_peak.get() as f64 / short_peak.get() as f64,
        std::fs::metadata(&ten_hours).unwrap().len() >> 20
    );
    assert!(short.segments.is_empty() && long.segments.is_empty());
    assert_eq!(long.n_samples, 36_000 * 16_000);
    assert_eq!(long.info.n_source_frames, Some(36_000 * 16_000));
    // Bounded: the 10-hour run peaks within 5% (or 4 MiB of noise) of the 1-minute run.
    let allowed = (short_peak.get() as f64 * 1.05) as u64 + (4 << 20);
    assert!(
        long_peak.get() <= allowed,
        "10 h of silence peaked at {long_peak}, 1 min at {short_peak}"
    );
}
