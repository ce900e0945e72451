//! The run journal: what a batch has finished, so a stopped batch resumes without losing or
//! redoing finished work.
//!
//! A run directory holds the outputs and `journal.jsonl`. A task's outputs are written to
//! temporary names, synced and renamed ([`write_atomic`]); only then is its journal line
//! appended and synced ([`Journal::record`]). So after a crash at any point:
//! - a task with a journal line has all its outputs, complete;
//! - a task without one is redone (its outputs, if renamed already, are overwritten with the
//!   same content);
//! - temporary files are leftovers and are removed ([`remove_temporaries`]).
//!
//! Each line carries the content hash of the task's input and of its configuration; a changed
//! input or configuration does not match and the task is redone. A torn last line (the crash
//! hit the append) is ignored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use masp_model_registry::file::{Links, open_regular_with};
use serde::{Deserialize, Serialize};

use crate::lock::RunLock;
use crate::{Error, Result};

/// The journal's file name inside a run directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// Deepest directory level [`remove_temporaries`] looks into below the run directory. masp
/// writes results at most a stage directory deep; the bound keeps a hostile tree (thousands of
/// nested directories) from costing more than a few levels of walking.
pub const MAX_WALK_DEPTH: usize = 8;
pub use masp_model_registry::atomic::{TEMP_SUFFIX, temporary_path, write_atomic};

/// One finished task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The task's identity: stage and input path.
    pub task: String,
    /// sha256 of the input file's content.
    pub input_sha256: String,
    /// sha256 of the stage's configuration (model, model file hash, parameters).
    pub config_sha256: String,
    /// The task's outputs, relative to the run directory.
    pub outputs: Vec<PathBuf>,
}

/// The journal of one run directory.
///
/// Opening it locks the run directory ([`RunLock`]) until it is dropped, so two processes
/// never append to, truncate or clean up one run directory at once.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    done: HashMap<String, Entry>,
    _lock: RunLock,
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::io(path, e)
}

/// The longest journal line read back, in bytes: 1 MiB. The longest masp writes is a generic
/// task's, with up to 1024 tensor files (~250 KiB); a longer line was not written by masp and
/// is skipped as it is read, never held whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Replays the complete (newline-terminated) lines of `reader` into `done`, a line at a time:
/// memory stays one line (at most [`MAX_LINE_BYTES`]) plus the entries kept. Returns the
/// length of the complete lines, where a torn tail starts.
fn replay(reader: impl std::io::Read, done: &mut HashMap<String, Entry>) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 << 10, reader);
    let (mut line, mut too_long) = (Vec::new(), false);
    let (mut read, mut complete) = (0u64, 0u64);
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(complete);
        }
        let (used, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = &chunk[..if ended { used - 1 } else { used }];
        if !too_long && line.len() + body.len() <= MAX_LINE_BYTES {
            line.extend_from_slice(body);
        } else {
            too_long = true;
            line.clear();
        }
        reader.consume(used);
        read += used as u64;
        if ended {
            if !too_long && let Ok(entry) = serde_json::from_slice::<Entry>(&line) {
                done.insert(entry.task.clone(), entry);
            }
            line.clear();
            too_long = false;
            complete = read;
        }
    }
}

