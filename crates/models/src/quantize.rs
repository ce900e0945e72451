//! Int8 silero VAD: calibrate the sequence export's convolutions on real audio, quantise them
//! ([`masp_model_registry::onnx::quantize`]), and check the result against the float model.
//!
//! The quantised model keeps the float model's interface, so it loads as an ordinary `vad` model.
//! Whether it is good enough is measured, not assumed: [`compare_vad`] runs both models over
//! the same files and reports the fraction of 10 ms frames on which their speech segments
//! agree; masp accepts a quantised VAD only at ≥ 97% ([`MIN_AGREEMENT`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use masp_audio::{ChunkStream, StreamOptions};
use masp_model_registry::onnx::quantize::{
    QuantizeOptions, QuantizeReport, Range, RangeCollector, calibration_tensors, quantize_convs,
    with_outputs,
};
use masp_model_registry::onnx::{ModelProto, write_model};
use ort::value::TensorRef;

use crate::silero::{
    CONTEXT_SAMPLES, FRAME_SAMPLES, SAMPLE_RATE_HZ, SileroVad, fill_sequence_rows,
};
use crate::vad::{self, VadParams};
use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::{Error, Result};

/// The lowest segment agreement with the float model at which a quantised VAD is accepted.
pub const MIN_AGREEMENT: f64 = 0.97;

/// Default percentile of `|x|` that bounds each activation range: the rarest 0.001% of values
/// saturate instead of stretching the scale for all the others.
pub const DEFAULT_PERCENTILE: f64 = 99.999;

/// Check a calibration percentile: a number above 0 and at most 100 (NaN would silently pick
/// the smallest range).
///
/// # Errors
/// [`Error::InvalidParameter`] naming `percentile`.
///
/// # Examples
///
/// ```
/// use masp_models::quantize::{DEFAULT_PERCENTILE, check_percentile};
///
/// assert!(check_percentile(DEFAULT_PERCENTILE).is_ok());
/// assert!(check_percentile(f64::NAN).is_err());
/// assert!(check_percentile(0.0).is_err());
/// ```
pub fn check_percentile(percentile: f64) -> Result<()> {
    if percentile > 0.0 && percentile <= 100.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "percentile",
            reason: format!("{percentile} is not a percentile above 0 and at most 100"),
        })
    }
}

/// Frames per calibration call (~2 s, as the VAD runs).
const BLOCK_FRAMES: usize = 64;

/// What calibration saw.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Activation range per tensor, keyed by tensor name.
    pub ranges: HashMap<String, Range>,
    /// Frames (32 ms) of audio run through the model.
    pub frames: u64,
}

/// What calibrating and quantising a VAD needs besides the audio.
#[derive(Debug, Clone, Copy)]
pub struct VadCalibration<'a> {
    /// The sessions' admission: a reservation of the caller's for the float model and its
    /// calibration copy (about three times the model file).
    pub admitted: Admitted<'a>,
    /// The model's name, in errors and in the temporary file's name.
    pub name: &'a str,
    /// The float model: silero's sequence export.
    pub model: &'a ModelProto,
    /// Receives a temporary copy of the model with the calibrated tensors as extra outputs.
    pub work_dir: &'a Path,
    /// Which convolutions to quantise.
    pub options: &'a QuantizeOptions,
    /// Percentile of `|x|` that bounds each activation range ([`DEFAULT_PERCENTILE`]).
    pub percentile: f64,
}

