//! The orchestrator under the memory profiler: leak verdicts and cleanup effectiveness over
//! real load/unload cycles, and the report files.

use masp_budget::Bytes;
use masp_model_registry::manifest::Registry;
use masp_orchestrator::SequentialOrchestrator;
use masp_profiler::{LeakVerdict, MemoryProfiler, ProfilerConfig};

use crate::common::{budget, in_fresh_process, serial};

#[test]
fn fifty_silero_cycles_under_the_profiler_report_no_leak() {
    let _serial = serial();
    if !in_fresh_process("profiled::fifty_silero_cycles_under_the_profiler_report_no_leak") {
        return;
    }
    let limit = Bytes::from_gib(4);
    let profiler =
        MemoryProfiler::start(ProfilerConfig::default().with_budget_limit(limit)).unwrap();
    let mut orch = SequentialOrchestrator::builder(
        budget(limit),
        Registry::builtin(),
        masp_models::registry(),
    )
    .with_profiler(profiler.handle())
    .build()
    .unwrap();
    for _ in 0..50 {
        orch.load_model("silero-vad").unwrap();
        orch.unload_model("silero-vad");
    }
    let mut profile = profiler.stop();
    profile.kernel_peak = profile.kernel_peak.max(Some(orch.peak_rss()));
    let report = profile.report();
    eprintln!("{report}");
    assert_eq!(
        report.leak.verdict,
        LeakVerdict::NoLeak,
        "{:?}",
        report.leak
    );
    assert!(report.leak.n_cycles >= 49, "{:?}", report.leak);
    let effectiveness = report
        .cleanup
        .mean_effectiveness
        .expect("cleanup effectiveness reported");
    eprintln!(
        "cleanup effectiveness: {:.1}% over {} cycles",
        effectiveness * 100.0,
        report.cleanup.n_cycles
    );
    assert!(
        effectiveness > 0.5,
        "unloading gave back only {:.0}%",
        effectiveness * 100.0
    );
    let dir = std::env::var_os("MASP_TEST_REPORTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("masp-test-reports"))
        .join("fifty_silero_cycles");
    let paths = report.write_all(&dir).unwrap();
    eprintln!("report written: {paths:?}");
    let svg = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(svg.contains("silero-vad"), "the timeline names the model");
}