impl Journal {
    /// Open (or create) the journal of `run_dir`, locking the directory and replaying what the
    /// journal records.
    ///
    /// # Errors
    /// [`Error::InUse`] when another process has the run directory open; [`Error::Output`] when
    /// the directory or journal cannot be created or read, or the journal is not a regular file
    /// (a FIFO, a symlink, a directory).
    pub fn open(run_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(run_dir).map_err(|e| io_err(run_dir, &e))?;
        // First: nobody else may append while the torn tail is cut below.
        let lock = RunLock::acquire(run_dir)?;
        let path = run_dir.join(JOURNAL_FILE);
        let mut done = HashMap::new();
        // One open for reading, cutting and appending; refused unless a regular file (a FIFO
        // would block forever, a symlink would write elsewhere).
        let file = open_regular_with(
            &path,
            Links::Refuse,
            OpenOptions::new().read(true).append(true).create(true),
        )
        .map_err(|e| io_err(&path, &e))?;
        let complete = replay(&file, &mut done).map_err(|e| io_err(&path, &e))?;
        let len = file.metadata().map_err(|e| io_err(&path, &e))?.len();
        // Only newline-terminated lines were fully appended. Cut a torn tail off, or the next
        // append would glue onto it and spoil both lines.
        if complete < len {
            file.set_len(complete).map_err(|e| io_err(&path, &e))?;
            file.sync_all().map_err(|e| io_err(&path, &e))?;
        }
        Ok(Self {
            dir: run_dir.to_path_buf(),
            file,
            done,
            _lock: lock,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `task` finished with this input and configuration and its outputs are all there:
    /// each a regular file inside the run directory (a journal line naming `../x`, an absolute
    /// path or a link is not masp's and does not count).
    pub fn is_done(&self, task: &str, input_sha256: &str, config_sha256: &str) -> bool {
        self.done.get(task).is_some_and(|e| {
            e.input_sha256 == input_sha256
                && e.config_sha256 == config_sha256
                && e.outputs.iter().all(|o| {
                    masp_model_registry::path::confine(&self.dir, o)
                        .and_then(|p| p.symlink_metadata().ok())
                        .is_some_and(|m| m.is_file())
                })
        })
    }

    /// Tasks recorded as finished.
    pub fn n_done(&self) -> usize {
        self.done.len()
    }

    /// Record a finished task: append its line and sync it to disk. Call after its outputs are
    /// renamed into place.
    ///
    /// # Errors
    /// [`Error::Output`] when the journal cannot be written (e.g. the disk is full); the task
    /// then counts as not finished and is redone on resume.
    pub fn record(&mut self, entry: Entry) -> Result<()> {
        let path = self.dir.join(JOURNAL_FILE);
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::Output {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| io_err(&path, &e))?;
        self.file.sync_data().map_err(|e| io_err(&path, &e))?;
        self.done.insert(entry.task.clone(), entry);
        Ok(())
    }
}

/// Remove leftover temporary files under `dir` (its subdirectories too, at most
/// [`MAX_WALK_DEPTH`] deep); returns how many.
///
/// Symlinks are never followed, and only regular files are removed: a link inside a run
/// directory (`a -> .`, `out -> /elsewhere`) is neither walked, which would loop or leave the
/// directory, nor a reason to delete anything outside it.
pub fn remove_temporaries(dir: &Path) -> usize {
    remove_temporaries_below(dir, 0)
}

fn remove_temporaries_below(dir: &Path, depth: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        // `DirEntry::file_type` is the entry's own type (lstat): a symlink stays a symlink.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            if depth < MAX_WALK_DEPTH {
                n += remove_temporaries_below(&path, depth + 1);
            }
        } else if kind.is_file()
            && entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX)
            && std::fs::remove_file(&path).is_ok()
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(task: &str, input: &str, outputs: &[&str]) -> Entry {
        Entry {
            task: task.into(),
            input_sha256: input.into(),
            config_sha256: "c".into(),
            outputs: outputs.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn replay_skips_done_tasks_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("a.json"), b"{}").unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.record(entry("vad a.wav", "h1", &["a.json"])).unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.is_done("vad a.wav", "h1", "c"));
        assert!(!j.is_done("vad a.wav", "h2", "c"), "changed input");
        assert!(
            !j.is_done("vad a.wav", "h1", "other"),
            "changed configuration"
        );
        std::fs::remove_file(dir.path().join("a.json")).unwrap();
        assert!(!j.is_done("vad a.wav", "h1", "c"), "missing output");
    }

    #[test]
    fn an_overlong_line_is_skipped_without_losing_the_lines_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let line = |e: &Entry| serde_json::to_string(e).unwrap() + "\n";
        let mut text = line(&entry("before", "h", &[]));
        // A valid entry, but longer than any masp writes; then garbage with no newline for a
        // while, then a good line.
        let long = entry(&"t".repeat(MAX_LINE_BYTES), "h", &[]);
        text += &line(&long);
        text += &"x".repeat(3 * MAX_LINE_BYTES);
        text += "\n";
        text += &line(&entry("after", "h", &[]));
        std::fs::write(dir.path().join(JOURNAL_FILE), &text).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.n_done(), 2);
        assert!(j.is_done("before", "h", "c") && j.is_done("after", "h", "c"));
        assert!(!j.is_done(&long.task, "h", "c"));
    }

    #[test]
    fn outputs_outside_the_run_directory_or_behind_links_do_not_count() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(outer.path().join("elsewhere.json"), b"{}").unwrap();
        std::fs::write(dir.join("real.json"), b"{}").unwrap();
        std::os::unix::fs::symlink("../elsewhere.json", dir.join("link.json")).unwrap();
        let elsewhere = outer.path().join("elsewhere.json");
        let cases = [
            ("up", "../elsewhere.json"),
            ("absolute", elsewhere.to_str().unwrap()),
            ("link", "link.json"),
            ("dir", "."),
            ("ok", "real.json"),
        ];
        let text: String = cases
            .iter()
            .map(|(task, out)| serde_json::to_string(&entry(task, "h", &[out])).unwrap() + "\n")
            .collect();
        std::fs::write(dir.join(JOURNAL_FILE), text).unwrap();
        let j = Journal::open(&dir).unwrap();
        for (task, _) in &cases[..4] {
            assert!(!j.is_done(task, "h", "c"), "{task}");
        }
        assert!(j.is_done("ok", "h", "c"));
    }

    #[test]
    fn a_torn_last_line_is_not_a_finished_task() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.record(entry("t1", "h", &[])).unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(br#"{"task":"t2","input_sha256":"h","conf"#)
            .unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.is_done("t1", "h", "c"));
        assert!(!j.is_done("t2", "h", "c"));
        assert_eq!(j.n_done(), 1);
    }

    #[test]
    fn temporaries_are_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("stage")).unwrap();
        let final_path = dir.path().join("stage/x.npy");
        std::fs::write(temporary_path(&final_path), b"partial").unwrap();
        write_atomic(&dir.path().join("stage/y.json"), b"{}").unwrap();
        assert_eq!(remove_temporaries(dir.path()), 1);
        assert!(dir.path().join("stage/y.json").is_file());
    }

    proptest! {
        /// Replaying a journal cut at any byte gives exactly the entries whose lines were
        /// complete, in any order of appends, with the last record of a task winning.
        #[test]
        fn replay_of_a_journal_cut_anywhere(tasks in proptest::collection::vec((0u8..5, 0u8..3), 1..20), cut_frac in 0.0f64..=1.0) {
            let dir = tempfile::tempdir().unwrap();
            let mut j = Journal::open(dir.path()).unwrap();
            for (t, h) in &tasks {
                j.record(entry(&format!("t{t}"), &format!("h{h}"), &[])).unwrap();
            }
            drop(j);
            let path = dir.path().join(JOURNAL_FILE);
            let bytes = std::fs::read(&path).unwrap();
            let cut = (bytes.len() as f64 * cut_frac) as usize;
            std::fs::write(&path, &bytes[..cut]).unwrap();
            // The expected state: newline-terminated lines only, later lines overriding earlier.
            let mut expected: HashMap<String, String> = HashMap::new();
            let mut offset = 0;
            for (t, h) in &tasks {
                let len = serde_json::to_vec(&entry(&format!("t{t}"), &format!("h{h}"), &[])).unwrap().len() + 1;
                if offset + len <= cut {
                    expected.insert(format!("t{t}"), format!("h{h}"));
                }
                offset += len;
            }
            let mut j = Journal::open(dir.path()).unwrap();
            prop_assert_eq!(j.n_done(), expected.len());
            for (t, h) in &expected {
                prop_assert!(j.is_done(t, h, "c"));
            }
            // Appending after a cut keeps every line readable.
            j.record(entry("after", "h", &[])).unwrap();
            drop(j);
            let j = Journal::open(dir.path()).unwrap();
            prop_assert!(j.is_done("after", "h", "c"));
            prop_assert_eq!(j.n_done(), expected.len() + usize::from(!expected.contains_key("after")));
        }
    }
}
