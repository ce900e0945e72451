//! Decoding, downmix and resampling of arbitrary bytes: must return chunks or a typed error,
//! never panic, never hang. The first byte picks the file extension (the format hint).
#![no_main]

mod scratch;

use libfuzzer_sys::fuzz_target;
use masp_audio::{ChunkStream, StreamOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let ext = ["wav", "flac", "mp3", "ogg", "aiff"][usize::from(first) % 5];
    let path = scratch::dir().join(format!("input.{ext}"));
    std::fs::write(&path, body).expect("scratch write");
    let Ok(mut stream) = ChunkStream::open(&path, StreamOptions::new(16_000, 4096)) else { return };
    // Bound the work per input: a header may declare hours of audio.
    let mut emitted = 0usize;
    while let Ok(Some(chunk)) = stream.next_chunk() {
        assert!(chunk.iter().all(|s| s.is_finite()), "non-finite sample emitted");
        emitted += chunk.len();
        if emitted > 2_000_000 {
            break;
        }
    }
});
