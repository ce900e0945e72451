//! guard-onnx: load your own ONNX model only if a memory budget admits it, and profile the load.
//!
//! `guard-onnx MODEL.onnx BUDGET` (e.g. `512MiB`) reserves an estimate of the load's peak with
//! `masp-budget`, loads and runs the model once on zeros with `tract-onnx` (pure Rust, no ONNX
//! Runtime), frees it, and prints `masp-profiler`'s figures. A refused budget exits 1 with one
//! line on stderr. A program outside the masp workspace, using only its two lowest crates.

use std::error::Error;
use std::process::ExitCode;

use masp_budget::{Budget, BudgetConfig, Bytes, probe, trim};
use masp_profiler::{Event, MemoryProfiler, ProfilerConfig};
use tract_onnx::prelude::*;

/// Load peak per byte of model file: while tract loads, the bytes read, the decoded protobuf
/// and tract's own (repacked) tensors can all be alive, so up to three copies of the weights.
/// An upper bound from how tract loads, not a fit: on silero-vad (1.2 MiB) the fixed part
/// dominates, 14.7 MiB measured against 35.6 MiB reserved.
const PEAK_PER_FILE_BYTE: u64 = 3;
/// Graph, plan and one run's activations: paid whatever the weights' size.
const FIXED_OVERHEAD: Bytes = Bytes::from_mib(32);
/// Given to each symbolic input dimension (batch, frames): small, so the run stays cheap.
const SYMBOLIC_DIM: usize = 100;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard-onnx: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, budget_arg] = args.as_slice() else {
        return Err("usage: guard-onnx MODEL.onnx BUDGET (a size such as 512MiB)".into());
    };
    let limit: Bytes = budget_arg.parse()?;
    let file_size = Bytes::new(std::fs::metadata(model_path)?.len());
    let estimate = Bytes::new(file_size.get().saturating_mul(PEAK_PER_FILE_BYTE))
        .saturating_add(FIXED_OVERHEAD);

    let budget = Budget::new(BudgetConfig::default().with_limit(limit));
    // This program's own memory counts against the limit too, not only the model.
    budget.measure_baseline();
    let mut reservation = budget.try_reserve(estimate, &format!("model {model_path}"))?;

    let profiler = MemoryProfiler::start(ProfilerConfig::default().with_budget_limit(limit))?;
    let h = profiler.handle();
    let before = probe::process_rss().unwrap_or(Bytes::ZERO);
    h.mark(Event::load_start("model"));
    let model = tract_onnx::onnx()
        .model_for_path(model_path)?
        .into_optimized()?;
    let inputs = zero_inputs(&model)?;
    let model = model.into_runnable()?;
    h.mark(Event::load_end("model"));
    // Hold what the model really keeps, so later admissions see the truth, not the estimate.
    let resident = probe::process_rss()
        .unwrap_or(before)
        .saturating_sub(before);
    reservation.resize(resident)?;

    h.mark(Event::task_start("zeros"));
    let outputs = model.run(inputs)?;
    h.mark(Event::task_end("zeros"));
    h.mark(Event::unload("model"));
    drop((outputs, model));
    let trimmed = trim::release_freed_memory();
    h.mark(Event::Cleanup {
        returned: trimmed.returned,
    });
    drop(reservation);

    let report = profiler.stop().report();
    let load_peak = report
        .phases
        .iter()
        .find(|p| p.kind == masp_profiler::PhaseKind::Load);
    println!("model        {model_path} ({file_size})");
    println!("budget       {limit}, reserved {estimate} for the load");
    println!(
        "load peak    {}",
        load_peak.map_or(Bytes::ZERO, |p| p.peak.saturating_sub(before))
    );
    println!("resident     {resident} after load");
    println!(
        "run peak rss {}",
        report.peak.sampled.map_or(Bytes::ZERO, |p| p.rss)
    );
    for c in &report.cycles {
        println!(
            "cycle        {} loaded {}, returned {}",
            c.index, c.load_growth, c.returned
        );
    }
    Ok(())
}

/// A zero tensor of each input's declared type and shape (symbolic dimensions as
/// [`SYMBOLIC_DIM`]).
fn zero_inputs(model: &TypedModel) -> TractResult<TVec<TValue>> {
    (0..model.inputs.len())
        .map(|ix| {
            let fact = model.input_fact(ix)?;
            let shape: Vec<usize> = fact
                .shape
                .iter()
                .map(|d| {
                    d.as_i64()
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(SYMBOLIC_DIM)
                })
                .collect();
            Ok(Tensor::zero_dt(fact.datum_type, &shape)?.into_tvalue())
        })
        .collect()
}
