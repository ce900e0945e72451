//! Speech segments from speech probabilities: a streaming port of silero-vad's
//! `get_speech_timestamps` (silero-vad 6.2.3), and the job that runs it over a file.
//!
//! The official function collects every probability first and then walks them; this port walks
//! them as they arrive and emits a segment as soon as its padding is known (one segment of
//! look-ahead), so memory does not grow with the length of the file.

use std::path::Path;

use masp_audio::{ChunkStream, StreamOptions};
pub use masp_orchestrator::task::{SpeechSegment, VadOutcome, VadParams};

use crate::silero::{FRAME_SAMPLES, SAMPLE_RATE_HZ, SileroVad};
use masp_orchestrator::{Error, Result};

/// Streaming segmenter: feed it one probability per frame, then [`Segmenter::finish`].
#[derive(Debug)]
pub struct Segmenter {
    // f64, as in Python: the f32 probability is widened before comparing (at 0.35 the f32 and
    // f64 thresholds differ and would flip edge frames).
    threshold: f64,
    neg_threshold: f64,
    min_speech: u64,
    min_silence: u64,
    pad: u64,
    max_speech: f64,
    min_silence_at_max_speech: u64,
    use_max_poss_sil: bool,
    n_frames: u64,
    triggered: bool,
    /// Start of the open segment (`current_speech['start']`); None when there is none.
    current_start: Option<u64>,
    temp_end: u64,
    prev_end: u64,
    next_start: u64,
    possible_ends: Vec<(u64, u64)>,
    /// The previous raw segment, its start already padded, waiting for its successor.
    pending: Option<SpeechSegment>,
    done: Vec<SpeechSegment>,
}

impl Segmenter {
    /// A segmenter for 16 kHz frames of [`FRAME_SAMPLES`].
    pub fn new(params: &VadParams) -> Self {
        let rate = u64::from(SAMPLE_RATE_HZ);
        let ms = |v: u32| rate * u64::from(v) / 1000;
        let pad = ms(params.speech_pad_ms);
        Self {
            threshold: params.threshold,
            neg_threshold: params
                .neg_threshold
                .unwrap_or((params.threshold - 0.15).max(0.01)),
            min_speech: ms(params.min_speech_ms),
            min_silence: ms(params.min_silence_ms),
            pad,
            max_speech: rate as f64 * params.max_speech_s - FRAME_SAMPLES as f64 - 2.0 * pad as f64,
            min_silence_at_max_speech: ms(params.min_silence_at_max_speech_ms),
            use_max_poss_sil: params.use_max_poss_sil_at_max_speech,
            n_frames: 0,
            triggered: false,
            current_start: None,
            temp_end: 0,
            prev_end: 0,
            next_start: 0,
            possible_ends: Vec::new(),
            pending: None,
            done: Vec::new(),
        }
    }

    /// Segments completed so far (their padding is final). Drain them to keep memory flat.
    pub fn take_completed(&mut self) -> Vec<SpeechSegment> {
        std::mem::take(&mut self.done)
    }

    /// Feed the probability of the next frame.
    pub fn push(&mut self, probability: f32) {
        let probability = f64::from(probability);
        let cur = self.n_frames * FRAME_SAMPLES as u64;
        self.n_frames += 1;
        let speech = probability >= self.threshold;
        if speech && self.temp_end != 0 {
            let silence = cur - self.temp_end;
            if silence > self.min_silence_at_max_speech {
                self.possible_ends.push((self.temp_end, silence));
            }
            self.temp_end = 0;
            if self.next_start < self.prev_end {
                self.next_start = cur;
            }
        }
        if speech && !self.triggered {
            self.triggered = true;
            self.current_start = Some(cur);
            return;
        }
        if self.triggered
            && let Some(start) = self.current_start
            && (cur - start) as f64 > self.max_speech
            && self.split_at_max_speech(start, cur)
        {
            return;
        }
        if probability < self.neg_threshold && self.triggered {
            if self.temp_end == 0 {
                self.temp_end = cur;
            }
            let silence = cur - self.temp_end;
            if !self.use_max_poss_sil && silence > self.min_silence_at_max_speech {
                self.prev_end = self.temp_end;
            }
            if silence < self.min_silence {
                return;
            }
            if let Some(start) = self.current_start.take()
                && self.temp_end - start > self.min_speech
            {
                self.raw(start, self.temp_end);
            }
            self.prev_end = 0;
            self.next_start = 0;
            self.temp_end = 0;
            self.triggered = false;
            self.possible_ends.clear();
        }
    }

