//! Log-mel features against open-voicefilter-lite 0.2.0's own (librosa) features, streaming
//! invariance, windowing and configuration errors.
//!
//! The reference frames were produced by `scripts/reference/voicefilter_reference.py` and are
//! committed in `assets/samples/`, so these tests need no Python.

use std::path::{Path, PathBuf};

use masp_audio::features::{
    FeatureConfigError, LogMel, LogMelConfig, MelWindower, VOICEFILTER_N_MELS,
    VOICEFILTER_STRIDE_FRAMES, VOICEFILTER_WINDOW_FRAMES, mel_windows,
};
use masp_audio::read_mono;
use proptest::prelude::*;

/// Maximum absolute difference allowed against the package, in log10(power) units.
///
/// Measured: 9.5e-7 on the whole file, i.e. one or two float32 ulps (see the output); the package
/// rounds its FFT output to complex64 and takes |X|², the mel product and log10 in float32,
/// while masp stays in f64 until the log. A pure-f32 pipeline measured 5e-5.
const MAX_ABS_ERROR: f32 = 1e-3;

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples")
}

fn two_voices() -> Vec<f32> {
    read_mono(&samples_dir().join("two_voices.wav"), 16_000)
        .unwrap()
        .1
}

/// Reads a little-endian float32 C-order 2-D `.npy` file (the format numpy's `np.save` writes).
fn read_npy_f32_2d(path: &Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[header_start..header_start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = &shape[..shape.find(')').unwrap()];
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(dims.len(), 2, "{header}");
    let data: Vec<f32> = bytes[header_start + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    (dims[0], dims[1], data)
}

fn reference_json() -> serde_json::Value {
    let path = samples_dir().join("two_voices.voicefilter_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// (max abs error, index of the frame where it occurs).
fn max_abs_error(ours: &[f32], theirs: &[f32], n_mels: usize) -> (f32, usize) {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs(), i / n_mels))
        .fold((0.0, 0), |acc, x| if x.0 > acc.0 { x } else { acc })
}

#[test]
fn logmel_matches_open_voicefilter_lite_on_the_whole_file() {
    let (n_frames, n_mels, reference) =
        read_npy_f32_2d(&samples_dir().join("two_voices.voicefilter_logmel.npy"));
    assert_eq!(n_mels, VOICEFILTER_N_MELS);
    let samples = two_voices();
    let mut logmel = LogMel::new(LogMelConfig::default()).unwrap();
    let ours = logmel.frames(&samples);
    assert_eq!(ours.len() / n_mels, n_frames, "frame count");
    let (err, frame) = max_abs_error(&ours, &reference, n_mels);
    eprintln!(
        "log-mel vs open-voicefilter-lite: {n_frames} frames, max abs error {err:.3e} (frame {frame})"
    );
    assert!(err <= MAX_ABS_ERROR, "max abs error {err} at frame {frame}");
}

#[test]
fn logmel_matches_open_voicefilter_lite_on_turn_excerpts() {
    // Excerpts start at arbitrary samples (not multiples of the hop), so their frames are not a
    // subset of the whole file's: this checks framing from an arbitrary start.
    let reference = reference_json();
    let samples = two_voices();
    let mut logmel = LogMel::new(LogMelConfig::default()).unwrap();
    for excerpt in reference["excerpts"].as_array().unwrap() {
        let start = excerpt["start_sample"].as_u64().unwrap() as usize;
        let end = excerpt["end_sample"].as_u64().unwrap() as usize;
        let ours = logmel.frames(&samples[start..end]);
        assert_eq!(
            ours.len() / VOICEFILTER_N_MELS,
            excerpt["n_frames"].as_u64().unwrap() as usize
        );
        let theirs: Vec<f32> = excerpt["logmel_first_frames"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| {
                f.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        let (err, frame) = max_abs_error(&ours[..theirs.len()], &theirs, VOICEFILTER_N_MELS);
        eprintln!("excerpt {start}..{end}: max abs error {err:.3e} (frame {frame})");
        assert!(
            err <= MAX_ABS_ERROR,
            "excerpt {start}: {err} at frame {frame}"
        );
    }
}

#[test]
fn windows_are_the_packages_slices_of_frames() {
    let (n_frames, n_mels, frames) =
        read_npy_f32_2d(&samples_dir().join("two_voices.voicefilter_logmel.npy"));
    let windows = mel_windows(
        &frames,
        n_mels,
        VOICEFILTER_WINDOW_FRAMES,
        VOICEFILTER_STRIDE_FRAMES,
    )
    .unwrap();
    let window_len = VOICEFILTER_WINDOW_FRAMES * n_mels;
    let n_windows = windows.len() / window_len;
    // The package: n_win = 1 + (T - 80) // 40.
    assert_eq!(n_windows, 1 + (n_frames - 80) / 40);
    assert_eq!(
        n_windows as u64,
        reference_json()["full"]["n_windows"].as_u64().unwrap()
    );
    for (i, window) in windows.chunks_exact(window_len).enumerate() {
        let start = i * VOICEFILTER_STRIDE_FRAMES * n_mels;
        assert_eq!(window, &frames[start..start + window_len], "window {i}");
    }
}

#[test]
fn a_signal_shorter_than_one_window_is_zero_padded_to_one() {
    // 0.5 s: 47 frames, fewer than 80; the package pads with zeros (log10 units).
    let samples: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let mut logmel = LogMel::new(LogMelConfig::default()).unwrap();
    let frames = logmel.frames(&samples);
    assert_eq!(frames.len(), 47 * 40);
    let windows = mel_windows(&frames, 40, 80, 40).unwrap();
    assert_eq!(windows.len(), 80 * 40);
    assert_eq!(&windows[..frames.len()], &frames[..]);
    assert!(windows[frames.len()..].iter().all(|&v| v == 0.0));
    // Fewer samples than one FFT: no frame, hence no window.
    assert!(logmel.frames(&samples[..511]).is_empty());
    assert!(mel_windows(&[], 40, 80, 40).unwrap().is_empty());
}

#[test]
fn digital_silence_is_log10_of_the_offset() {
    let mut logmel = LogMel::new(LogMelConfig::default()).unwrap();
    let frames = logmel.frames(&[0.0; 1600]);
    assert_eq!(frames.len(), 7 * 40);
    assert!(frames.iter().all(|&v| v == -10.0), "{:?}", &frames[..4]);
}

#[test]
fn invalid_configurations_are_rejected_with_the_offending_value() {
    let base = LogMelConfig::default();
    let cases = [
        LogMelConfig {
            sample_rate_hz: 0,
            ..base
        },
        LogMelConfig {
            fft_len_samples: 1,
            ..base
        },
        LogMelConfig {
            window_len_samples: 513,
            ..base
        },
        LogMelConfig {
            hop_samples: 0,
            ..base
        },
        LogMelConfig { n_mels: 0, ..base },
        LogMelConfig {
            f_max_hz: 8000.5,
            ..base
        },
        LogMelConfig {
            f_min_hz: f64::NAN,
            ..base
        },
        LogMelConfig {
            log_offset: 0.0,
            ..base
        },
    ];
    for config in cases {
        let err = LogMel::new(config).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.ends_with('.') && !msg.contains('\n'), "{msg}");
        assert!(
            !msg.chars().next().unwrap().is_uppercase(),
            "message starts lowercase: {msg}"
        );
    }
    assert_eq!(
        LogMel::new(LogMelConfig {
            window_len_samples: 513,
            ..base
        })
        .unwrap_err(),
        FeatureConfigError::WindowLen {
            window_len_samples: 513,
            fft_len_samples: 512
        }
    );
    assert!(matches!(
        MelWindower::new(40, 80, 81),
        Err(FeatureConfigError::StrideFrames { .. })
    ));
    assert!(matches!(
        MelWindower::new(40, 0, 1),
        Err(FeatureConfigError::WindowFrames { .. })
    ));
}

#[test]
fn other_recipes_build_and_produce_the_configured_shape() {
    // An HTK/Hann/peak-normalised 80-band recipe (Whisper-like sizes): shape only.
    let config = LogMelConfig {
        fft_len_samples: 400,
        window_len_samples: 400,
        window: masp_audio::features::WindowFunction::Hann,
        n_mels: 80,
        mel_scale: masp_audio::features::MelScale::Htk,
        mel_norm: masp_audio::features::MelNorm::PeakOne,
        ..LogMelConfig::default()
    };
    let mut logmel = LogMel::new(config).unwrap();
    let frames = logmel.frames(&vec![0.1; 16_000]);
    assert_eq!(frames.len(), config.n_frames(16_000) * 80);
    assert!(frames.iter().all(|v| v.is_finite()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Frames do not depend on how the stream is cut into chunks: bit-identical.
    #[test]
    fn streamed_frames_equal_batch_frames(
        cuts in proptest::collection::vec(0usize..3000, 0..8),
        hop in 1usize..=512,
        n in 0usize..6000,
    ) {
        let samples: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2003) as f32 / 2003.0 - 0.5).collect();
        let config = LogMelConfig { hop_samples: hop, ..LogMelConfig::default() };
        let mut logmel = LogMel::new(config).unwrap();
        let batch = logmel.frames(&samples);
        prop_assert_eq!(batch.len(), config.n_frames(n) * 40);
        let mut streamed = Vec::new();
        let mut rest = &samples[..];
        for cut in cuts {
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            logmel.push(chunk, &mut streamed);
            rest = tail;
        }
        logmel.push(rest, &mut streamed);
        prop_assert_eq!(logmel.n_frames_out() as usize, config.n_frames(n));
        prop_assert_eq!(streamed, batch);
    }

    /// Windows do not depend on how the frames are cut into chunks.
    #[test]
    fn streamed_windows_equal_batch_windows(
        cuts in proptest::collection::vec(0usize..300, 0..6),
        n_frames in 0usize..400,
        window in 1usize..100,
        stride_frac in 0.01f64..=1.0,
    ) {
        let n_mels = 3;
        let stride = ((window as f64 * stride_frac).ceil() as usize).clamp(1, window);
        let frames: Vec<f32> = (0..n_frames * n_mels).map(|i| i as f32).collect();
        let batch = mel_windows(&frames, n_mels, window, stride).unwrap();
        let mut windower = MelWindower::new(n_mels, window, stride).unwrap();
        let mut streamed = Vec::new();
        let mut rest = &frames[..];
        for cut in cuts {
            let (chunk, tail) = rest.split_at((cut * n_mels).min(rest.len()));
            windower.push(chunk, &mut streamed);
            rest = tail;
        }
        windower.push(rest, &mut streamed);
        windower.finish(&mut streamed);
        prop_assert_eq!(&streamed, &batch);
        let expected = match n_frames {
            0 => 0,
            n if n < window => 1,
            n => 1 + (n - window) / stride,
        };
        prop_assert_eq!(batch.len(), expected * window * n_mels);
    }
}
