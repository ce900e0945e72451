//! Streaming a long file in bounded memory with `masp-audio` alone: decode, downmix and
//! resample to 16 kHz chunk by chunk, and report loudness per minute — the way a downstream
//! crate feeds its own model.
//!
//! `cargo run -p masp-audio --example stream_stats -- talk.flac`

use std::path::PathBuf;
use std::process::ExitCode;

use masp_audio::{ChunkStream, StreamOptions};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: stream_stats AUDIO_FILE");
        return ExitCode::from(1);
    };
    // One second per chunk: memory stays at a few buffers however long the file.
    let mut stream = match ChunkStream::open(&path, StreamOptions::new(16_000, 16_000)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let info = stream.info().clone();
    println!(
        "{}: {}, {} Hz, {} channel(s)",
        info.path.display(),
        info.codec,
        info.source_sample_rate_hz,
        info.n_channels
    );
    let (mut sum_sq, mut n, mut minute) = (0.0f64, 0u64, 0u64);
    loop {
        match stream.next_chunk() {
            Ok(Some(chunk)) => {
                sum_sq += chunk
                    .iter()
                    .map(|&s| f64::from(s) * f64::from(s))
                    .sum::<f64>();
                n += chunk.len() as u64;
                if stream.n_samples_emitted() >= (minute + 1) * 60 * 16_000 {
                    let rms = (sum_sq / n.max(1) as f64).sqrt();
                    println!(
                        "minute {minute:>4}: RMS {:.1} dBFS",
                        20.0 * rms.max(1e-9).log10()
                    );
                    (sum_sq, n, minute) = (0.0, 0, minute + 1);
                }
            }
            Ok(None) => break,
            Err(e) => {
                // A bad file is one line naming it and the reason, never a panic.
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    if n > 0 {
        let rms = (sum_sq / n as f64).sqrt();
        println!(
            "minute {minute:>4}: RMS {:.1} dBFS (partial)",
            20.0 * rms.max(1e-9).log10()
        );
    }
    println!(
        "{} samples at 16 kHz ({:.1} s)",
        stream.n_samples_emitted(),
        stream.n_samples_emitted() as f64 / 16_000.0
    );
    ExitCode::SUCCESS
}
