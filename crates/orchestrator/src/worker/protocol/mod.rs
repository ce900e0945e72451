//! The wire protocol between the orchestrator and a `masp worker` process.
//!
//! One frame per message, over the worker's stdin (orchestrator → worker) and a private copy
//! of its stdout (worker → orchestrator):
//!
//! ```text
//! u32 LE  length of what follows (2 ..= MAX_FRAME)
//! u8      protocol version (PROTOCOL_VERSION)
//! u8      message tag
//! …       the message body: little-endian integers and floats, f32 arrays as raw LE bytes,
//!         strings and paths as u32 length + bytes, options as a 0/1 byte + value
//! ```
//!
//! Both sides decode defensively: a length is checked against [`MAX_FRAME`] before anything is
//! read, bytes are buffered only as they arrive (a lying length costs nothing), every count is
//! checked against the bytes left before allocating, enums and booleans must hold known values,
//! and a frame must be consumed exactly. Any violation is a [`ProtocolError`], never a panic.
//!
//! Amplification is bounded by construction: a frame's buffer never exceeds its length, and a
//! decoded message takes at most its body's bytes plus 128 KiB (every item costs no more in
//! memory than on the wire, except tensor entries and output names, which are capped at 1024).
//! So a peer can make the other side hold at most 2 × [`MAX_FRAME`] + 128 KiB per frame; the
//! orchestrator reads one frame ahead of what it asked for, never more.
//!
//! `framing` reads and writes frames and `codec` holds the encoding primitives; on top of them,
//! `messages` encodes [`ToWorker`] and [`FromWorker`], and `payload` the task parameters and
//! outputs they carry. None of them imports `messages`, and `framing` and `codec` import nothing
//! of each other.

mod codec;
mod framing;
mod messages;
mod payload;

use std::io;

pub use super::status::{FailureClass, LoadReport};
pub use framing::{MAX_FRAME, read_frame, write_frame};
pub use messages::{FromWorker, LoadRequest, RunRequest, ToWorker};

/// The protocol version both sides must speak; bumped on any change to the layout.
pub const PROTOCOL_VERSION: u8 = 3;

