//! Profiles a simulated run (two models, several tasks, one leaking) and writes the reports.
//!
//! `cargo run -p masp-profiler --example profile_run [out-dir]` (default `target/profile-demo`)
//! writes report.txt, report.json and timeline.svg there.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use masp_budget::{Bytes, trim};
use masp_profiler::{Event, MemoryProfiler, ProfilerConfig};

/// `n` bytes with every page written, like loaded weights.
fn touched(n: usize) -> Vec<u8> {
    std::hint::black_box(vec![0x5Au8; n])
}

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/profile-demo"), PathBuf::from);
    let config = ProfilerConfig::default().with_budget_limit(Bytes::from_mib(512));
    let profiler = match MemoryProfiler::start(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let h = profiler.handle();
    let mut leak = Vec::new();
    for round in 0..4 {
        for (model, size, leaks) in [
            ("vad-small", 64 << 20, false),
            ("asr-large", 192 << 20, true),
        ] {
            h.mark(Event::load_start(model));
            let weights = touched(size);
            h.mark(Event::load_end(model));
            for clip in 0..2 {
                let task = format!("clip-{round}-{clip}");
                h.mark(Event::task_start(&task));
                let activations = touched(size / 4);
                std::thread::sleep(Duration::from_millis(150));
                drop(activations);
                if leaks {
                    leak.push(touched(6 << 20));
                }
                h.mark(Event::task_end(&task));
            }
            h.mark(Event::unload(model));
            drop(weights);
            let outcome = trim::release_freed_memory();
            h.mark(Event::Cleanup {
                returned: outcome.returned,
            });
            std::thread::sleep(Duration::from_millis(80));
        }
        h.note(&format!("round {round} done"));
    }
    let report = profiler.stop().report();
    print!("{report}");
    match report.write_all(&dir) {
        Ok(paths) => {
            println!("\nwrote {}", paths.svg.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
