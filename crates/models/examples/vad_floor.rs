//! VAD speed side by side in one run: the bare model calls over pre-decoded 16 kHz samples (the
//! ONNX Runtime floor) and masp's full path (decode, resample, chunk, segment, budget checks)
//! over the same file, for the per-frame and the sequence exports. Each is run `ROUNDS` times
//! (default 3), the two alternated, and the best of each is kept: on a shared machine the
//! slowest runs measure the neighbours.
//!
//! `cargo run --release -p masp-models --example vad_floor -- FILE [ROUNDS]`
// An example fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use masp_model_registry::assets::{self, Asset};
use masp_models::silero::SileroVad;
use masp_models::vad::{VadParams, detect_speech};
use masp_orchestrator::runtime::SessionOptions;

fn main() {
    let path = std::env::args().nth(1).expect("usage: vad_floor FILE");
    let path = std::path::Path::new(&path);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let (_, samples) = masp_audio::read_mono(path, 16_000).unwrap();
    let audio_s = samples.len() as f64 / 16_000.0;
    let admitted = masp_testkit::memory::admitted();
    let load = |asset: &Asset| {
        SileroVad::load(
            &admitted,
            asset.id,
            &asset.locate().unwrap(),
            SessionOptions::default(),
        )
        .unwrap()
    };
    println!(
        "{:<22} {:>10} {:>10} {:>9}",
        "model", "floor s", "masp s", "ratio"
    );
    for asset in [&assets::SILERO_VAD, &assets::SILERO_VAD_SEQUENCE] {
        let mut vad = load(asset);
        let (mut floor, mut full) = (f64::MAX, f64::MAX);
        let mut segments = 0;
        for _ in 0..rounds {
            // The floor: the same calls in the same 2 s blocks, audio already decoded.
            vad.reset();
            let started = Instant::now();
            let mut probs = Vec::with_capacity(samples.len() / 512 + 1);
            for block in samples.chunks(64 * 512) {
                vad.process_block(block, &mut probs).unwrap();
            }
            floor = floor.min(started.elapsed().as_secs_f64());
            let started = Instant::now();
            let outcome = detect_speech(&mut vad, path, &VadParams::default()).unwrap();
            full = full.min(started.elapsed().as_secs_f64());
            segments = outcome.segments.len();
        }
        println!(
            "{:<22} {floor:>10.2} {full:>10.2} {:>8.3}×   ({} segments, {:.0}× real time)",
            asset.id,
            full / floor,
            segments,
            audio_s / full
        );
    }
}
