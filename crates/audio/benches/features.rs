//! Throughput of the log-mel analysis on 60 s of 16 kHz audio, streamed in 16 384-sample chunks,
//! with two baselines in the same run: the bare windowed FFT per frame (what the mel projection
//! and log add to), and log-mel plus cutting into the embedder's 80-frame windows.

// The inputs are generated here, not user data: a failure is a broken benchmark, so fail loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use masp_audio::features::{LogMel, LogMelConfig, MelWindower};
use realfft::RealFftPlanner;

const SAMPLE_RATE_HZ: usize = 16_000;
const SECONDS: usize = 60;
const CHUNK: usize = 16_384;

/// A speech-like test signal: a gliding harmonic tone with a little deterministic noise.
fn signal() -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..SAMPLE_RATE_HZ * SECONDS)
        .map(|i| {
            let t = i as f32 / SAMPLE_RATE_HZ as f32;
            let f0 = 120.0 + 40.0 * (t * 0.7).sin();
            let voice: f32 = (1..6)
                .map(|h| (t * f0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                .sum();
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f32 / u32::MAX as f32) - 0.5;
            0.2 * voice + 0.01 * noise
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let samples = signal();
    let config = LogMelConfig::default();
    let mut group = c.benchmark_group("logmel_60s_16k");
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.sample_size(20);

    group.bench_function("baseline_windowed_fft_only", |b| {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(config.fft_len_samples);
        let mut input = fft.make_input_vec();
        let mut output = fft.make_output_vec();
        let mut scratch = fft.make_scratch_vec();
        let window: Vec<f64> = (0..config.fft_len_samples)
            .map(|i| 0.54 - 0.46 * (std::f64::consts::TAU * i as f64 / 512.0).cos())
            .collect();
        b.iter(|| {
            let mut acc = 0.0;
            for start in (0..=samples.len() - config.fft_len_samples).step_by(config.hop_samples) {
                let frame = &samples[start..start + config.fft_len_samples];
                for ((x, &s), &w) in input.iter_mut().zip(frame).zip(&window) {
                    *x = f64::from(s) * w;
                }
                fft.process_with_scratch(&mut input, &mut output, &mut scratch)
                    .expect("fft");
                acc += output[1].re;
            }
            black_box(acc)
        });
    });

    group.bench_function("logmel_streamed", |b| {
        let mut logmel = LogMel::new(config).expect("config");
        let mut frames = Vec::with_capacity(config.n_frames(CHUNK) * config.n_mels + 1);
        b.iter(|| {
            logmel.reset();
            let mut n = 0;
            for chunk in samples.chunks(CHUNK) {
                frames.clear();
                n += logmel.push(chunk, &mut frames);
            }
            black_box(n)
        });
    });

    group.bench_function("logmel_streamed_plus_windows", |b| {
        let mut logmel = LogMel::new(config).expect("config");
        let mut windower = MelWindower::voicefilter();
        let mut frames = Vec::new();
        let mut windows = Vec::new();
        b.iter(|| {
            logmel.reset();
            let mut n = 0;
            for chunk in samples.chunks(CHUNK) {
                frames.clear();
                windows.clear();
                logmel.push(chunk, &mut frames);
                n += windower.push(&frames, &mut windows);
            }
            n += windower.finish(&mut windows);
            black_box(n)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
