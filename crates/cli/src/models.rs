//! `masp models`: list, verify, optimise and calibrate the models masp knows.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use masp_budget::{Bytes, probe};
use masp_model_registry::manifest::ModelSource;
use masp_model_registry::onnx::{self, ExternalizeOptions, OnnxMetadata};

use crate::Outcome;
use crate::context::{self, Common, Session};

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

pub fn run(args: &ModelsArgs) -> anyhow::Result<Outcome> {
    match &args.command {
        ModelsCommand::List => list(&args.common),
        ModelsCommand::Verify => verify(&args.common),
        ModelsCommand::Optimize { name, out } => optimize(&args.common, name, out.as_ref()),
        ModelsCommand::Quantize {
            name,
            calibrate,
            check,
            out,
            percentile,
            exclude,
        } => quantize(
            &args.common,
            name,
            &QuantizeArgs {
                calibrate,
                check,
                out: out.as_ref(),
                percentile: *percentile,
                exclude,
            },
        ),
        ModelsCommand::Calibrate { names, cycles } => calibrate(&args.common, names, *cycles),
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
    let registry = context::registry(common)?;
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

/// A model's manifest entry and its file, sha256-verified.
fn model_file(
    common: &Common,
    name: &str,
) -> anyhow::Result<(masp_model_registry::manifest::ModelSpec, PathBuf)> {
    let registry = context::registry(common)?;
    let spec = registry.get(name).with_context(|| {
        format!(
            "unknown model {name:?} (known: {})",
            registry.names().join(", ")
        )
    })?;
    let src = spec.verified_path()?;
    Ok((spec.clone(), src))
}

fn optimize(common: &Common, name: &str, out: Option<&PathBuf>) -> anyhow::Result<Outcome> {
    let (spec, src) = model_file(common, name)?;
    let dst = out
        .cloned()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.lean.onnx")));
    let report = onnx::externalize(&src, &dst, ExternalizeOptions::default())?;
    println!(
        "wrote {} ({}) + {} ({} in {} tensors, 4096-aligned)",
        report.model_path.display(),
        report.model_file_bytes,
        report
            .data_path
            .as_ref()
            .map_or("no data file".into(), |p| p.display().to_string()),
        report.bytes_moved,
        report.tensors_moved
    );
    // Measure both layouts the way masp loads them: the lean one without pre-packing, one at a
    // time, under a reservation of the original's load.
    let mut session = Session::start(common)?;
    let reservation = session.orchestrator.reserve_loads(name, 1)?;
    let admitted = masp_orchestrator::runtime::Admitted::by(
        masp_orchestrator::runtime::Runtime::get()?,
        &reservation,
    );
    let measure = |path: &std::path::Path, prepacking: bool| -> anyhow::Result<(f64, Bytes)> {
        masp_budget::trim::release_freed_memory();
        probe::reset_peak_rss();
        let before = probe::process_rss().unwrap_or_default();
        let started = Instant::now();
        let options = masp_orchestrator::runtime::SessionOptions {
            intra_op_threads: 1,
            prepacking,
        };
        let loaded = admitted.session(name, path, options)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let peak = probe::process_peak_rss()
            .unwrap_or_default()
            .saturating_sub(before);
        drop(loaded);
        masp_budget::trim::release_freed_memory();
        Ok((ms, peak))
    };
    let (ms_before, peak_before) = measure(&src, true)?;
    let (ms_after, peak_after) = measure(&dst, false)?;
    drop(reservation);
    session.finish()?;
    println!(
        "load: {ms_before:.1} ms, peak +{peak_before} (original) → {ms_after:.1} ms, peak +{peak_after} (lean)"
    );
    if let ModelSource::Asset(_) = spec.source {
        println!(
            "to use it, add it to your masp.toml as a model with path = \"{}\"",
            dst.display()
        );
    }
    Ok(Outcome::AllSucceeded)
}

struct QuantizeArgs<'a> {
    calibrate: &'a [PathBuf],
    check: &'a [PathBuf],
    out: Option<&'a PathBuf>,
    percentile: f64,
    exclude: &'a [String],
}

fn quantize(common: &Common, name: &str, args: &QuantizeArgs<'_>) -> anyhow::Result<Outcome> {
    use masp_models::quantize::{InstallError, VadComparison, install_vad_int8};
    if !(args.percentile > 50.0 && args.percentile <= 100.0) {
        anyhow::bail!("--percentile must be in (50, 100], got {}", args.percentile);
    }
    let (_, src) = model_file(common, name)?;
    let model = onnx::read_model(&src)?;
    let dst = args
        .out
        .cloned()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.int8.onnx")));
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let options = onnx::quantize::QuantizeOptions {
        exclude: args.exclude.to_vec(),
    };
    let started = Instant::now();
    // The float model and a copy (calibration, then the int8 model beside the float one).
    let mut session = Session::start(common)?;
    let reservation = session.orchestrator.reserve_loads(name, 2)?;
    let setup = masp_models::quantize::VadCalibration {
        admitted: masp_orchestrator::runtime::Admitted::by(
            masp_orchestrator::runtime::Runtime::get()?,
            &reservation,
        ),
        name,
        model: &model,
        work_dir: &dir,
        options: &options,
        percentile: args.percentile,
    };
    if args.check.is_empty() {
        println!(
            "checking on the calibration audio (pass --check with other audio for an independent figure)"
        );
    }
    let print_checked = |checked: &[(PathBuf, masp_orchestrator::Result<VadComparison>)]| {
        println!(
            "{:<40} {:>9} {:>14} {:>10} {:>10} {:>7}",
            "file", "agreement", "segments f/q", "float", "int8", "speed"
        );
        let mut failed = 0;
        for (path, result) in checked {
            match result {
                Ok(c) => println!(
                    "{:<40} {:>8.2}% {:>14} {:>9.2}s {:>9.2}s {:>6.2}×",
                    path.display(),
                    100.0 * c.agreement,
                    format!("{}/{}", c.segments.0, c.segments.1),
                    c.time.0.as_secs_f64(),
                    c.time.1.as_secs_f64(),
                    c.time.0.as_secs_f64() / c.time.1.as_secs_f64().max(1e-9),
                ),
                Err(e) => {
                    failed += 1;
                    eprintln!("masp: {}: {}", path.display(), crate::one_line(e));
                }
            }
        }
        failed
    };
    let installed = install_vad_int8(&setup, &src, args.calibrate, args.check, &dst);
    drop(reservation);
    session.finish()?;
    let installed = match installed {
        Ok(installed) => installed,
        Err(e) => {
            if let InstallError::Disagrees { checked, .. }
            | InstallError::NothingChecked { checked } = &e
            {
                print_checked(checked);
            }
            return Err(e.into());
        }
    };
    let (report, calibration) = (&installed.report, &installed.calibration);
    println!(
        "calibrated on {} file(s), {:.1} min of audio, in {:.1} s; {} convolution(s) now int8 \
         (weights {} → {})",
        args.calibrate.len(),
        calibration.frames as f64 * 0.032 / 60.0,
        started.elapsed().as_secs_f64(),
        report.quantized.len(),
        Bytes::new(report.float_weight_bytes),
        Bytes::new(report.quantized_weight_bytes),
    );
    for (node, why) in &report.skipped {
        println!("  left in float: {node} ({why})");
    }
    let failed = print_checked(&installed.checked);
    let file_name = dst
        .file_name()
        .map_or_else(|| "model.onnx".into(), |f| f.to_string_lossy().into_owned());
    // Manifest paths are relative to the manifest's directory (and may not leave it).
    println!(
        "wrote {} (worst agreement {:.2}%). To use it, add to a masp.toml in {}:\n\n\
         [[model]]\nname = \"{name}-int8\"\nkind = \"vad\"\npath = \"{file_name}\"\n\n\
         then run `masp vad --model {name}-int8 …` there (or pass --manifest)",
        dst.display(),
        100.0 * installed.worst_agreement,
        dir.display(),
    );
    Ok(Outcome::from_failures(failed))
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
        for _ in 0..cycles.max(1) {
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
