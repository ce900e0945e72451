//! masp's VAD against the official silero-vad package (6.2.3, ONNX path, onnxruntime 1.31.1).
//!
//! The reference segments and probabilities were produced by
//! `scripts/reference/silero_reference.py` and committed next to each sample, so this test needs
//! no Python. Agreement is measured on 10 ms frames: frame i covers [i·10 ms, (i+1)·10 ms) and
//! counts as speech when its centre lies inside a segment.

use std::path::{Path, PathBuf};

use masp_model_registry::assets;
use masp_models::silero::{FRAME_SAMPLES, SileroVad};
use masp_models::vad::{SpeechSegment, VadParams, detect_speech, frame_agreement};
use masp_orchestrator::runtime::SessionOptions;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    segments: Vec<RefSegment>,
    frame_probs_first_64: Vec<f32>,
    audio: RefAudio,
}

#[derive(Deserialize)]
struct RefAudio {
    samples_16k: u64,
    source_sample_rate_hz: u32,
}

#[derive(Deserialize)]
struct RefSegment {
    start_sample: u64,
    end_sample: u64,
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/samples")
}

fn load_reference(name: &str) -> Reference {
    let path = samples_dir().join(format!("{name}.silero_reference.json"));
    let text = std::fs::read_to_string(&path).expect("reference file is committed");
    serde_json::from_str(&text).expect("reference parses")
}

fn vad() -> SileroVad {
    load(&assets::SILERO_VAD)
}

fn sequence_vad() -> SileroVad {
    let vad = load(&assets::SILERO_VAD_SEQUENCE);
    assert!(vad.is_sequence());
    vad
}

fn load(asset: &assets::Asset) -> SileroVad {
    let model = asset.locate().unwrap_or_else(|e| panic!("{e}"));
    SileroVad::load(
        &masp_testkit::memory::admitted(),
        asset.id,
        &model,
        SessionOptions::default(),
    )
    .unwrap()
}

fn check_file(file: &str, name: &str) -> f64 {
    check_file_with(vad(), file, name)
}

fn check_file_with(mut vad: SileroVad, file: &str, name: &str) -> f64 {
    let reference = load_reference(name);
    let outcome = detect_speech(&mut vad, &samples_dir().join(file), &VadParams::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let ours = &outcome.segments;
    let theirs: Vec<SpeechSegment> = reference
        .segments
        .iter()
        .map(|s| SpeechSegment {
            start_sample: s.start_sample,
            end_sample: s.end_sample,
        })
        .collect();
    let n = reference.audio.samples_16k.max(outcome.n_samples);
    let agreement = frame_agreement(ours, &theirs, n);
    eprintln!("{file}: ours {ours:?}\n  reference {theirs:?}\n  agreement {agreement:.4}");
    assert!(
        agreement >= 0.97,
        "{file}: frame agreement {agreement:.4} < 0.97"
    );
    agreement
}

#[test]
fn segments_agree_with_official_package_on_16k_speech() {
    let agreement = check_file("two_voices.wav", "two_voices");
    // Same samples in, same model: the segments should be identical, not merely close.
    assert!(agreement > 0.999, "agreement {agreement}");
}

#[test]
fn segments_agree_after_downmix_and_resampling() {
    let reference = load_reference("noisy_mix_44k_stereo");
    assert_eq!(reference.audio.source_sample_rate_hz, 44_100);
    check_file("noisy_mix_44k_stereo.flac", "noisy_mix_44k_stereo");
}

#[test]
fn frame_probabilities_match_official_package() {
    let reference = load_reference("two_voices");
    let (_, samples) = masp_audio::read_mono(&samples_dir().join("two_voices.wav"), 16_000)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vad = vad();
    for (i, (frame, expected)) in samples
        .chunks(FRAME_SAMPLES)
        .zip(&reference.frame_probs_first_64)
        .enumerate()
    {
        let p = vad.process_frame(frame).unwrap();
        assert!(
            (p - expected).abs() < 1e-4,
            "frame {i}: masp {p:.5}, official {expected:.5}"
        );
    }
}

#[test]
fn one_model_serves_many_files_after_reset() {
    // A second file must not inherit the first file's recurrent state.
    let mut vad = vad();
    let path = samples_dir().join("two_voices.wav");
    let first = detect_speech(&mut vad, &path, &VadParams::default()).unwrap();
    let second = detect_speech(&mut vad, &path, &VadParams::default()).unwrap();
    assert_eq!(first.segments, second.segments);
}

#[test]
fn the_sequence_export_gives_the_same_segments_many_frames_per_call() {
    let agreement = check_file_with(sequence_vad(), "two_voices.wav", "two_voices");
    assert!(agreement > 0.999, "agreement {agreement}");
    check_file_with(
        sequence_vad(),
        "noisy_mix_44k_stereo.flac",
        "noisy_mix_44k_stereo",
    );
}

#[test]
fn sequence_probabilities_match_the_per_frame_model() {
    let reference = load_reference("two_voices");
    let (_, samples) = masp_audio::read_mono(&samples_dir().join("two_voices.wav"), 16_000)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vad = sequence_vad();
    let mut probs = Vec::new();
    // Blocks of odd sizes (whole frames) exercise the context carried between calls.
    let n = 64 * FRAME_SAMPLES;
    for block in samples[..n].chunks(7 * FRAME_SAMPLES) {
        vad.process_block(block, &mut probs).unwrap();
    }
    let worst = probs
        .iter()
        .zip(&reference.frame_probs_first_64)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("sequence vs official per-frame probabilities: max abs difference {worst:.2e}");
    assert_eq!(probs.len(), 64);
    assert!(worst < 1e-3, "max abs difference {worst}");
}
