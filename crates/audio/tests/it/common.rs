//! Shared helpers: WAV bytes of any shape, fixtures, tones and signal measurements.

use std::path::{Path, PathBuf};

/// Sample encodings for [`wav_bytes`].
#[derive(Debug, Clone, Copy)]
pub enum Enc {
    I16,
    F32,
}

/// A canonical WAV file (PCM: 16-byte fmt; float: 18-byte fmt + fact) with the given header
/// fields; `interleaved` holds `n_channels * frames` samples. Header fields are written as given,
/// so absurd values can be produced.
pub fn wav_bytes(n_channels: u16, rate: u32, enc: Enc, interleaved: &[f32]) -> Vec<u8> {
    let bps: u16 = match enc {
        Enc::I16 => 2,
        Enc::F32 => 4,
    };
    let mut data = Vec::new();
    for &x in interleaved {
        match enc {
            Enc::I16 => data.extend_from_slice(&((x * 32_768.0).round() as i16).to_le_bytes()),
            Enc::F32 => data.extend_from_slice(&x.to_le_bytes()),
        }
    }
    let block_align = n_channels.wrapping_mul(bps);
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&(if matches!(enc, Enc::I16) { 1u16 } else { 3 }).to_le_bytes());
    fmt.extend_from_slice(&n_channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&rate.wrapping_mul(u32::from(block_align)).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&(bps * 8).to_le_bytes());
    let mut body = Vec::new();
    body.extend_from_slice(b"WAVEfmt ");
    if matches!(enc, Enc::F32) {
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    body.extend_from_slice(&fmt);
    if matches!(enc, Enc::F32) {
        body.extend_from_slice(b"fact");
        body.extend_from_slice(&4u32.to_le_bytes());
        let frames = interleaved.len() as u32 / u32::from(n_channels.max(1));
        body.extend_from_slice(&frames.to_le_bytes());
    }
    body.extend_from_slice(b"data");
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&data);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A committed fixture (see tests/fixtures/make_fixtures.sh).
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(
        path.exists(),
        "missing fixture {}: run tests/fixtures/make_fixtures.sh",
        path.display()
    );
    path
}

/// `n` samples of a sine of `freq_hz` and `amplitude` at `rate_hz`.
pub fn sine(freq_hz: f64, amplitude: f64, rate_hz: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (amplitude * (std::f64::consts::TAU * freq_hz * i as f64 / f64::from(rate_hz)).sin())
                as f32
        })
        .collect()
}

/// Root mean square.
pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Frequency estimated from sign changes (two per period).
pub fn zero_crossing_hz(x: &[f32], rate_hz: u32) -> f64 {
    let n = x
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    n as f64 / 2.0 / (x.len() as f64 / f64::from(rate_hz))
}

/// The middle of `x`, dropping `frac` of its length at each end (edges hold filter ramps).
pub fn middle(x: &[f32], frac: f64) -> &[f32] {
    let cut = (x.len() as f64 * frac) as usize;
    &x[cut..x.len() - cut]
}
