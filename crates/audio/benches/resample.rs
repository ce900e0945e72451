//! Throughput of the streaming decoder: 60 s of 44.1 kHz stereo resampled to 16 kHz mono, and
//! plain chunk streaming of a 16 kHz mono file (the no-resampling baseline in the same run).

// The inputs are generated here, not user data: a failure is a broken benchmark, so fail loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use masp_audio::{ChunkStream, StreamOptions, WavSampleFormat, WavWriter};

/// Writes a 16-bit stereo WAV of `seconds` of two tones (mono writer plus a hand-made header
/// would be longer; the RIFF layout is simple enough to emit here).
fn write_stereo_wav(path: &Path, rate: u32, seconds: u32) {
    let n = (rate * seconds) as usize;
    let mut data = Vec::with_capacity(n * 4);
    for i in 0..n {
        let t = i as f32 / rate as f32;
        let l = (0.4 * (t * 440.0 * std::f32::consts::TAU).sin() * 32_767.0) as i16;
        let r = (0.4 * (t * 660.0 * std::f32::consts::TAU).sin() * 32_767.0) as i16;
        data.extend_from_slice(&l.to_le_bytes());
        data.extend_from_slice(&r.to_le_bytes());
    }
    let mut f = Vec::with_capacity(44 + data.len());
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    f.extend_from_slice(b"WAVEfmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * 4).to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&16u16.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&(data.len() as u32).to_le_bytes());
    f.extend_from_slice(&data);
    std::fs::write(path, f).expect("write bench input");
}

fn write_mono_wav(path: &Path, rate: u32, seconds: u32) {
    let second: Vec<f32> = (0..rate)
        .map(|i| 0.4 * (i as f32 / rate as f32 * 440.0 * std::f32::consts::TAU).sin())
        .collect();
    let mut w = WavWriter::create(path, rate, WavSampleFormat::I16).expect("create");
    for _ in 0..seconds {
        w.write(&second).expect("write");
    }
    w.finish().expect("finish");
}

/// Streams `path` to the end, returning the sample count so the work is not optimised away.
fn drain(path: &Path, options: StreamOptions) -> u64 {
    let mut stream = ChunkStream::open(path, options).expect("open");
    let mut sum = 0.0f32;
    while let Some(chunk) = stream.next_chunk().expect("decode") {
        sum += chunk[0];
    }
    black_box(sum);
    stream.n_samples_emitted()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stereo = dir.path().join("60s_44k1_stereo.wav");
    let mono = dir.path().join("60s_16k_mono.wav");
    write_stereo_wav(&stereo, 44_100, 60);
    write_mono_wav(&mono, 16_000, 60);
    let options = StreamOptions::default();

    let mut group = c.benchmark_group("stream_60s");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    // Throughput in seconds of audio, reported as "elements".
    group.throughput(Throughput::Elements(60));
    group.bench_function("44k1_stereo_to_16k_mono", |b| {
        b.iter(|| drain(&stereo, options))
    });
    group.bench_function("16k_mono_passthrough", |b| b.iter(|| drain(&mono, options)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
