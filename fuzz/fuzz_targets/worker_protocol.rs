//! The worker protocol's decoders on arbitrary bytes, from both sides: a frame reader over any
//! stream, and both message decoders over any body. Nothing may panic, and a message that
//! decodes must encode back to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use masp_orchestrator::worker::protocol::{FromWorker, ToWorker, read_frame};

fuzz_target!(|data: &[u8]| {
    // As a stream of frames.
    let mut stream = data;
    while let Ok(Some((tag, body))) = read_frame(&mut stream) {
        if let Ok(message) = ToWorker::decode(tag, &body) {
            // Compared as bytes: a float field may hold NaN, which is never equal to itself.
            let mut once = Vec::new();
            message.write(&mut once).expect("re-encode");
            let (tag2, body2) = read_frame(&mut once.as_slice())
                .expect("re-read")
                .expect("a frame");
            let back = ToWorker::decode(tag2, &body2).expect("re-decode");
            let mut twice = Vec::new();
            back.write(&mut twice).expect("re-encode");
            assert_eq!(once, twice, "a decoded request does not round-trip");
        }
        let _ = FromWorker::decode(tag, &body);
    }
    // As a bare body under every tag.
    if let Some((&tag, body)) = data.split_first() {
        let _ = ToWorker::decode(tag, body);
        let _ = FromWorker::decode(tag, body);
    }
});