    /// `max_speech_s` reached: cut the open segment, as the official function does. Returns
    /// true when the frame is done (the hard cut); otherwise the frame goes on to the silence
    /// check, as in Python.
    fn split_at_max_speech(&mut self, start: u64, cur: u64) -> bool {
        if self.use_max_poss_sil && !self.possible_ends.is_empty() {
            // The longest silence wins; on ties the earliest, like Python's max().
            let mut best = self.possible_ends[0];
            for &candidate in &self.possible_ends[1..] {
                if candidate.1 > best.1 {
                    best = candidate;
                }
            }
            let (end, silence) = best;
            self.raw(start, end);
            let next = end + silence;
            if next < end + cur {
                self.current_start = Some(next);
            } else {
                self.current_start = None;
                self.triggered = false;
            }
            self.prev_end = 0;
            self.next_start = 0;
            self.temp_end = 0;
            self.possible_ends.clear();
            false
        } else if self.prev_end != 0 {
            self.raw(start, self.prev_end);
            if self.next_start < self.prev_end {
                self.current_start = None;
                self.triggered = false;
            } else {
                self.current_start = Some(self.next_start);
            }
            self.prev_end = 0;
            self.next_start = 0;
            self.temp_end = 0;
            self.possible_ends.clear();
            false
        } else {
            self.raw(start, cur);
            self.current_start = None;
            self.prev_end = 0;
            self.next_start = 0;
            self.temp_end = 0;
            self.triggered = false;
            self.possible_ends.clear();
            true
        }
    }

    /// A raw (unpadded) segment: settle the padding between it and the one before.
    fn raw(&mut self, start: u64, end: u64) {
        let mut next = SpeechSegment {
            start_sample: start,
            end_sample: end,
        };
        match self.pending.take() {
            None => next.start_sample = start.saturating_sub(self.pad),
            Some(mut prev) => {
                let silence = next.start_sample.saturating_sub(prev.end_sample);
                if silence < 2 * self.pad {
                    prev.end_sample += silence / 2;
                    next.start_sample = next.start_sample.saturating_sub(silence / 2);
                } else {
                    prev.end_sample += self.pad;
                    next.start_sample = next.start_sample.saturating_sub(self.pad);
                }
                self.done.push(prev);
            }
        }
        self.pending = Some(next);
    }

    /// End of audio after `n_samples` samples: close the open segment and pad the last one.
    pub fn finish(mut self, n_samples: u64) -> Vec<SpeechSegment> {
        if let Some(start) = self.current_start.take()
            && n_samples.saturating_sub(start) > self.min_speech
        {
            self.raw(start, n_samples);
        }
        if let Some(mut last) = self.pending.take() {
            last.end_sample = (last.end_sample + self.pad).min(n_samples);
            self.done.push(last);
        }
        self.done
    }
}

/// Fraction of 10 ms frames on which two segment lists of a stream of `n_samples` (16 kHz) agree
/// about speech: a frame counts as speech when its centre lies in a segment. Lists are sorted
/// and do not overlap, as [`Segmenter`] makes them. 1.0 for an empty stream.
pub fn frame_agreement(a: &[SpeechSegment], b: &[SpeechSegment], n_samples: u64) -> f64 {
    const FRAME: u64 = (SAMPLE_RATE_HZ / 100) as u64;
    let n_frames = n_samples.div_ceil(FRAME);
    if n_frames == 0 {
        return 1.0;
    }
    let (mut ia, mut ib) = (0, 0);
    let mut agree = 0u64;
    for i in 0..n_frames {
        let centre = i * FRAME + FRAME / 2;
        let inside = |segs: &[SpeechSegment], at: &mut usize| {
            while *at < segs.len() && segs[*at].end_sample <= centre {
                *at += 1;
            }
            *at < segs.len() && segs[*at].start_sample <= centre
        };
        if inside(a, &mut ia) == inside(b, &mut ib) {
            agree += 1;
        }
    }
    agree as f64 / n_frames as f64
}

/// Frames per chunk read from the decoder: 2 s of audio, a few hundred KiB of buffers.
const FRAMES_PER_CHUNK: usize = 64;

