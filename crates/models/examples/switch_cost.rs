//! What a model switch costs in masp against bare ONNX Runtime: the orchestrator's
//! `load_model` + `unload_model` (verify, estimate, reserve, load measuring the peak, calibrate;
//! drop, trim, check RSS) side by side with a bare session create + drop + trim of the same file,
//! alternated round by round in one process.
//!
//! ```text
//! cargo run --release -p masp-models --example switch_cost -- [--weight-mib N] [--rounds R]
//! ```
//!
//! Models: a weights model of N MiB (default 256) embedded and externalized (the lean layout),
//! each once without and once with a `sha256` in its manifest entry (masp verifies a declared
//! hash before every load), plus the built-in silero VAD. Prints a Markdown table of the
//! median time per switch and the ratio to bare.
// An example fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use masp_budget::{Budget, BudgetConfig, Bytes, trim};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::SequentialOrchestrator;
use masp_orchestrator::runtime::SessionOptions;
use masp_testkit::synthetic::{self, Layout, WeightsModel};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sha256_hex(path: &Path) -> String {
    masp_model_registry::assets::sha256_file(path).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let weight_mib = arg("--weight-mib", 256);
    let rounds = arg("--rounds", 7) as usize;
    let dir = tempfile::tempdir().unwrap();
    let embedded = synthetic::weights_model(
        dir.path(),
        WeightsModel {
            weight_bytes: weight_mib << 20,
            layout: Layout::Embedded,
            name: "w".into(),
        },
    )
    .unwrap();
    // The generator may name its file after its parameters; the copies sit beside it.
    let model_dir = embedded.parent().unwrap().to_path_buf();
    let embedded_file = embedded.file_name().unwrap().to_string_lossy().into_owned();
    let lean = model_dir.join("w.lean.onnx");
    masp_model_registry::onnx::externalize(&embedded, &lean, Default::default()).unwrap();
    let mut manifest = String::new();
    for (name, file, hash) in [
        ("embedded", embedded_file.as_str(), None),
        (
            "embedded-sha256",
            embedded_file.as_str(),
            Some(sha256_hex(&embedded)),
        ),
        ("lean", "w.lean.onnx", None),
        ("lean-sha256", "w.lean.onnx", Some(sha256_hex(&lean))),
    ] {
        write!(
            manifest,
            "[[model]]\nname = \"{name}\"\nkind = \"generic\"\npath = \"{file}\"\n{}\
             [model.generic]\ninput = \"x\"\nwindow_ms = 64\n\n",
            hash.map(|h| format!("sha256 = \"{h}\"\n"))
                .unwrap_or_default()
        )
        .unwrap();
    }
    let manifest_path = model_dir.join("masp.toml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let mut registry = Registry::builtin();
    registry.add_manifest(&manifest_path).unwrap();
    let admitted = masp_testkit::memory::admitted();
    let mut orch = SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(8))),
        registry,
        masp_models::registry(),
    )
    .build()
    .unwrap();
    let silero = masp_model_registry::assets::SILERO_VAD_SEQUENCE
        .locate()
        .unwrap();
    // (label, masp model name, file, prepacking in the bare session as masp sets it)
    let cases = [
        (
            "silero VAD (built-in, sha256 pinned)",
            "silero-vad-sequence",
            silero.as_path(),
            true,
        ),
        ("embedded, no sha256", "embedded", embedded.as_path(), true),
        (
            "embedded, sha256 declared",
            "embedded-sha256",
            embedded.as_path(),
            true,
        ),
        ("lean, no sha256", "lean", lean.as_path(), false),
        (
            "lean, sha256 declared",
            "lean-sha256",
            lean.as_path(),
            false,
        ),
    ];
    let mut table = format!(
        "{weight_mib} MiB of weights, median of {rounds} rounds, bare and masp alternated\n\n\
         | model | bare create+drop | masp load+unload | masp / bare |\n|---|---|---|---|\n"
    );
    for (label, name, path, prepacking) in cases {
        // One warm-up of each, so page cache and the runtime's one-time costs are paid.
        orch.load_model(name).unwrap();
        orch.unload_model(name);
        let (mut bare, mut masp) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            let options = SessionOptions {
                intra_op_threads: 1,
                prepacking,
            };
            drop(admitted.session(name, path, options).unwrap());
            trim::release_freed_memory();
            bare.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            orch.load_model(name).unwrap();
            orch.unload_model(name);
            masp.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let (b, m) = (median(bare), median(masp));
        writeln!(table, "| {label} | {b:.2} ms | {m:.2} ms | {:.2}× |", m / b).unwrap();
    }
    print!("{table}");
}
