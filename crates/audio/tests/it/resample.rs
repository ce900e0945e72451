//! Resampling quality, output length and timing alignment; chunk-boundary properties.

use masp_audio::{ChunkStream, StreamOptions, read_mono, write_wav_f32};
use proptest::prelude::*;

use crate::common::{Enc, middle, rms, sine, wav_bytes, write_file, zero_crossing_hz};

/// `round(n * target / source)`, the documented output length.
fn expected_len(n: u64, source: u32, target: u32) -> u64 {
    ((u128::from(n) * u128::from(target) * 2 + u128::from(source)) / (2 * u128::from(source)))
        as u64
}

#[test]
fn sine_440_from_44k1_keeps_frequency_and_amplitude() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let amplitude = 0.5;
    write_wav_f32(&path, 44_100, &sine(440.0, amplitude, 44_100, 3 * 44_100)).unwrap();
    let (_, out) = read_mono(&path, 16_000).unwrap();
    assert_eq!(out.len(), 48_000);
    let body = middle(&out, 0.05);
    let f = zero_crossing_hz(body, 16_000);
    assert!((f - 440.0).abs() < 1.0, "frequency {f}");
    let want = amplitude / 2f64.sqrt();
    let got = rms(body);
    assert!((got / want - 1.0).abs() < 0.01, "rms {got}, want {want}");
}

#[test]
fn sine_through_every_common_rate_keeps_its_rms() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [
        8_000u32, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000, 44_101,
    ] {
        let path = dir.path().join(format!("{rate}.wav"));
        write_wav_f32(&path, rate, &sine(1000.0, 0.8, rate, rate as usize)).unwrap();
        let (_, out) = read_mono(&path, 16_000).unwrap();
        assert_eq!(out.len(), 16_000, "{rate}");
        let body = middle(&out, 0.05);
        let r = rms(body) / (0.8 / 2f64.sqrt());
        assert!((r - 1.0).abs() < 0.01, "{rate}: relative rms {r}");
        let f = zero_crossing_hz(body, 16_000);
        assert!((f - 1000.0).abs() < 2.0, "{rate}: {f} Hz");
    }
}

#[test]
fn content_above_target_nyquist_is_removed() {
    // 7.9 kHz is below 16 kHz's Nyquist and must pass; 10 kHz must not alias into the band.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hf.wav");
    write_wav_f32(&path, 48_000, &sine(10_000.0, 0.8, 48_000, 48_000)).unwrap();
    let (_, out) = read_mono(&path, 16_000).unwrap();
    let r = rms(middle(&out, 0.05));
    assert!(r < 0.001, "aliased energy {r}");
}

#[test]
fn click_keeps_its_time_after_resampling() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [8_000u32, 22_050, 44_100, 48_000, 44_101] {
        let mut samples = vec![0.0f32; 2 * rate as usize];
        samples[rate as usize] = 1.0; // at 1.000 s
        let path = dir.path().join(format!("click{rate}.wav"));
        write_wav_f32(&path, rate, &samples).unwrap();
        let (_, out) = read_mono(&path, 16_000).unwrap();
        let peak = (0..out.len())
            .max_by(|&a, &b| out[a].abs().total_cmp(&out[b].abs()))
            .unwrap();
        assert!(peak.abs_diff(16_000) <= 1, "{rate}: click at sample {peak}");
    }
}

#[test]
fn upsampling_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    write_wav_f32(&path, 16_000, &sine(440.0, 0.5, 16_000, 16_000)).unwrap();
    let (_, out) = read_mono(&path, 48_000).unwrap();
    assert_eq!(out.len(), 48_000);
    let f = zero_crossing_hz(middle(&out, 0.05), 48_000);
    assert!((f - 440.0).abs() < 1.0, "{f}");
}

/// All chunks of a stream, concatenated.
fn stream_all(path: &std::path::Path, options: StreamOptions) -> Vec<f32> {
    let mut stream = ChunkStream::open(path, options).unwrap();
    let mut all = Vec::new();
    let mut last_len = None;
    while let Some(chunk) = stream.next_chunk().unwrap() {
        assert!(!chunk.is_empty());
        if let Some(prev) = last_len {
            assert_eq!(
                prev, options.chunk_samples,
                "only the last chunk may be short"
            );
        }
        last_len = Some(chunk.len());
        all.extend_from_slice(chunk);
    }
    assert_eq!(stream.n_samples_emitted(), all.len() as u64);
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// No sample is lost or duplicated at chunk boundaries, and the length is right.
    #[test]
    fn chunking_matches_whole_file_decode(
        rate in prop::sample::select(vec![8_000u32, 16_000, 22_050, 44_100, 48_000]),
        n_channels in 1u16..=2,
        n_frames in 1usize..40_000,
        chunk_samples in 1usize..20_000,
        seed in any::<u32>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let interleaved: Vec<f32> = (0..n_frames * usize::from(n_channels))
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32 - 0.5)
            .collect();
        let path = write_file(dir.path(), "p.wav", &wav_bytes(n_channels, rate, Enc::F32, &interleaved));
        let whole = read_mono(&path, 16_000).unwrap().1;
        let chunked = stream_all(&path, StreamOptions::new(16_000, chunk_samples));
        prop_assert_eq!(&chunked, &whole);
        let want = expected_len(n_frames as u64, rate, 16_000);
        prop_assert!(chunked.len() as u64 >= want.saturating_sub(1) && chunked.len() as u64 <= want + 1,
            "len {} want {}", chunked.len(), want);
    }
}

#[test]
fn length_formula_is_exact_for_awkward_lengths() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [8_000u32, 22_050, 44_100, 48_000] {
        for n in [1usize, 2, 3, 441, 442, 2047, 2048, 2049, 100_003] {
            let path = write_file(
                dir.path(),
                "n.wav",
                &wav_bytes(1, rate, Enc::F32, &vec![0.1; n]),
            );
            let got = read_mono(&path, 16_000).unwrap().1.len() as u64;
            assert_eq!(
                got,
                expected_len(n as u64, rate, 16_000),
                "rate {rate}, n {n}"
            );
        }
    }
}
