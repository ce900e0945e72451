//! Model manifests from strangers: any bytes must give a registry or a typed error, a model
//! path must never leave the manifest's directory (links resolved), and a model's name must be
//! one plain path component.
#![no_main]

mod scratch;

use libfuzzer_sys::fuzz_target;
use masp_model_registry::manifest::{ModelSource, Registry};
use masp_model_registry::path::{check_component, is_inside};

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir();
    let path = dir.join("masp.toml");
    std::fs::write(&path, data).expect("scratch write");
    let mut registry = Registry::builtin();
    if registry.add_manifest(&path).is_ok() {
        for spec in registry.models() {
            assert!(check_component(&spec.name).is_ok(), "model name {:?}", spec.name);
            if let ModelSource::File(file) = &spec.source {
                assert!(file.starts_with(&dir), "{} escapes {}", file.display(), dir.display());
                assert!(is_inside(&dir, file), "{} escapes {}", file.display(), dir.display());
            }
        }
    }
});
