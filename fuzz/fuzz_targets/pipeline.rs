//! Pipeline files from strangers: any bytes give a pipeline or a typed error, and a pipeline's
//! tasks write only inside `--out`, one directory per stage, one journal key per
//! (stage, input) pair.
#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use masp_model_registry::manifest::Registry;
use masp_model_registry::path::check_component;
use masp_run::pipeline::Pipeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pipeline) = Pipeline::parse(text, Path::new("p.toml")) else {
        return;
    };
    let out = Path::new("/fuzz/out");
    // Colliding stems in two folders; they do not need to exist to be named.
    let files = [PathBuf::from("/fuzz/a/x.wav"), PathBuf::from("/fuzz/b/x.wav")];
    let registry = Registry::builtin();
    let Ok(tasks) = pipeline.tasks(&registry, &files, out) else {
        return;
    };
    assert_eq!(tasks.len(), files.len() * pipeline.stages().len());
    let mut keys = HashSet::new();
    for task in &tasks {
        let stage = task.dir.strip_prefix(out).expect("a stage directory outside --out");
        let name = stage.to_str().expect("a stage name that is not text");
        assert!(check_component(name).is_ok(), "stage directory {name:?} is not one component");
        assert!(keys.insert(task.key.clone()), "two tasks share the journal key {}", task.key);
    }
});
