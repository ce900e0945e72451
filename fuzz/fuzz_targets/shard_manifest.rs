//! `masp merge` over shard run directories whose `shard.json` is arbitrary bytes (the data is
//! split at its first 0xFF byte into two shards' manifests): a merge or a typed error, never a
//! panic, and nothing written outside the merge's output directory.
#![no_main]

mod scratch;

use libfuzzer_sys::fuzz_target;
use masp_run::shard::{SHARD_FILE, merge};

fuzz_target!(|data: &[u8]| {
    let root = scratch::dir().join("merge");
    let _ = std::fs::remove_dir_all(&root);
    let (a, b) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let mut dirs = Vec::new();
    for (name, manifest) in [("s1", a), ("s2", b)] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join(SHARD_FILE), manifest).expect("scratch write");
        dirs.push(dir);
    }
    let out = root.join("out");
    let _ = merge(&dirs, &out);
    for entry in std::fs::read_dir(&root).expect("scratch dir") {
        let name = entry.expect("entry").file_name();
        assert!(
            ["s1", "s2", "out"].iter().any(|n| name == *n),
            "merge wrote {name:?} beside its output"
        );
    }
});
