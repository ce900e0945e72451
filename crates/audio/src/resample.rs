//! Streaming mono resampling with rubato, delay-compensated and length-exact.
//!
//! rubato's resamplers delay their output by a fixed number of frames and only emit whole
//! blocks. [`StreamResampler`] drops that leading delay and, at the end, pumps silence through
//! the filter and cuts the output so that `n_in` input frames become exactly
//! `round(n_in * target / source)` output frames, aligned with the input: a sample index at the
//! target rate maps to the same time as in the source.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters};

use crate::error::{Error, Result};

/// Input frames per resampler call for the sinc resampler, and the FFT resampler's block target
/// on the input side. Its anti-aliasing filter is as long as a block, so ~1000 frames gives a
/// steep cutoff while keeping the delay near 10 ms.
const BLOCK_IN: usize = 1024;

/// Output frames an FFT block should at least have: strong downsampling (e.g. 192 kHz -> 16 kHz)
/// would otherwise get a short filter and a wide transition band.
const MIN_BLOCK_OUT: f64 = 512.0;

/// Output frames a resampler call may produce at most: strong upsampling (e.g. 100 Hz -> 16 kHz)
/// would otherwise need megabytes of scratch.
const MAX_BLOCK_OUT: f64 = 8192.0;

/// Above this many frames in the smallest block that represents the rate ratio exactly
/// (`rate / gcd(source, target)` on either side), the FFT resampler's buffers would grow to
/// megabytes (e.g. 44 101 Hz -> 16 kHz has no common factor); such pairs use sinc interpolation.
const MAX_FFT_MIN_BLOCK: usize = 4096;

/// Number of output frames for `n_in` input frames: `round(n_in * target / source)`.
pub(crate) fn expected_output_len(n_in: u64, source_hz: u32, target_hz: u32) -> u64 {
    let num = u128::from(n_in) * u128::from(target_hz) + u128::from(source_hz) / 2;
    // Fits: the quotient is at most n_in * MAX_SAMPLE_RATE_HZ.
    u64::try_from(num / u128::from(source_hz)).unwrap_or(u64::MAX)
}

/// Mono resampler fed in arbitrary pieces.
pub(crate) struct StreamResampler {
    inner: Box<dyn Resampler<f32> + Send>,
    source_hz: u32,
    target_hz: u32,
    /// Input not yet handed to rubato (less than one call's worth between calls).
    pending_in: Vec<f32>,
    /// Scratch for one call's output.
    scratch_out: Vec<f32>,
    /// Leading output frames still to drop.
    delay_left: usize,
    n_in: u64,
    n_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("source_hz", &self.source_hz)
            .field("target_hz", &self.target_hz)
            .field("n_in", &self.n_in)
            .field("n_out", &self.n_out)
            .finish_non_exhaustive()
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn rubato_err(e: impl std::fmt::Display) -> Error {
    Error::Resampler {
        reason: e.to_string(),
    }
}

impl StreamResampler {
    /// A resampler from `source_hz` to `target_hz` (both non-zero and different).
    pub(crate) fn new(source_hz: u32, target_hz: u32) -> Result<Self> {
        let (s, t) = (source_hz as usize, target_hz as usize);
        let g = gcd(s, t).max(1);
        let ratio = f64::from(target_hz) / f64::from(source_hz);
        // Float to int `as` saturates; both bounds are at least 1 frame.
        let max_in = ((MAX_BLOCK_OUT / ratio) as usize).max(1);
        let inner: Box<dyn Resampler<f32> + Send> = if (s / g).max(t / g) <= MAX_FFT_MIN_BLOCK {
            let sub_in = BLOCK_IN
                .max((MIN_BLOCK_OUT / ratio).ceil() as usize)
                .min(max_in);
            // Two blocks per call; rubato rounds each block up to a multiple of `s / g` frames.
            Box::new(
                Fft::<f32>::new_custom(
                    s,
                    t,
                    2 * sub_in,
                    2,
                    1,
                    rubato::WindowFunction::BlackmanHarris2,
                    FixedSync::Input,
                )
                .map_err(rubato_err)?,
            )
        } else {
            let params = SincInterpolationParameters::default();
            Box::new(
                Async::<f32>::new_sinc(
                    ratio,
                    1.0,
                    &params,
                    (2 * BLOCK_IN).min(max_in),
                    1,
                    FixedAsync::Input,
                )
                .map_err(rubato_err)?,
            )
        };
        let delay_left = inner.output_delay();
        let scratch_out = vec![0.0; inner.output_frames_max()];
        Ok(Self {
            inner,
            source_hz,
            target_hz,
            pending_in: Vec::new(),
            scratch_out,
            delay_left,
            n_in: 0,
            n_out: 0,
        })
    }

    /// Feeds `input`, appending every output frame that is ready to `out`.
    pub(crate) fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        self.n_in += input.len() as u64;
        let mut input = input;
        loop {
            let need = self.inner.input_frames_next();
            if self.pending_in.is_empty() && input.len() >= need {
                // Fast path: process straight from the caller's slice.
                let (head, rest) = input.split_at(need);
                self.process(Some(head), None, out)?;
                input = rest;
            } else if self.pending_in.len() + input.len() >= need {
                let take = need - self.pending_in.len();
                self.pending_in.extend_from_slice(&input[..take]);
                input = &input[take..];
                self.process(None, None, out)?;
                self.pending_in.clear();
            } else {
                self.pending_in.extend_from_slice(input);
                return Ok(());
            }
        }
    }

