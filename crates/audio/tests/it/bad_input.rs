//! Every kind of bad input maps to its own typed error, and nothing panics.

use std::io;

use masp_audio::{ChunkStream, Error, OptionsError, StreamOptions, read_mono};
use proptest::prelude::*;

use crate::common::{Enc, fixture, sine, wav_bytes, write_file};

/// Opens and drains `path` at 16 kHz, returning the first error.
fn decode(path: &std::path::Path) -> Result<Vec<f32>, Error> {
    read_mono(path, 16_000).map(|(_, s)| s)
}

#[test]
fn missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.wav");
    match decode(&path) {
        Err(Error::Io { path: p, error }) => {
            assert_eq!(p, path);
            assert_eq!(error.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn directory_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    match decode(dir.path()) {
        Err(Error::Io { error, .. }) => assert_eq!(error.kind(), io::ErrorKind::IsADirectory),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "empty.wav", b"");
    let e = decode(&path).unwrap_err();
    assert!(matches!(e, Error::EmptyFile), "{e:?}");
    assert_eq!(e.to_string(), "empty file (0 bytes)");
}

#[test]
fn text_file_named_wav_is_not_audio() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "notes.wav",
        "just some text\n".repeat(100).as_bytes(),
    );
    let e = decode(&path).unwrap_err();
    assert!(matches!(e, Error::NotAudio), "{e:?}");
    assert_eq!(e.to_string(), "not a recognised audio format");
}

#[test]
fn truncated_wav_is_detected_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = wav_bytes(2, 16_000, Enc::I16, &vec![0.1; 2 * 1000]);
    // Keep the 44-byte header and 400 of the 1000 declared stereo frames (4 bytes each).
    bytes.truncate(44 + 400 * 4 + 2);
    let path = write_file(dir.path(), "cut.wav", &bytes);
    match ChunkStream::open(&path, StreamOptions::default()) {
        Err(Error::Truncated {
            declared_frames,
            found_frames,
        }) => {
            assert_eq!((declared_frames, found_frames), (1000, 400));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decode(&path).unwrap_err().to_string(),
        "truncated file: header declares 1000 frames but only 400 are present"
    );
}

#[test]
fn truncated_flac_is_detected_at_end_of_stream() {
    let path = fixture("truncated_44k1_stereo.flac");
    let mut stream = ChunkStream::open(&path, StreamOptions::new(16_000, 1_000)).unwrap();
    assert_eq!(stream.info().n_source_frames, Some(44_100));
    let mut n_ok = 0;
    let err = loop {
        match stream.next_chunk() {
            Ok(Some(_)) => n_ok += 1,
            Ok(None) => panic!("truncation not detected after {n_ok} chunks"),
            Err(e) => break e,
        }
    };
    match err {
        Error::Truncated {
            declared_frames,
            found_frames,
        } => {
            assert_eq!(declared_frames, 44_100);
            assert!(found_frames > 0 && found_frames < 44_100, "{found_frames}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        stream.next_chunk().unwrap().is_none(),
        "finished after the error"
    );
}

#[test]
fn wav_with_zero_samples() {
    let dir = tempfile::tempdir().unwrap();
    for enc in [Enc::I16, Enc::F32] {
        let path = write_file(dir.path(), "zero.wav", &wav_bytes(1, 16_000, enc, &[]));
        let e = decode(&path).unwrap_err();
        assert!(matches!(e, Error::NoSamples), "{e:?}");
    }
}

#[test]
fn nan_and_infinities_are_rejected_with_their_time() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut samples = sine(440.0, 0.5, 8_000, 20_000);
        samples[12_000] = bad;
        let path = write_file(
            dir.path(),
            "nan.wav",
            &wav_bytes(1, 8_000, Enc::F32, &samples),
        );
        let mut stream = ChunkStream::open(&path, StreamOptions::new(16_000, 1_000)).unwrap();
        let mut n_before = 0u64;
        let err = loop {
            match stream.next_chunk() {
                Ok(Some(c)) => n_before += c.len() as u64,
                Ok(None) => panic!("{bad} not rejected"),
                Err(e) => break e,
            }
        };
        match err {
            Error::NonFiniteSample { at_s, channel } => {
                assert!((at_s - 1.5).abs() < 1e-9, "{at_s}");
                assert_eq!(channel, 0);
            }
            other => panic!("{other:?}"),
        }
        // Everything before the bad sample's packet was delivered, nothing after it.
        assert!(n_before <= 24_000, "{n_before}");
    }
}

