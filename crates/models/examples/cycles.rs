//! Load/unload cycles of silero VAD, printing RSS every 10 cycles: bare ONNX Runtime sessions
//! (`bare`) side by side with the orchestrator's verified load/unload/cleanup (`orch`), to tell
//! the runtime's own warm-up from anything masp adds.
//!
//! `cargo run --release -p masp-models --example cycles -- orch 1000`
// An example fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use masp_budget::{Budget, BudgetConfig, Bytes, probe, trim};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::SequentialOrchestrator;
use masp_orchestrator::runtime::SessionOptions;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("orch", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let path = masp_model_registry::assets::SILERO_VAD.locate().unwrap();
    let admitted = masp_testkit::memory::admitted();
    let mut orch = SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(4))),
        Registry::builtin(),
        masp_models::registry(),
    )
    .build()
    .unwrap();
    for i in 0..=n {
        if mode == "bare" {
            drop(
                admitted
                    .session("silero-vad", &path, SessionOptions::default())
                    .unwrap(),
            );
            trim::release_freed_memory();
        } else {
            orch.load_model("silero-vad").unwrap();
            orch.unload_model("silero-vad");
        }
        if i % 10 == 0 {
            // Anonymous (heap, arenas) and file-backed (the runtime library's pages) apart: a
            // step in the file-backed part is code being paged in, not memory held.
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .map_or("?".into(), |l| l[name.len()..].trim().to_string())
            };
            println!(
                "{mode} cycle {i:5}: RSS {} (anon {}, file {})",
                probe::process_rss().unwrap(),
                field("RssAnon:"),
                field("RssFile:")
            );
        }
    }
}
