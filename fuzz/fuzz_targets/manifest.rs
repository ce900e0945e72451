//! Model manifests from strangers: any bytes must give a registry or a typed error, and a
//! model path must never leave the manifest's directory.
#![no_main]

mod scratch;

use libfuzzer_sys::fuzz_target;
use masp_model_registry::manifest::{ModelSource, Registry};

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir();
    let path = dir.join("masp.toml");
    std::fs::write(&path, data).expect("scratch write");
    let mut registry = Registry::builtin();
    if registry.add_manifest(&path).is_ok() {
        for spec in registry.models() {
            if let ModelSource::File(file) = &spec.source {
                assert!(file.starts_with(&dir), "{} escapes {}", file.display(), dir.display());
            }
        }
    }
});
