//! Int8 silero VAD: calibrated on one recording, checked on another, with the real runtime.

use masp_model_registry::assets;
use masp_model_registry::onnx::quantize::QuantizeOptions;
use masp_model_registry::onnx::{ModelProto, read_model};
use masp_models::quantize::{
    DEFAULT_PERCENTILE, MIN_AGREEMENT, VadCalibration, compare_vad, install_vad_int8,
};
use masp_models::silero::SileroVad;
use masp_orchestrator::runtime::SessionOptions;

use crate::common::{sample, serial};

/// Calibration of `model` (named `name`) with the default options, working in `dir`.
fn setup<'a>(
    name: &'a str,
    model: &'a ModelProto,
    dir: &'a std::path::Path,
    options: &'a QuantizeOptions,
) -> VadCalibration<'a> {
    VadCalibration {
        admitted: masp_testkit::memory::admitted(),
        name,
        model,
        work_dir: dir,
        options,
        percentile: DEFAULT_PERCENTILE,
    }
}

#[test]
fn the_int8_sequence_vad_agrees_with_the_float_one_on_other_audio() {
    let _serial = serial();
    let float = assets::SILERO_VAD_SEQUENCE.locate().unwrap();
    let model = read_model(&float).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Calibrated on the noisy 44.1 kHz stereo mix, checked on the clean two-voice sample.
    let options = QuantizeOptions::default();
    let path = dir.path().join("int8.onnx");
    let installed = install_vad_int8(
        &setup("silero-vad-sequence", &model, dir.path(), &options),
        &float,
        &[sample("noisy_mix_44k_stereo.flac")],
        &[sample("two_voices.wav")],
        &path,
    )
    .unwrap();
    let (report, calibration) = (&installed.report, &installed.calibration);
    assert!(installed.worst_agreement >= MIN_AGREEMENT);
    // All six convolutions (STFT, four encoder layers, output) are int8; the LSTM stays float.
    assert_eq!(report.quantized.len(), 6, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert!(report.quantized_weight_bytes * 3 < report.float_weight_bytes);
    assert!(calibration.frames > 300, "{}", calibration.frames);
    let quantized = read_model(&path).unwrap();
    let graph = quantized.graph.as_ref().unwrap();
    let ops = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!((ops("QLinearConv"), ops("Conv"), ops("LSTM")), (6, 0, 1));
    // The calibration copy and the copy under check are gone: only the installed model is left.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, std::slice::from_ref(&path));
    // The same interface: it loads as silero's sequence export.
    let admitted = masp_testkit::memory::admitted();
    let vad = SileroVad::load(&admitted, "int8", &path, SessionOptions::default()).unwrap();
    assert!(vad.is_sequence());
    let mut compared = compare_vad(&admitted, &float, &path, &[sample("two_voices.wav")]).unwrap();
    let c = compared.pop().unwrap().unwrap();
    eprintln!(
        "int8 vs float on two_voices.wav: agreement {:.4}, segments {:?}",
        c.agreement, c.segments
    );
    assert!(c.agreement >= MIN_AGREEMENT, "{c:?}");
    assert_eq!(c.segments.0, c.segments.1, "{c:?}");
}

#[test]
fn calibration_audio_that_cannot_be_read_is_named() {
    let _serial = serial();
    let model = read_model(&assets::SILERO_VAD_SEQUENCE.locate().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.wav");
    std::fs::write(&bad, b"not audio").unwrap();
    let options = QuantizeOptions::default();
    let dst = dir.path().join("int8.onnx");
    let err = install_vad_int8(
        &setup("silero-vad-sequence", &model, dir.path(), &options),
        &assets::SILERO_VAD_SEQUENCE.locate().unwrap(),
        std::slice::from_ref(&bad),
        &[],
        &dst,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("notes.wav"), "{err}");
    assert!(!dst.exists());
}

#[test]
fn the_per_frame_export_has_nothing_to_quantise_in_its_main_graph() {
    let _serial = serial();
    let model = read_model(&assets::SILERO_VAD.locate().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = QuantizeOptions::default();
    let dst = dir.path().join("int8.onnx");
    let err = install_vad_int8(
        &setup("silero-vad", &model, dir.path(), &options),
        &assets::SILERO_VAD.locate().unwrap(),
        &[sample("two_voices.wav")],
        &[],
        &dst,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no convolution"), "{err}");
    assert!(!dst.exists());
}