/// Runs the float sequence-export VAD over `files` and records the range of every tensor its
/// quantisable convolutions read or write.
///
/// # Errors
/// [`Error::Registry`] when the model has nothing to quantise, [`Error::ModelInterface`] when it
/// is not silero's sequence export (`input`, `h`, `c`), [`Error::InvalidParameter`] naming a file
/// that cannot be decoded, [`Error::Inference`] from ONNX Runtime.
pub fn calibrate_vad(setup: &VadCalibration<'_>, files: &[PathBuf]) -> Result<Calibration> {
    check_percentile(setup.percentile)?;
    let VadCalibration {
        admitted,
        name,
        model,
        work_dir,
        options,
        percentile,
    } = *setup;
    let tensors = calibration_tensors(model, options)?;
    let instrumented = work_dir.join(format!(".{name}.calibrate.onnx"));
    write_model(&instrumented, &with_outputs(model, &tensors))?;
    let session = admitted.session(name, &instrumented, SessionOptions::default());
    let _ = std::fs::remove_file(&instrumented);
    let mut session = session?;
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    if !["input", "h", "c"].iter().all(|n| inputs.contains(n)) {
        return Err(Error::ModelInterface {
            model: name.into(),
            reason: format!(
                "calibration runs silero's sequence export (inputs input, h, c); found {inputs:?}"
            ),
        });
    }
    let infer = |e: ort::Error| Error::Inference {
        model: name.into(),
        reason: e.to_string(),
    };
    let mut collectors: Vec<RangeCollector> =
        tensors.iter().map(|_| RangeCollector::new()).collect();
    let mut frames = 0u64;
    let row = CONTEXT_SAMPLES + FRAME_SAMPLES;
    let mut rows = Vec::new();
    for file in files {
        let unreadable = |e: masp_audio::Error| Error::InvalidParameter {
            name: "calibration audio",
            reason: format!("{}: {e}", file.display()),
        };
        let mut stream = ChunkStream::open(
            file,
            StreamOptions::new(SAMPLE_RATE_HZ, BLOCK_FRAMES * FRAME_SAMPLES),
        )
        .map_err(unreadable)?;
        let mut context = [0.0f32; CONTEXT_SAMPLES];
        let mut h = vec![0.0f32; 128];
        let mut c = vec![0.0f32; 128];
        while let Some(chunk) = stream.next_chunk().map_err(unreadable)? {
            let n = fill_sequence_rows(&mut context, chunk, &mut rows);
            if n == 0 {
                continue;
            }
            let outputs = session
                .run(ort::inputs![
                    "input" => TensorRef::from_array_view(([n, row], &rows[..])).map_err(infer)?,
                    "h" => TensorRef::from_array_view(([1usize, 1, 128], &h[..])).map_err(infer)?,
                    "c" => TensorRef::from_array_view(([1usize, 1, 128], &c[..])).map_err(infer)?
                ])
                .map_err(infer)?;
            for (tensor, collector) in tensors.iter().zip(&mut collectors) {
                let (_, values) = outputs[tensor.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(infer)?;
                collector.add(values);
            }
            let (_, hn) = outputs["hn"].try_extract_tensor::<f32>().map_err(infer)?;
            let (_, cn) = outputs["cn"].try_extract_tensor::<f32>().map_err(infer)?;
            if hn.len() != 128 || cn.len() != 128 {
                return Err(Error::Inference {
                    model: name.into(),
                    reason: "state of the wrong size".into(),
                });
            }
            h.copy_from_slice(hn);
            c.copy_from_slice(cn);
            frames += n as u64;
        }
    }
    let mut ranges = HashMap::new();
    for (tensor, collector) in tensors.iter().zip(&collectors) {
        let range = collector
            .range(percentile)
            .ok_or_else(|| Error::InvalidParameter {
                name: "calibration audio",
                reason: format!("no finite value reached tensor {tensor:?}: give speech audio"),
            })?;
        ranges.insert(tensor.clone(), range);
    }
    Ok(Calibration { ranges, frames })
}

/// Calibrates the model on `files` and returns its int8 version. Private: the only way to an
/// int8 model on disk is [`install_vad_int8`], which checks it first.
fn quantize_vad(
    setup: &VadCalibration<'_>,
    files: &[PathBuf],
) -> Result<(ModelProto, QuantizeReport, Calibration)> {
    let calibration = calibrate_vad(setup, files)?;
    let (quantized, report) = quantize_convs(setup.model, &calibration.ranges, setup.options)?;
    Ok((quantized, report, calibration))
}

/// How one file came out with the float and the quantised model.
#[derive(Debug, Clone)]
pub struct VadComparison {
    /// The file.
    pub path: PathBuf,
    /// Fraction of 10 ms frames on which the two models' speech segments agree.
    pub agreement: f64,
    /// Segments found by the float model and by the quantised one.
    pub segments: (usize, usize),
    /// Time each model took over the file (decoding included, as `masp vad` runs).
    pub time: (Duration, Duration),
}

/// Runs the VAD models at `float` and `quantized` over each of `paths` with default
/// parameters, each model loaded once. One result per path: a file that cannot be decoded fails
/// alone.
///
/// # Errors
/// [`Error::Load`] when a model cannot be loaded; per file, [`Error::Audio`] naming a file that
/// cannot be decoded and [`Error::Inference`] from ONNX Runtime.
pub fn compare_vad(
    admitted: &Admitted<'_>,
    float: &Path,
    quantized: &Path,
    paths: &[PathBuf],
) -> Result<Vec<Result<VadComparison>>> {
    let params = VadParams::default();
    let mut float_vad = SileroVad::load(admitted, "float", float, SessionOptions::default())?;
    let mut int8_vad = SileroVad::load(admitted, "int8", quantized, SessionOptions::default())?;
    let run = |vad: &mut SileroVad, path: &Path| -> Result<(vad::VadOutcome, Duration)> {
        let started = Instant::now();
        let outcome = vad::detect_speech(vad, path, &params)?;
        Ok((outcome, started.elapsed()))
    };
    Ok(paths
        .iter()
        .map(|path| {
            let (a, ta) = run(&mut float_vad, path)?;
            let (b, tb) = run(&mut int8_vad, path)?;
            Ok(VadComparison {
                path: path.clone(),
                agreement: vad::frame_agreement(&a.segments, &b.segments, a.n_samples),
                segments: (a.segments.len(), b.segments.len()),
                time: (ta, tb),
            })
        })
        .collect())
}

/// An int8 VAD that passed the check and was installed.
#[derive(Debug)]
pub struct Installed {
    /// Where it is.
    pub path: PathBuf,
    /// The lowest frame agreement with the float model over the check files.
    pub worst_agreement: f64,
    /// What was quantised.
    pub report: QuantizeReport,
    /// What calibration saw.
    pub calibration: Calibration,
    /// Each check file and how it came out.
    pub checked: Vec<(PathBuf, Result<VadComparison>)>,
}

/// Why [`install_vad_int8`] installed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// Calibration, quantisation or loading failed.
    #[error(transparent)]
    Model(#[from] Error),
    /// Not one check file could be run.
    #[error("no check file could be run: the int8 copy was not kept")]
    NothingChecked {
        /// Each check file and why it failed.
        checked: Vec<(PathBuf, Result<VadComparison>)>,
    },
    /// The int8 copy agrees with the float model on too few frames.
    #[error(
        "the int8 copy agrees with {model} on only {:.2}% of 10 ms frames (at least {:.0}% \
         needed): not kept. Calibrate on more varied speech, raise --percentile, or --exclude \
         the first convolution",
        100.0 * worst_agreement,
        100.0 * MIN_AGREEMENT
    )]
    Disagrees {
        /// The float model's name.
        model: String,
        /// The lowest agreement seen.
        worst_agreement: f64,
        /// Each check file and how it came out.
        checked: Vec<(PathBuf, Result<VadComparison>)>,
    },
    /// The checked copy could not be written or put in place.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The install gate of the int8 VAD: calibrate the float model (`setup`, its file at `float`)
