//! `masp models optimize` and `masp models quantize`: new files of a model — its lean layout,
//! its int8 copy through masp-models' install gate — measured under a reservation.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use masp_budget::{Bytes, probe};
use masp_model_registry::manifest::ModelSource;
use masp_model_registry::onnx::{self, ExternalizeOptions};

use crate::Outcome;
use crate::context::{self, Session};
use crate::flags::Common;

/// A model's manifest entry and its file, sha256-verified.
fn model_file(
    common: &Common,
    name: &str,
) -> anyhow::Result<(masp_model_registry::manifest::ModelSpec, PathBuf)> {
    let registry = context::registry(&crate::config::Settings::resolve(common)?)?;
    let spec = registry.get(name).with_context(|| {
        format!(
            "unknown model {name:?} (known: {})",
            registry.names().join(", ")
        )
    })?;
    let src = spec.verified_path()?;
    Ok((spec.clone(), src))
}

pub fn optimize(common: &Common, name: &str, out: Option<&PathBuf>) -> anyhow::Result<Outcome> {
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
        let options = masp_orchestrator::runtime::SessionOptions {
            intra_op_threads: 1,
            prepacking,
        };
        let (loaded, memory) = probe::measure(|| admitted.session(name, path, options));
        drop(loaded?);
        masp_budget::trim::release_freed_memory();
        Ok((memory.elapsed.as_secs_f64() * 1e3, memory.peak_growth()))
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

pub struct QuantizeArgs<'a> {
    pub calibrate: &'a [PathBuf],
    pub check: &'a [PathBuf],
    pub out: Option<&'a PathBuf>,
    pub percentile: f64,
    pub exclude: &'a [String],
}

pub fn quantize(common: &Common, name: &str, args: &QuantizeArgs<'_>) -> anyhow::Result<Outcome> {
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
