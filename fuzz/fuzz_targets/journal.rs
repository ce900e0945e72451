//! Journal replay of arbitrary bytes (a crash can leave anything at the tail): opening never
//! panics, and a record appended afterwards is read back.
#![no_main]

mod scratch;

use libfuzzer_sys::fuzz_target;
use masp_run::journal::{Entry, JOURNAL_FILE, Journal};

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir().join("run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join(JOURNAL_FILE), data).expect("scratch write");
    let Ok(mut journal) = Journal::open(&dir) else { return };
    let entry = Entry {
        task: "fuzz".into(),
        input_sha256: "i".into(),
        config_sha256: "c".into(),
        outputs: Vec::new(),
    };
    journal.record(entry).expect("append");
    drop(journal);
    let journal = Journal::open(&dir).expect("reopen");
    assert!(journal.is_done("fuzz", "i", "c"), "an appended record was lost");
});