/// on `calibrate`, quantise it, and compare the int8 copy with the float model on `check`
/// (the calibration audio when empty). The copy is written to `dst` only when it agrees on at
/// least [`MIN_AGREEMENT`] of 10 ms frames of every check file that could be run; until then
/// it exists only under a temporary name, removed on refusal.
///
/// # Errors
/// [`InstallError`]: nothing was installed.
pub fn install_vad_int8(
    setup: &VadCalibration<'_>,
    float: &Path,
    calibrate: &[PathBuf],
    check: &[PathBuf],
    dst: &Path,
) -> std::result::Result<Installed, InstallError> {
    let (quantized, report, calibration) = quantize_vad(setup, calibrate)?;
    let file_name = dst
        .file_name()
        .map_or_else(|| "model.onnx".into(), |f| f.to_string_lossy().into_owned());
    let pending = setup
        .work_dir
        .join(format!(".{file_name}.{}.checking", std::process::id()));
    write_model(&pending, &quantized).map_err(Error::from)?;
    let check = if check.is_empty() { calibrate } else { check };
    let compared = compare_vad(&setup.admitted, float, &pending, check);
    let refuse = |e: InstallError| {
        let _ = std::fs::remove_file(&pending);
        Err(e)
    };
    let checked: Vec<(PathBuf, Result<VadComparison>)> = match compared {
        Ok(results) => check.iter().cloned().zip(results).collect(),
        Err(e) => return refuse(e.into()),
    };
    let worst = checked
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|c| c.agreement)
        .fold(None, |w: Option<f64>, a| Some(w.map_or(a, |w| w.min(a))));
    let Some(worst) = worst else {
        return refuse(InstallError::NothingChecked { checked });
    };
    if worst < MIN_AGREEMENT {
        return refuse(InstallError::Disagrees {
            model: setup.name.to_owned(),
            worst_agreement: worst,
            checked,
        });
    }
    if let Err(e) = masp_model_registry::atomic::persist(&pending, dst) {
        return refuse(InstallError::Write {
            path: dst.to_path_buf(),
            reason: e.to_string(),
        });
    }
    Ok(Installed {
        path: dst.to_path_buf(),
        worst_agreement: worst,
        report,
        calibration,
        checked,
    })
}
