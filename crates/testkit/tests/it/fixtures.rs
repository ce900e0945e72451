//! Fixtures: the committed sample is found, generated files have the length asked for and are
//! reproducible, and each bad input fails in masp-audio with its message.

use masp_audio::{ChunkStream, StreamOptions};
use masp_testkit::fixtures::{self, AudioSpec, BadInputKind};

#[test]
fn the_speech_sample_is_found_from_the_manifest_dir() {
    let path = fixtures::speech_sample().unwrap();
    assert!(
        path.ends_with("assets/samples/two_voices.wav"),
        "{}",
        path.display()
    );
    let (_, samples) = masp_audio::read_mono(&path, 16_000).unwrap();
    assert!(samples.len() > 16_000 * 5);
}

#[test]
fn a_long_file_has_every_sample_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    // 10 minutes at 16 kHz, written one second at a time.
    let spec = AudioSpec::tone(440.0, 600.0);
    let path = fixtures::write_audio(dir.path(), "long.wav", &spec).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        44 + 2 * spec.n_samples()
    );
    let mut stream = ChunkStream::open(&path, StreamOptions::new(16_000, 16_000)).unwrap();
    let mut n = 0;
    while let Some(chunk) = stream.next_chunk().unwrap() {
        n += chunk.len() as u64;
    }
    assert_eq!(n, spec.n_samples());
}

#[test]
fn every_bad_input_fails_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixtures::bad_inputs(dir.path()).unwrap();
    let kinds: Vec<BadInputKind> = corpus.iter().map(|b| b.kind).collect();
    assert_eq!(
        kinds,
        [
            BadInputKind::Empty,
            BadInputKind::TruncatedWav,
            BadInputKind::NotAudio,
            BadInputKind::ZeroSamples,
            BadInputKind::NanSamples
        ]
    );
    for bad in corpus {
        let err = masp_audio::read_mono(&bad.path, 16_000).unwrap_err();
        assert!(
            err.to_string().contains(bad.expected_message),
            "{}: {err}",
            bad.kind
        );
    }
}

#[test]
fn generated_noise_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = fixtures::write_audio(dir.path(), "a.wav", &AudioSpec::noise(1.0, 3)).unwrap();
    let b = fixtures::write_audio(dir.path(), "b.wav", &AudioSpec::noise(1.0, 3)).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}