/// Run `vad` over the file at `path` and segment the result. The model's stream state is reset
/// first, so one loaded model serves many files.
///
/// # Errors
/// Any [`Error::Audio`] from decoding (the message names the file and reason),
/// [`Error::Inference`] from the model, [`Error::InvalidParameter`] for bad `params`.
pub fn detect_speech(vad: &mut SileroVad, path: &Path, params: &VadParams) -> Result<VadOutcome> {
    detect_speech_with(
        vad,
        path,
        params,
        FRAMES_PER_CHUNK * FRAME_SAMPLES,
        &mut |_| Ok(()),
    )
}

/// [`detect_speech`] with a chunk size (samples at 16 kHz) and a hook called between chunks with
/// the samples done so far: the orchestrator cancels a task by returning an error from it.
///
/// # Errors
/// As [`detect_speech`], plus whatever `between_chunks` returns.
pub fn detect_speech_with(
    vad: &mut SileroVad,
    path: &Path,
    params: &VadParams,
    chunk_samples: usize,
    between_chunks: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<VadOutcome> {
    params.validate()?;
    let chunk_samples = chunk_samples.max(FRAME_SAMPLES);
    let stream = ChunkStream::open(path, StreamOptions::new(SAMPLE_RATE_HZ, chunk_samples))?;
    vad.reset();
    let info = stream.info().clone();
    let mut segmenter = Segmenter::new(params);
    let mut segments = Vec::new();
    // Chunks are whole frames except possibly the last; `carry` holds a partial frame anyway so
    // any chunk size works. Whole frames go to the model in one block.
    let mut carry: Vec<f32> = Vec::with_capacity(FRAME_SAMPLES);
    let mut probs: Vec<f32> = Vec::with_capacity(chunk_samples / FRAME_SAMPLES + 1);
    let mut n_samples = 0u64;
    // Decoding and resampling run on a second thread, a couple of chunks ahead of the model
    // (measured: they were ~10% of the time on one core). Chunks arrive in order; buffers go
    // back to be reused, so the steady state allocates nothing.
    let consumed = std::thread::scope(|scope| -> Result<()> {
        let (chunks_tx, chunks_rx) = crossbeam_channel::bounded::<Result<Vec<f32>>>(2);
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<f32>>(4);
        let decoder = std::thread::Builder::new()
            .name("masp-decode".into())
            .spawn_scoped(scope, move || {
                let mut stream = stream;
                loop {
                    let item = match stream.next_chunk() {
                        Ok(Some(chunk)) => {
                            let mut buffer = spare_rx.try_recv().unwrap_or_default();
                            buffer.clear();
                            buffer.extend_from_slice(chunk);
                            Ok(buffer)
                        }
                        Ok(None) => return,
                        Err(e) => Err(e.into()),
                    };
                    let failed = item.is_err();
                    // The model side stopped (an error or a cancellation): so does decoding.
                    if chunks_tx.send(item).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Inference {
                model: "vad".into(),
                reason: format!("cannot start the decoding thread: {e}"),
            })?;
        let result = (|| -> Result<()> {
            for item in &chunks_rx {
                let buffer = item?;
                let mut rest = buffer.as_slice();
                probs.clear();
                if !carry.is_empty() {
                    let take = (FRAME_SAMPLES - carry.len()).min(rest.len());
                    carry.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if carry.len() == FRAME_SAMPLES {
                        vad.process_block(&carry, &mut probs)?;
                        carry.clear();
                    }
                }
                let whole = rest.len() / FRAME_SAMPLES * FRAME_SAMPLES;
                vad.process_block(&rest[..whole], &mut probs)?;
                carry.extend_from_slice(&rest[whole..]);
                for &p in &probs {
                    segmenter.push(p);
                }
                segments.append(&mut segmenter.take_completed());
                n_samples += buffer.len() as u64;
                between_chunks(n_samples)?;
                let _ = spare_tx.try_send(buffer);
            }
            Ok(())
        })();
        // Unblock the decoder if it is waiting to send, then wait for it.
        drop(chunks_rx);
        let joined = decoder.join();
        result?;
        joined.map_err(|_| Error::Inference {
            model: "vad".into(),
            reason: "the decoding thread panicked".into(),
        })
    });
    consumed?;
    if !carry.is_empty() {
        probs.clear();
        vad.process_block(&carry, &mut probs)?;
        for &p in &probs {
            segmenter.push(p);
        }
    }
    segments.extend(segmenter.finish(n_samples));
    Ok(VadOutcome {
        info,
        n_samples,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(probs: &[f32], n_samples: u64) -> Vec<(u64, u64)> {
        let mut s = Segmenter::new(&VadParams::default());
        for &p in probs {
            s.push(p);
        }
        s.finish(n_samples)
            .iter()
            .map(|g| (g.start_sample, g.end_sample))
            .collect()
    }

    #[test]
    fn frame_agreement_counts_10ms_frames_by_their_centre() {
        let seg = |start_sample, end_sample| SpeechSegment {
            start_sample,
            end_sample,
        };
        // 1 s: speech 0.2–0.5 s against 0.3–0.5 s differs on 10 of 100 frames.
        let a = [seg(3200, 8000)];
        let b = [seg(4800, 8000)];
        assert!((frame_agreement(&a, &b, 16_000) - 0.9).abs() < 1e-12);
        assert_eq!(frame_agreement(&a, &a, 16_000), 1.0);
        assert_eq!(frame_agreement(&[], &[], 0), 1.0);
        let split = [seg(3200, 4000), seg(4000, 8000)];
        assert_eq!(frame_agreement(&a, &split, 16_000), 1.0);
    }

    #[test]
    fn silence_gives_no_segments() {
        assert!(run(&[0.01; 100], 51_200).is_empty());
    }

    #[test]
    fn one_burst_is_padded_on_both_sides() {
        // 20 silent frames, 20 speech frames (0.64 s), 20 silent frames.
        let mut p = vec![0.0; 20];
        p.extend([0.9; 20]);
        p.extend([0.0; 20]);
        let segs = run(&p, 60 * 512);
        // Speech starts at frame 20, ends (temp_end) at frame 40; pad 480 samples.
        assert_eq!(segs, vec![(20 * 512 - 480, 40 * 512 + 480)]);
    }

    #[test]
    fn short_burst_is_dropped_and_short_gap_is_bridged() {
        let mut p = vec![0.0; 10];
        p.extend([0.9; 5]); // 2560 samples < 4000: dropped
        p.extend([0.0; 10]);
        assert!(run(&p, 25 * 512).is_empty());
        // A gap of 2 frames (1024 samples < 1600 min silence) does not split speech.
        let mut p = vec![0.9; 20];
        p.extend([0.0; 2]);
        p.extend([0.9; 20]);
        p.extend([0.0; 10]);
        assert_eq!(run(&p, 52 * 512).len(), 1);
    }

    #[test]
    fn close_neighbours_share_the_silence_between_them() {
        // With min_silence 0 a single low frame closes a segment; the next starts 512 samples
        // later, a gap below 2 × pad, so the halving rule splits the gap (256 each side).
        let params = VadParams {
            min_silence_ms: 0,
            ..VadParams::default()
        };
        let mut s = Segmenter::new(&params);
        let mut p = vec![0.9; 20];
        p.push(0.0);
        p.extend([0.9; 20]);
        p.extend([0.0; 10]);
        for x in p {
            s.push(x);
        }
        let segs: Vec<_> = s
            .finish(51 * 512)
            .iter()
            .map(|g| (g.start_sample, g.end_sample))
            .collect();
        assert_eq!(
            segs,
            vec![(0, 10_240 + 256), (10_752 - 256, 41 * 512 + 480)]
        );
    }

    #[test]
    fn four_low_frames_do_not_end_speech_but_five_do() {
        // 4 × 512 = 2048 ≥ 1600 only counts from the first low frame: the segment closes at
        // the fifth low frame (cur − temp_end = 2048), not the fourth (1536).
        let mut p = vec![0.9; 20];
        p.extend([0.0; 4]);
        p.extend([0.9; 20]);
        p.extend([0.0; 10]);
        assert_eq!(run(&p, 54 * 512).len(), 1);
        let mut p = vec![0.9; 20];
        p.extend([0.0; 5]);
        p.extend([0.9; 20]);
        p.extend([0.0; 10]);
        assert_eq!(
            run(&p, 55 * 512),
            vec![(0, 20 * 512 + 480), (25 * 512 - 480, 45 * 512 + 480)]
        );
    }

    #[test]
    fn speech_to_the_end_is_closed_at_the_last_sample() {
        let mut p = vec![0.0; 10];
        p.extend([0.9; 30]);
        let n = 40 * 512 - 100;
        let segs = run(&p, n);
        assert_eq!(segs, vec![(10 * 512 - 480, n)]);
    }

    #[test]
    fn bad_params_are_refused_by_name() {
        let p = VadParams {
            threshold: 1.5,
            ..VadParams::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("threshold"));
    }
}
