//! `masp models`: list, verify, optimise and calibrate the models masp knows.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use masp_model_registry::onnx::OnnxMetadata;

use crate::Outcome;
use crate::context::{self, Session};
use crate::flags::Common;
use crate::model_files;

/// Flags of `masp models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List every model: kind, file, size, and the memory estimate masp would reserve.
    List,
    /// Check every model's file: present, sha256 as pinned or declared, a readable ONNX file.
    Verify,
    /// Write a lean copy of a model whose weights live in a 4096-aligned external-data file, so
    /// ONNX Runtime memory-maps them instead of copying; prints load time and peak before/after.
    Optimize {
        /// The model's name.
        name: String,
        /// Where to write the copy (default: `<name>.lean.onnx` in the current directory).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write an int8 copy of a VAD model (silero's sequence export): its convolutions are
    /// quantised with activation ranges measured on `--calibrate` audio, then the copy is run
    /// beside the original over `--check` audio and kept only if their speech segments agree on
    /// at least 97% of 10 ms frames. Prints the agreement and the speed of each.
    Quantize {
        /// The model's name.
        name: String,
        /// Audio to measure activation ranges on (speech, a few minutes is plenty).
        #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
        calibrate: Vec<PathBuf>,
        /// Audio to check the copy on (default: the calibration audio; other audio gives an
        /// independent figure).
        #[arg(long, value_name = "FILE", num_args = 1..)]
        check: Vec<PathBuf>,
        /// Where to write the copy (default: `<name>.int8.onnx` in the current directory).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Percentile of |x| that bounds each activation range.
        #[arg(long, default_value_t = masp_models::quantize::DEFAULT_PERCENTILE)]
        percentile: f64,
        /// Convolutions (node names) to leave in float.
        #[arg(long, value_name = "NODE")]
        exclude: Vec<String>,
    },
    /// Load and unload models to measure their memory; later runs use the measurements.
    Calibrate {
        /// Models to calibrate (default: all).
        names: Vec<String>,
        /// Load/unload cycles per model.
        #[arg(long, default_value_t = 2)]
        cycles: usize,
    },
}

/// The most load/unload cycles `masp models calibrate` runs per model: 100. The estimate keeps
/// the largest of a few measured peaks; a count beyond this is a mistyped flag that would
/// load models for hours.
const MAX_CALIBRATION_CYCLES: usize = 100;

pub fn run(args: &ModelsArgs) -> anyhow::Result<Outcome> {
    match &args.command {
        ModelsCommand::List => list(&args.common),
        ModelsCommand::Verify => verify(&args.common),
        ModelsCommand::Optimize { name, out } => {
            model_files::optimize(&args.common, name, out.as_ref())
        }
        ModelsCommand::Quantize {
            name,
            calibrate,
            check,
            out,
            percentile,
            exclude,
        } => {
            // Before the model is read or any audio calibrated.
            masp_models::quantize::check_percentile(*percentile)?;
            model_files::quantize(
                &args.common,
                name,
                &model_files::QuantizeArgs {
                    calibrate,
                    check,
                    out: out.as_ref(),
                    percentile: *percentile,
                    exclude,
                },
            )
        }
        ModelsCommand::Calibrate { names, cycles } => {
            if !(1..=MAX_CALIBRATION_CYCLES).contains(cycles) {
                anyhow::bail!(
                    "--cycles {cycles}: give 1 to {MAX_CALIBRATION_CYCLES} load/unload cycles"
                );
            }
            calibrate(&args.common, names, *cycles)
        }
    }
}