/// A frame that cannot be read or understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The pipe failed.
    #[error("pipe error: {0}")]
    Io(#[from] io::Error),
    /// The stream ended inside a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the length prefix announced.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The length prefix is out of range.
    #[error("frame length {len} outside 2..={max}")]
    BadLength {
        /// The announced length.
        len: u64,
        /// [`MAX_FRAME`].
        max: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version {
        /// The version byte received.
        got: u8,
    },
    /// The body does not decode.
    #[error("malformed {message} message: {reason}")]
    Malformed {
        /// The message being decoded.
        message: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An unknown message tag.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
}

// Through the whole protocol (write, read_frame, decode), so beside its entry point rather than
// one part of it.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use masp_audio::AudioInfo;
    use masp_budget::Bytes;
    use masp_model_registry::manifest::{GenericSpec, ModelKind};

    use super::codec::Encoder;
    use super::messages::{TAG_DONE, TAG_EXIT, TAG_FAILED, TAG_LOAD, TAG_RUN};
    use super::*;
    use crate::task::{
        EMBEDDING_DIM, Embedding, RangeEmbedding, ResultFiles, SpeechSegment, TaskOutput,
        TaskParams, VadOutcome, VadParams, WrittenTensor,
    };

    fn roundtrip_to(msg: &ToWorker) -> ToWorker {
        let mut buf = Vec::new();
        msg.write(&mut buf).unwrap();
        let (tag, body) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        ToWorker::decode(tag, &body).unwrap()
    }

    fn roundtrip_from(msg: &FromWorker) -> FromWorker {
        let mut buf = Vec::new();
        msg.write(&mut buf).unwrap();
        let (tag, body) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        FromWorker::decode(tag, &body).unwrap()
    }

    fn load() -> ToWorker {
        ToWorker::Load(LoadRequest {
            name: "generic-x".into(),
            kind: ModelKind::Generic,
            path: "/models/x y.onnx".into(),
            sample_rate_hz: 16_000,
            generic: Some(GenericSpec {
                input: "wav".into(),
                window_ms: Some(1000),
                hop_ms: None,
                outputs: vec!["a".into(), "b".into()],
            }),
            intra_op_threads: 2,
            prepacking: false,
        })
    }

    #[test]
    fn every_request_survives_the_wire() {
        for msg in [
            load(),
            ToWorker::Run(RunRequest {
                input: "/a/b.wav".into(),
                chunk_samples: 32_000,
                rss_limit: Some(Bytes::from_mib(900)),
                params: TaskParams::Vad(VadParams {
                    neg_threshold: Some(0.3),
                    max_speech_s: f64::INFINITY,
                    ..VadParams::default()
                }),
            }),
            ToWorker::Run(RunRequest {
                input: "/a/b.wav".into(),
                chunk_samples: 1,
                rss_limit: None,
                params: TaskParams::Embed {
                    output: Some(ResultFiles::new("/out", "b-0123abcd").unwrap()),
                    windows: Some(vec![(0.0, 1.5), (2.0, 3.25)]),
                },
            }),
            ToWorker::Run(RunRequest {
                input: "/a/b.wav".into(),
                chunk_samples: 7,
                rss_limit: Some(Bytes::new(1)),
                params: TaskParams::Generic {
                    output: ResultFiles::new("/o", "b-0123abcd").unwrap(),
                },
            }),
            ToWorker::Exit,
        ] {
            assert_eq!(roundtrip_to(&msg), msg);
        }
    }

    #[test]
    fn outputs_survive_the_wire_bit_for_bit() {
        let mut e = [0f32; EMBEDDING_DIM];
        for (i, v) in e.iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin() / 3.0;
        }
        e[5] = -0.0;
        let segments = TaskOutput::Segments(VadOutcome {
            info: AudioInfo {
                path: "/a.wav".into(),
                codec: "pcm_s16le".into(),
                source_sample_rate_hz: 44_100,
                n_channels: 2,
                n_source_frames: Some(99),
            },
            n_samples: 36,
            segments: vec![SpeechSegment {
                start_sample: 3,
                end_sample: 30,
            }],
        });
        let FromWorker::Done {
            output: TaskOutput::Segments(back),
            working_peak,
        } = roundtrip_from(&FromWorker::Done {
            output: segments,
            working_peak: Bytes::from_mib(3),
        })
        else {
            panic!("not segments");
        };
        assert_eq!(working_peak, Bytes::from_mib(3));
        assert_eq!(back.info.n_source_frames, Some(99));
        assert_eq!(back.segments[0].end_sample, 30);

        let ranges = TaskOutput::RangeEmbeddings {
            embeddings: vec![RangeEmbedding {
                start_s: 0.5,
                end_s: 1.25,
                embedding: e,
            }],
            written: Some(WrittenTensor {
                output: "embedding".into(),
                path: "/o/a.embeddings.npy".into(),
                shape: vec![1, EMBEDDING_DIM],
            }),
        };
        let FromWorker::Done {
            output:
                TaskOutput::RangeEmbeddings {
                    embeddings,
                    written,
                },
            ..
        } = roundtrip_from(&FromWorker::Done {
            output: ranges,
            working_peak: Bytes::new(0),
        })
        else {
            panic!("not range embeddings");
        };
        let bits = |v: &Embedding| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&embeddings[0].embedding), bits(&e));
        assert_eq!(written.unwrap().shape, vec![1, EMBEDDING_DIM]);

        let FromWorker::Failed { class, message } = roundtrip_from(&FromWorker::Failed {
            class: FailureClass::Input,
            message: "a.wav: not a recognised audio format".into(),
        }) else {
            panic!("not failed");
        };
        assert_eq!(class, FailureClass::Input);
        assert!(message.starts_with("a.wav"));

        let stopped = FromWorker::Terminated {
            rss: Bytes::from_mib(901),
            peak: Bytes::from_mib(930),
            limit: Bytes::from_mib(900),
        };
        let FromWorker::Terminated { rss, peak, limit } = roundtrip_from(&stopped) else {
            panic!("not terminated");
        };
        assert_eq!(
            (rss, peak, limit),
            (
                Bytes::from_mib(901),
                Bytes::from_mib(930),
                Bytes::from_mib(900)
            )
        );
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        let mut good = Vec::new();
        load().write(&mut good).unwrap();

        // Every truncation of a good frame.
        for cut in 1..good.len() {
            let r = read_frame(&mut &good[..cut]);
            assert!(
                matches!(r, Err(ProtocolError::Truncated { .. })),
                "cut at {cut}: {r:?}"
            );
        }
        // A length beyond the limit, and one too short to hold version and tag.
        for len in [u32::MAX, (MAX_FRAME + 1) as u32, 0, 1] {
            let mut f = len.to_le_bytes().to_vec();
            f.extend_from_slice(&[PROTOCOL_VERSION, TAG_EXIT]);
            assert!(matches!(
                read_frame(&mut f.as_slice()),
                Err(ProtocolError::BadLength { .. })
            ));
        }
        // Another version.
        let mut v = good.clone();
        v[4] = PROTOCOL_VERSION + 1;
        assert!(matches!(
            read_frame(&mut v.as_slice()),
            Err(ProtocolError::Version { .. })
        ));
        // An unknown tag.
        assert!(matches!(
            ToWorker::decode(200, &[]),
            Err(ProtocolError::UnknownTag(200))
        ));
        assert!(matches!(
            FromWorker::decode(TAG_LOAD, &[]),
            Err(ProtocolError::UnknownTag(TAG_LOAD))
        ));
        // Every truncation of a good body, and trailing bytes.
        let (tag, body) = read_frame(&mut good.as_slice()).unwrap().unwrap();
        for cut in 0..body.len() {
            assert!(matches!(
                ToWorker::decode(tag, &body[..cut]),
                Err(ProtocolError::Malformed { .. })
            ));
        }
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(
            ToWorker::decode(tag, &long),
            Err(ProtocolError::Malformed { .. })
        ));
        // A count that claims more items than bytes left: refused before allocating.
        let mut e = Encoder::default();
        e.u8(3);
        e.u32(u32::MAX);
        assert!(matches!(
            FromWorker::decode(TAG_DONE, &e.buf),
            Err(ProtocolError::Malformed { .. })
        ));
        // A bad boolean and a bad enum code.
        let mut e = Encoder::default();
        e.u8(9);
        e.str("x");
        assert!(FromWorker::decode(TAG_FAILED, &e.buf).is_err());
        let mut e = Encoder::default();
        e.u8(2);
        assert!(ToWorker::decode(TAG_RUN, &e.buf).is_err());
        // Time ranges that are not ranges (found by fuzzing: NaN reached the embedder).
        for (start, end) in [
            (f64::NAN, 1.0),
            (0.0, f64::INFINITY),
            (2.0, 1.0),
            (-1.0, 0.0),
        ] {
            let msg = ToWorker::Run(RunRequest {
                input: "/a.wav".into(),
                chunk_samples: 1,
                rss_limit: None,
                params: TaskParams::Embed {
                    output: None,
                    windows: Some(vec![(start, end)]),
                },
            });
            let mut buf = Vec::new();
            msg.write(&mut buf).unwrap();
            let (tag, body) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
            assert!(
                matches!(
                    ToWorker::decode(tag, &body),
                    Err(ProtocolError::Malformed { .. })
                ),
                "({start}, {end})"
            );
        }
    }

    /// A `Done` carrying `n` tensors of the smallest wire form (13 bytes each).
    fn tiny_tensors(n: u32) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u8(1);
        e.u32(n);
        for _ in 0..n {
            e.str("");
            e.path(std::path::Path::new("x"));
            e.u32(0);
        }
        e.u64(0);
        e.buf
    }

    #[test]
    fn counts_that_would_amplify_are_refused() {
        // 1024 tensors decode; one more is refused, however small each is.
        assert!(FromWorker::decode(TAG_DONE, &tiny_tensors(1024)).is_ok());
        for n in [1025, 100_000] {
            assert!(
                matches!(
                    FromWorker::decode(TAG_DONE, &tiny_tensors(n)),
                    Err(ProtocolError::Malformed { .. })
                ),
                "{n}"
            );
        }
        // Counts that lie about what follows, in every list of a `Done`.
        for (kind, count) in [(0u8, u32::MAX), (1, 2), (3, 1), (3, u32::MAX)] {
            let mut e = Encoder::default();
            e.u8(kind);
            if kind == 0 {
                e.path(std::path::Path::new("/a.wav"));
                e.str("pcm");
                e.u32(16_000);
                e.u64(1);
                e.u8(0);
                e.u64(1);
            }
            e.u32(count);
            e.u64(0);
            assert!(
                matches!(
                    FromWorker::decode(TAG_DONE, &e.buf),
                    Err(ProtocolError::Malformed { .. })
                ),
                "kind {kind}, count {count}"
            );
        }
        // A load naming more outputs than any model has.
        let mut e = Encoder::default();
        e.str("m");
        e.u8(2);
        e.path(std::path::Path::new("/m.onnx"));
        e.u32(16_000);
        e.u8(1);
        e.str("x");
        e.u8(0);
        e.u8(0);
        e.u32(2000);
        for _ in 0..2000 {
            e.str("");
        }
        e.u32(1);
        e.bool(false);
        assert!(matches!(
            ToWorker::decode(TAG_LOAD, &e.buf),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: decoding arbitrary bodies must only ever error.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let body: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32 * 7) & 0xff) as u8)
                .collect();
            let tag = (x >> 56) as u8;
            let _ = ToWorker::decode(tag % 4, &body);
            let _ = FromWorker::decode(64 + tag % 6, &body);
        }
    }
}
