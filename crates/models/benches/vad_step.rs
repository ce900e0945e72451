//! The VAD step: one 2 s block (62.5 frames of 32 ms) through silero, per-frame export against
//! the sequence export, measured in the same run. Needs the assets (`cargo xtask setup`).
//!
//! `cargo bench -p masp-models --bench vad_step`

// A bench's setup (assets present, model loads) is a precondition; a failure should stop it.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use masp_model_registry::assets;
use masp_models::silero::SileroVad;
use masp_orchestrator::runtime::SessionOptions;

/// 2 s of 16 kHz pseudo-speech: a few harmonics under a slow envelope, plus noise.
fn block() -> Vec<f32> {
    let mut x: u32 = 0x1234_5678;
    (0..32_000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let t = i as f32 / 16_000.0;
            let env = (t * 3.0).sin().abs();
            let voice = (t * 2.0 * std::f32::consts::PI * 180.0).sin() * 0.3
                + (t * 2.0 * std::f32::consts::PI * 360.0).sin() * 0.15;
            env * voice + (x as f32 / u32::MAX as f32 - 0.5) * 0.02
        })
        .collect()
}

fn vad_step(c: &mut Criterion) {
    let admitted = masp_testkit::memory::admitted();
    let samples = block();
    let mut group = c.benchmark_group("vad_step_2s");
    group.throughput(Throughput::Elements(samples.len() as u64));
    for (name, asset) in [
        ("silero-vad (per frame)", &assets::SILERO_VAD),
        ("silero-vad-sequence", &assets::SILERO_VAD_SEQUENCE),
    ] {
        let path = asset.locate().expect("asset present (cargo xtask setup)");
        let mut vad =
            SileroVad::load(&admitted, name, &path, SessionOptions::default()).expect("loads");
        let mut out = Vec::with_capacity(128);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                vad.process_block(black_box(&samples), &mut out)
                    .expect("inference");
                black_box(&out);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = vad_step
}
criterion_main!(benches);