fn list(common: &Common) -> anyhow::Result<Outcome> {
    let session = Session::start(common)?;
    let orch = &session.orchestrator;
    println!(
        "{:<20} {:<18} {:>10} {:>12} {:<10} file",
        "model", "kind", "size", "load peak", "estimate"
    );
    for spec in orch.registry().models() {
        let path = spec
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| e.to_string());
        match orch.prepare(&spec.name) {
            Ok(p) => {
                let size = OnnxMetadata::read(&p.path)
                    .map(|m| m.file_bytes.saturating_add(m.external_weight_bytes));
                let size = size.map(|b| b.to_string()).unwrap_or_else(|_| "?".into());
                println!(
                    "{:<20} {:<18} {size:>10} {:>12} {:<10} {path}",
                    spec.name,
                    spec.kind.as_str(),
                    p.estimate.load_peak.to_string(),
                    p.estimate.source.to_string()
                );
            }
            Err(e) => println!(
                "{:<20} {:<18} {:>10} {:>12} {:<10} {path}  ({})",
                spec.name,
                spec.kind.as_str(),
                "-",
                "-",
                "missing",
                crate::one_line(&e)
            ),
        }
    }
    let _ = session.finish();
    Ok(Outcome::AllSucceeded)
}

fn verify(common: &Common) -> anyhow::Result<Outcome> {
    let registry = context::registry(&crate::config::Settings::resolve(common)?)?;
    let mut failed = 0;
    for spec in registry.models() {
        let result = spec
            .verified_path()
            .map_err(anyhow::Error::from)
            .and_then(|path| {
                OnnxMetadata::read(&path)
                    .map(|m| (path, m))
                    .map_err(anyhow::Error::from)
            })
            .and_then(|(path, meta)| {
                spec.check_interface(&meta)
                    .map(|()| (path, meta))
                    .map_err(|reason| anyhow::anyhow!("does not fit its manifest entry: {reason}"))
            });
        match result {
            Ok((path, meta)) => {
                let hash = if spec.sha256.is_some() {
                    "sha256 ok"
                } else {
                    "no sha256 declared"
                };
                println!(
                    "ok      {:<20} {hash}; opset {}; {} weights; {}",
                    spec.name,
                    meta.opsets.iter().map(|o| o.version).max().unwrap_or(0),
                    meta.total_weight_bytes(),
                    path.display()
                );
            }
            Err(e) => {
                failed += 1;
                println!("FAILED  {:<20} {e:#}", spec.name);
            }
        }
    }
    Ok(if failed == 0 {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}

fn calibrate(common: &Common, names: &[String], cycles: usize) -> anyhow::Result<Outcome> {
    let mut session = Session::start(common)?;
    let names: Vec<String> = if names.is_empty() {
        session
            .orchestrator
            .registry()
            .models()
            .map(|m| m.name.clone())
            .collect()
    } else {
        names.to_vec()
    };
    let mut failed = 0;
    for name in &names {
        for _ in 0..cycles {
            if let Err(e) = session.orchestrator.load_model(name) {
                failed += 1;
                eprintln!("masp: {name}: {}", crate::one_line(&e));
                break;
            }
            session.orchestrator.unload_model(name);
        }
    }
    let table = session.orchestrator.calibration().error_table();
    // Rows are calibration keys (`name@sha256 prefix`), marked when they describe loads that
    // were their process's first session (whose peaks hold ONNX Runtime's one-time globals).
    let label = |r: &masp_model_registry::estimate::EstimateError| {
        if r.first_in_process {
            format!("{} (first)", r.model)
        } else {
            r.model.clone()
        }
    };
    let width = table
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<width$} {:>12} {:>12} {:>12} {:>9} {:>6}",
        "model", "metadata", "calibrated", "latest", "metadata", "loads"
    );
    for row in table {
        println!(
            "{:<width$} {:>12} {:>12} {:>12} {:>9} {:>6}",
            label(&row),
            row.predicted.map_or("-".into(), |b| b.to_string()),
            row.calibrated.to_string(),
            row.latest.to_string(),
            match (row.predicted, row.metadata_error_pct) {
                (None, _) => "-".into(),
                // A load peak of a few KiB (mapped weights): a percentage would mean nothing.
                (Some(_), None) => "n/a".into(),
                (Some(_), Some(p)) => format!("{p:+.0}%"),
            },
            row.n_loads
        );
    }
    session.finish()?;
    Ok(if failed == 0 {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}
