//! Guarding your own model load with a budget `Reservation`.
//!
//! Run with `MASP_BUDGET=1GiB cargo run -p masp-budget --example guard_own_model [size]`, where
//! `size` (default `256MiB`) is how big the pretend model is. Try a size over the budget to see
//! the refusal.

use std::process::ExitCode;

use masp_budget::{Budget, BudgetConfig, Bytes, Reservation, trim};

/// A loaded model together with the permit that admitted it: the memory stays accounted for
/// exactly as long as the weights are alive, and cannot be forgotten.
struct LoadedModel {
    weights: Vec<u8>,
    _permit: Reservation,
}

fn load(budget: &Budget, name: &str, size: Bytes) -> Result<LoadedModel, masp_budget::Error> {
    // Reserve before allocating: a refusal costs nothing.
    let permit = budget.try_reserve(size, &format!("model {name}"))?;
    let len = usize::try_from(size.get()).unwrap_or(usize::MAX);
    // Touch every page, as real weights would be.
    let weights = vec![1u8; len];
    Ok(LoadedModel {
        weights,
        _permit: permit,
    })
}

fn main() -> ExitCode {
    let size = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("256MiB")
        .parse::<Bytes>()
    {
        Ok(size) => size,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match BudgetConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let budget = Budget::new(config);
    budget.measure_baseline();
    println!("budget: {}", budget.describe());
    println!("before: {}", budget.snapshot());

    match load(&budget, "demo", size) {
        Ok(model) => {
            println!(
                "loaded {} of weights",
                Bytes::new(model.weights.len() as u64)
            );
            println!("during: {}", budget.snapshot());
            drop(model);
            let outcome = trim::release_freed_memory();
            println!(
                "after:  {} (trim returned {})",
                budget.snapshot(),
                outcome.returned
            );
            ExitCode::SUCCESS
        }
        Err(refused) => {
            eprintln!("refused: {refused}");
            ExitCode::FAILURE
        }
    }
}