    /// Flushes the filter at end of input, appending the tail so that the total output is
    /// exactly [`expected_output_len`] frames (or as many as were already emitted, if more).
    pub(crate) fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let expected = expected_output_len(self.n_in, self.source_hz, self.target_hz);
        let partial = self.pending_in.len();
        if partial > 0 {
            let need = self.inner.input_frames_next();
            self.pending_in.resize(need.max(partial), 0.0);
            self.process(None, Some(partial), out)?;
            self.pending_in.clear();
        }
        // Pump silence until the delayed tail is out. Each call yields at least one frame for
        // any rate pair rubato accepts; the bound only guards against a library change.
        let mut n_calls = 0usize;
        while self.n_out < expected && n_calls < 1_000_000 {
            let need = self.inner.input_frames_next();
            self.pending_in.clear();
            self.pending_in.resize(need, 0.0);
            self.process(None, Some(0), out)?;
            n_calls += 1;
        }
        self.pending_in.clear();
        if self.n_out > expected {
            let excess = (self.n_out - expected).min(out.len() as u64) as usize;
            out.truncate(out.len() - excess);
            self.n_out -= excess as u64;
        }
        Ok(())
    }

    /// One rubato call on `input` (or on `pending_in`), with `partial_len` valid frames.
    fn process(
        &mut self,
        input: Option<&[f32]>,
        partial_len: Option<usize>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let input = input.unwrap_or(&self.pending_in);
        let adapter_in = InterleavedSlice::new(input, 1, input.len()).map_err(rubato_err)?;
        let n_out_cap = self.scratch_out.len();
        let mut adapter_out =
            InterleavedSlice::new_mut(&mut self.scratch_out, 1, n_out_cap).map_err(rubato_err)?;
        let indexing = partial_len.map(|n| Indexing::new().partial_len(n));
        let (_, n_written) = self
            .inner
            .process_into_buffer(&adapter_in, &mut adapter_out, indexing.as_ref())
            .map_err(rubato_err)?;
        let produced = &self.scratch_out[..n_written.min(n_out_cap)];
        let drop = self.delay_left.min(produced.len());
        self.delay_left -= drop;
        out.extend_from_slice(&produced[drop..]);
        self.n_out += (produced.len() - drop) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_len_rounds_to_nearest() {
        assert_eq!(expected_output_len(44_100, 44_100, 16_000), 16_000);
        assert_eq!(expected_output_len(1, 44_100, 16_000), 0);
        assert_eq!(expected_output_len(2, 44_100, 16_000), 1); // 0.7256 -> 1
        assert_eq!(expected_output_len(3, 48_000, 16_000), 1);
        assert_eq!(expected_output_len(1, 8_000, 16_000), 2);
        assert_eq!(expected_output_len(u64::MAX / 2, 1, 1_000_000), u64::MAX);
    }

    fn run(source_hz: u32, target_hz: u32, input: &[f32], piece: usize) -> Vec<f32> {
        let mut r = StreamResampler::new(source_hz, target_hz).unwrap();
        let mut out = Vec::new();
        for p in input.chunks(piece.max(1)) {
            r.push(p, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn output_length_is_exact_for_common_and_odd_rates() {
        let pairs = [
            (44_100, 16_000),
            (48_000, 16_000),
            (8_000, 16_000),
            (44_101, 16_000),
            (192_000, 16_000),
            (1_000_000, 16_000),
            (999_983, 16_000),
            (100, 16_000),
            (1, 16_000),
            (16_000, 1_000_000),
        ];
        for (s, t) in pairs {
            for n in [0usize, 1, 7, 999, 4096, 30_001] {
                let want = expected_output_len(n as u64, s, t);
                if want > 2_000_000 {
                    continue; // keep extreme upsampling cases fast
                }
                let out = run(s, t, &vec![0.25f32; n], 333);
                assert_eq!(out.len() as u64, want, "{s}->{t} n={n}");
            }
        }
    }

    #[test]
    fn piece_size_does_not_change_output() {
        let input: Vec<f32> = (0..20_000).map(|i| ((i as f32) * 0.01).sin()).collect();
        let a = run(44_100, 16_000, &input, 20_000);
        let b = run(44_100, 16_000, &input, 17);
        assert_eq!(a, b);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any way of cutting the input gives the same output, of exactly the documented length.
        #[test]
        fn streaming_is_exact_and_split_invariant(
            rates in proptest::sample::select(vec![
                (8_000u32, 16_000u32), (22_050, 16_000), (44_100, 16_000), (48_000, 16_000),
                (16_000, 44_100), (11_025, 16_000), (44_101, 16_000),
            ]),
            n in 0usize..12_000,
            piece in 1usize..5_000,
        ) {
            let (s, t) = rates;
            let input: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
            let whole = run(s, t, &input, n.max(1));
            let pieces = run(s, t, &input, piece);
            proptest::prop_assert_eq!(whole.len() as u64, expected_output_len(n as u64, s, t));
            proptest::prop_assert_eq!(whole, pieces);
        }
    }

    #[test]
    fn delay_is_compensated() {
        // A click at 0.5 s stays at 0.5 s.
        for &(s, t) in &[(44_100u32, 16_000u32), (8_000, 16_000), (44_101, 16_000)] {
            let mut input = vec![0.0f32; s as usize];
            input[s as usize / 2] = 1.0;
            let out = run(s, t, &input, 1000);
            let peak = out
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(i, _)| i)
                .unwrap();
            let want = t as usize / 2;
            assert!(
                peak.abs_diff(want) <= 1,
                "{s}->{t}: peak at {peak}, want {want}"
            );
        }
    }
}