#[test]
fn non_finite_in_second_channel_names_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let mut interleaved = vec![0.0f32; 2 * 100];
    interleaved[2 * 40 + 1] = f32::NAN;
    let path = write_file(
        dir.path(),
        "nan2.wav",
        &wav_bytes(2, 16_000, Enc::F32, &interleaved),
    );
    match decode(&path) {
        Err(Error::NonFiniteSample { at_s, channel }) => {
            assert_eq!(channel, 1);
            assert!((at_s - 40.0 / 16_000.0).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absurd_sample_rates() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [0u32, 1_000_001, u32::MAX] {
        let path = write_file(
            dir.path(),
            "r.wav",
            &wav_bytes(1, rate, Enc::I16, &[0.0; 10]),
        );
        match decode(&path) {
            Err(Error::InvalidSampleRate { sample_rate_hz }) => {
                assert_eq!(sample_rate_hz, u64::from(rate));
            }
            other => panic!("rate {rate}: {other:?}"),
        }
    }
    let path = write_file(
        dir.path(),
        "ok.wav",
        &wav_bytes(1, 1_000_000, Enc::I16, &[0.0; 10]),
    );
    assert_eq!(read_mono(&path, 1_000_000).unwrap().1.len(), 10);
}

#[test]
fn absurd_channel_counts() {
    let dir = tempfile::tempdir().unwrap();
    for n in [0u16, 65, 1000, u16::MAX] {
        let path = write_file(
            dir.path(),
            "c.wav",
            &wav_bytes(n, 16_000, Enc::I16, &[0.0; 64]),
        );
        match decode(&path) {
            Err(Error::InvalidChannelCount { n_channels }) => assert_eq!(n_channels, u64::from(n)),
            other => panic!("{n} channels: {other:?}"),
        }
    }
}

#[test]
fn malformed_header_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    // A fmt chunk shorter than 16 bytes.
    let mut bytes = b"RIFF\x20\x00\x00\x00WAVEfmt \x08\x00\x00\x00".to_vec();
    bytes.extend_from_slice(&[1, 0, 1, 0, 0x80, 0x3e, 0, 0]);
    let path = write_file(dir.path(), "short_fmt.wav", &bytes);
    let e = decode(&path).unwrap_err();
    assert!(matches!(e, Error::MalformedHeader { .. }), "{e:?}");
    // A header cut inside the fmt chunk.
    let full = wav_bytes(1, 16_000, Enc::I16, &[0.0; 8]);
    let path = write_file(dir.path(), "cut_header.wav", &full[..30]);
    let e = decode(&path).unwrap_err();
    assert!(matches!(e, Error::MalformedHeader { .. }), "{e:?}");
}

/// An EBML element with a 1- or 2-byte size.
fn ebml(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut e = id.to_vec();
    match body.len() {
        n if n < 0x7f => e.push(0x80 | n as u8),
        n => e.extend_from_slice(&(0x4000 | n as u16).to_be_bytes()),
    }
    e.extend_from_slice(body);
    e
}

#[test]
fn container_without_audio_track() {
    let dir = tempfile::tempdir().unwrap();
    // A WebM file whose only track is video.
    let header = ebml(
        &[0x1A, 0x45, 0xDF, 0xA3],
        &[
            ebml(&[0x42, 0x82], b"webm"),
            ebml(&[0x42, 0x87], &[2]),
            ebml(&[0x42, 0x85], &[2]),
        ]
        .concat(),
    );
    let video = ebml(
        &[0xE0],
        &[ebml(&[0xB0], &[16]), ebml(&[0xBA], &[16])].concat(),
    );
    let track = ebml(
        &[0xAE],
        &[
            ebml(&[0xD7], &[1]),
            ebml(&[0x73, 0xC5], &[1]),
            ebml(&[0x83], &[1]),
            ebml(&[0x86], b"V_VP8"),
            video,
        ]
        .concat(),
    );
    let segment = ebml(
        &[0x18, 0x53, 0x80, 0x67],
        &[
            ebml(
                &[0x15, 0x49, 0xA9, 0x66],
                &[
                    ebml(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
                    ebml(&[0x4D, 0x80], b"masp"),
                    ebml(&[0x57, 0x41], b"masp"),
                ]
                .concat(),
            ),
            ebml(&[0x16, 0x54, 0xAE, 0x6B], &track),
            ebml(&[0x1F, 0x43, 0xB6, 0x75], &ebml(&[0xE7], &[0])),
        ]
        .concat(),
    );
    let path = write_file(dir.path(), "video.webm", &[header, segment].concat());
    let e = decode(&path).unwrap_err();
    assert!(matches!(e, Error::NoAudioTrack), "{e:?}");
    assert_eq!(e.to_string(), "no audio track");
}

#[test]
fn bad_options_are_rejected_before_touching_the_file() {
    let missing = std::path::Path::new("/definitely/not/here.wav");
    for (options, want) in [
        (
            StreamOptions::new(16_000, 0),
            OptionsError::ChunkSamples { chunk_samples: 0 },
        ),
        (
            StreamOptions::new(0, 512),
            OptionsError::TargetSampleRate {
                target_sample_rate_hz: 0,
            },
        ),
    ] {
        match ChunkStream::open(missing, options) {
            Err(Error::Options(got)) => assert_eq!(got, want),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(read_mono(missing, 0), Err(Error::Options(_))));
}

#[test]
fn every_error_message_is_one_lowercase_line() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"text".repeat(50),
        wav_bytes(0, 16_000, Enc::I16, &[0.0]),
        wav_bytes(1, 0, Enc::I16, &[0.0]),
        wav_bytes(1, 16_000, Enc::I16, &[]),
        wav_bytes(1, 16_000, Enc::F32, &[f32::NAN]),
    ];
    for bytes in inputs {
        let path = write_file(dir.path(), "x.wav", &bytes);
        let msg = decode(&path).unwrap_err().to_string();
        assert!(!msg.contains('\n') && !msg.ends_with('.'), "{msg}");
        assert!(
            msg.chars().next().is_some_and(|c| !c.is_uppercase()),
            "{msg}"
        );
        assert!(!msg.contains("x.wav"), "the caller prints the path: {msg}");
    }
}

/// Valid files of each container to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = vec![
        wav_bytes(2, 44_100, Enc::I16, &sine(440.0, 0.5, 44_100, 2_000)),
        wav_bytes(1, 16_000, Enc::F32, &sine(440.0, 0.5, 16_000, 2_000)),
    ];
    for name in [
        "tone440_16k_mono.flac",
        "tone440_22k05_mono.mp3",
        "tone440_48k_stereo.ogg",
    ] {
        v.push(std::fs::read(fixture(name)).unwrap());
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Corrupted, cut or random files give an error or audio, never a panic or a hang.
    #[test]
    fn mutated_files_never_panic(
        seed in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..24),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        random in proptest::collection::vec(any::<u8>(), 0..2048),
        use_random in 0u8..8,
    ) {
        let mut bytes = if use_random == 0 { random } else { seeds().swap_remove(seed) };
        if !bytes.is_empty() {
            for (i, b) in edits {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len()));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "fuzz.bin", &bytes);
        if let Ok(mut stream) = ChunkStream::open(&path, StreamOptions::new(16_000, 4_096)) {
            // Bounded: a corrupted header must not make us emit absurd amounts.
            let mut n = 0u64;
            while let Ok(Some(chunk)) = stream.next_chunk() {
                n += chunk.len() as u64;
                prop_assert!(n < 100_000_000);
            }
        }
    }
}

/// Found by `cargo fuzz` (audio_decode): two junk bytes before a RIFF header declaring 65534
/// channels. masp's header check looked only at offset 0, symphonia's probe skipped the junk,
/// and its block-align arithmetic overflowed (a panic with overflow checks on).
#[test]
fn fuzz_regression_riff_behind_junk_is_checked() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-riff-behind-junk.wav");
    let err = decode(&path).unwrap_err();
    assert!(matches!(err, Error::InvalidChannelCount { .. }), "{err}");
}

#[test]
fn a_riff_header_straddling_the_scan_blocks_is_found() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB - 5 bytes of junk put "RIFF....WAVE" across the scanner's first block boundary.
    let mut bytes = vec![0x55u8; (64 << 10) - 5];
    let mut header = Vec::new();
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&100u32.to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // 0 channels: absurd
    header.extend_from_slice(&16_000u32.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&header);
    let path = dir.path().join("junk.wav");
    std::fs::write(&path, &bytes).unwrap();
    let err = decode(&path).unwrap_err();
    assert!(matches!(err, Error::InvalidChannelCount { .. }), "{err}");
}
