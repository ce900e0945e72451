//! Decoding each supported format, downmixing, passthrough exactness and `AudioInfo`.

use masp_audio::{ChunkStream, StreamOptions, read_mono, write_wav_f32, write_wav_i16};

use crate::common::{Enc, fixture, middle, rms, sine, wav_bytes, write_file, zero_crossing_hz};

#[test]
fn i16_wav_at_target_rate_is_bit_exact_passthrough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    let ints: Vec<i16> = (0..5000)
        .map(|i| ((i * 7919) % 65_536 - 32_768) as i16)
        .collect();
    let samples: Vec<f32> = ints.iter().map(|&v| f32::from(v) / 32_768.0).collect();
    write_wav_i16(&path, 16_000, &samples).unwrap();
    let (info, got) = read_mono(&path, 16_000).unwrap();
    assert_eq!(info.codec, "pcm_s16le");
    assert_eq!(info.n_source_frames, Some(5000));
    // Symphonia's i16 -> f32 conversion is v / 32768.
    assert_eq!(got, samples);
}

#[test]
fn f32_wav_at_target_rate_is_bit_exact_passthrough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    let samples = sine(1234.5, 0.9, 8_000, 3_333);
    write_wav_f32(&path, 8_000, &samples).unwrap();
    let (info, got) = read_mono(&path, 8_000).unwrap();
    assert_eq!(info.codec, "pcm_f32le");
    assert_eq!(info.source_sample_rate_hz, 8_000);
    assert_eq!(got.len(), samples.len());
    assert!(
        got.iter()
            .zip(&samples)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn stereo_is_averaged_to_mono() {
    let dir = tempfile::tempdir().unwrap();
    let frames = [(0.5f32, 0.25f32), (-1.0, 1.0), (0.75, 0.75), (0.0, -0.5)];
    let interleaved: Vec<f32> = frames.iter().flat_map(|&(l, r)| [l, r]).collect();
    let path = write_file(
        dir.path(),
        "s.wav",
        &wav_bytes(2, 16_000, Enc::F32, &interleaved),
    );
    let (info, got) = read_mono(&path, 16_000).unwrap();
    assert_eq!(info.n_channels, 2);
    assert_eq!(got, vec![0.375, 0.0, 0.75, -0.25]);
}

#[test]
fn six_channels_are_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let interleaved: Vec<f32> = (0..6).map(|c| c as f32 * 0.1).chain([0.6; 6]).collect();
    let path = write_file(
        dir.path(),
        "51.wav",
        &wav_bytes(6, 16_000, Enc::F32, &interleaved),
    );
    let (info, got) = read_mono(&path, 16_000).unwrap();
    assert_eq!(info.n_channels, 6);
    assert_eq!(got.len(), 2);
    assert!((got[0] - 0.25).abs() < 1e-6, "{got:?}");
    assert!((got[1] - 0.6).abs() < 1e-6, "{got:?}");
}

/// Decodes a fixture to 16 kHz and checks header facts, length and the 440 Hz tone.
/// `rms_tol` is relative: lossless formats keep the amplitude, lossy encoders may shift it.
fn check_tone_fixture(
    name: &str,
    codec: &str,
    rate: u32,
    n_channels: usize,
    len_tol: u64,
    rms_tol: f64,
) {
    let (info, got) = read_mono(&fixture(name), 16_000).unwrap();
    assert_eq!(info.codec, codec, "{name}");
    assert_eq!(info.source_sample_rate_hz, rate, "{name}");
    assert_eq!(info.n_channels, n_channels, "{name}");
    let expected_len = 16_000u64;
    assert!(
        (got.len() as u64).abs_diff(expected_len) <= len_tol,
        "{name}: {} samples, want {expected_len} +- {len_tol}",
        got.len()
    );
    let body = middle(&got, 0.1);
    let f = zero_crossing_hz(body, 16_000);
    assert!((f - 440.0).abs() < 3.0, "{name}: {f} Hz");
    // The source is a sine of amplitude 0.5.
    let r = rms(body) / (0.5 / 2f64.sqrt());
    assert!((r - 1.0).abs() < rms_tol, "{name}: relative rms {r}");
}

#[test]
fn flac_stereo_44k1() {
    check_tone_fixture("tone440_44k1_stereo.flac", "flac", 44_100, 2, 1, 0.01);
}

#[test]
fn flac_mono_16k_passthrough_length_is_exact() {
    check_tone_fixture("tone440_16k_mono.flac", "flac", 16_000, 1, 0, 0.01);
}

#[test]
fn ogg_vorbis_stereo_48k() {
    check_tone_fixture("tone440_48k_stereo.ogg", "vorbis", 48_000, 2, 1, 0.02);
}

#[test]
fn mp3_mono_22k05() {
    // The LAME tag lets the decoder trim encoder delay and padding, so the length is right.
    // lame's psychoacoustics lower this tone's level by ~7% (sox's own decode agrees).
    check_tone_fixture("tone440_22k05_mono.mp3", "mp3", 22_050, 1, 1, 0.1);
}

#[test]
fn aiff_mono_16k() {
    let (info, got) = read_mono(&fixture("tone440_16k_mono.aiff"), 16_000).unwrap();
    assert_eq!(info.n_channels, 1);
    assert_eq!(info.n_source_frames, Some(4000));
    assert_eq!(got.len(), 4000);
}

#[test]
fn info_reports_header_facts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    write_wav_i16(&path, 22_050, &vec![0.0; 33_075]).unwrap();
    let stream = ChunkStream::open(&path, StreamOptions::default()).unwrap();
    let info = stream.info();
    assert_eq!(info.path, path);
    assert_eq!(info.source_sample_rate_hz, 22_050);
    assert_eq!(info.n_channels, 1);
    assert_eq!(info.n_source_frames, Some(33_075));
    assert_eq!(info.duration_s(), Some(1.5));
    assert_eq!(stream.n_samples_emitted(), 0);
}

#[test]
fn chunks_have_exact_size_and_last_is_shorter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    write_wav_i16(&path, 16_000, &sine(300.0, 0.5, 16_000, 10_000)).unwrap();
    let mut stream = ChunkStream::open(&path, StreamOptions::new(16_000, 3_000)).unwrap();
    let mut sizes = vec![];
    while let Some(chunk) = stream.next_chunk().unwrap() {
        sizes.push(chunk.len());
        assert_eq!(
            stream.n_samples_emitted(),
            sizes.iter().sum::<usize>() as u64
        );
    }
    assert_eq!(sizes, vec![3_000, 3_000, 3_000, 1_000]);
    assert!(stream.next_chunk().unwrap().is_none(), "stays at the end");
    assert_eq!(stream.n_source_frames_decoded(), 10_000);
}

#[test]
fn iterator_yields_owned_chunks_matching_next_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    write_wav_f32(&path, 44_100, &sine(440.0, 0.5, 44_100, 20_000)).unwrap();
    let options = StreamOptions::new(16_000, 1_000);
    let owned: Vec<f32> = ChunkStream::open(&path, options)
        .unwrap()
        .flat_map(Result::unwrap)
        .collect();
    let (_, whole) = read_mono(&path, 16_000).unwrap();
    assert_eq!(owned, whole);
}

#[test]
fn file_extension_does_not_matter() {
    // Probing is by content; a FLAC named .wav still decodes.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("tone440_16k_mono.flac")).unwrap();
    let path = write_file(dir.path(), "actually_flac.wav", &bytes);
    let (info, got) = read_mono(&path, 16_000).unwrap();
    assert_eq!(info.codec, "flac");
    assert_eq!(got.len(), 16_000);
}
