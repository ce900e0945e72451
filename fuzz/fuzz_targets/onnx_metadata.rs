//! ONNX metadata from arbitrary bytes: a typed error or metadata, never a panic, and never more
//! memory than the file (weights are sliced from the map, not copied).
#![no_main]

mod scratch;

use libfuzzer_sys::fuzz_target;
use masp_model_registry::onnx::OnnxMetadata;

fuzz_target!(|data: &[u8]| {
    let path = scratch::dir().join("model.onnx");
    std::fs::write(&path, data).expect("scratch write");
    if let Ok(meta) = OnnxMetadata::read(&path) {
        assert!(meta.embedded_weight_bytes.get() <= data.len() as u64, "weights larger than the file");
    }
});
