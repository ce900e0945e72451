//! Golden outputs: what the `masp` binary prints and writes for the committed samples, compared
//! byte for byte with `assets/golden/`, so a refactor cannot change them unnoticed.
//!
//! Every command runs in a fresh temporary directory holding copies of the samples at
//! `samples/<name>`, with relative paths for inputs and outputs, so paths in outputs are the
//! same on every machine. Each command family has a directory of goldens; the set of files is
//! compared too, so an output (or a stderr message) that appears or disappears fails. A golden
//! named `X.sha256` holds the sha256 of output `X` (binary `.npy` files, and text over 128 KiB).
//!
//! What is normalised, and why (nothing else is):
//! - stderr `--stats` lines: the wall time (`in 0.46 s`), the speed (`(87× real time)`) and the
//!   peak RSS (`peak RSS 50.6 MiB`) are measurements of this run on this machine; they become
//!   `<WALL>`, `<SPEED>` and `<BYTES>`. Counts, audio seconds and loads are kept.
//! - Result names `<stem>-<16 hex>.*` (`masp_run::name`, one scheme for every command: the
//!   `masp vad --run-dir` records, the `masp embed --out` files and the `masp run --out`
//!   results; the hex hashes the input's absolute canonical path, i.e. the temporary directory)
//!   are matched by directory and stem: a trailing `-<16 hex>` after an input's stem is dropped,
//!   in file names and in paths inside result files (the embedding stage's JSON names its
//!   `.npy`). So the layout before the unification (`<stem>.*` for `embed` and `run`,
//!   `<stem>-<8 hex>` for `vad --run-dir`, whose goldens were written with 8 dropped) compares
//!   equal, and a result's content must not change.
//! - Not compared: run-directory journals (`journal.jsonl`, which name the results above and
//!   change with the rename) and `masp diarize`/`masp embed` intermediate files in their run
//!   directories (a cache, not output).
//!
//! After an intended change, regenerate with the binary that is right:
//! `MASP_GOLDEN_WRITE_WITH="$PWD/target/debug/masp" cargo test -p masp-cli --test golden`
//! writes the goldens from that binary instead of comparing (then review `git diff assets/golden`).

// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The committed samples, copied to `samples/<name>` in each scratch directory.
const SAMPLES: [&str; 2] = ["two_voices.wav", "noisy_mix_44k_stereo.flac"];
/// Their stems: what result names are made of.
const STEMS: [&str; 2] = ["two_voices", "noisy_mix_44k_stereo"];
/// Text outputs larger than this are kept as a sha256 (the 300 KB per-window embeddings).
const MAX_TEXT_GOLDEN_BYTES: usize = 128 * 1024;
/// Environment settings that would change outputs; unset so the defaults are what is tested.
const SETTINGS_ENV: [&str; 6] = [
    "MASP_BUDGET",
    "MASP_FORMAT",
    "MASP_ISOLATION",
    "MASP_MAX_RESIDENT",
    "MASP_THREADS",
    "MASP_WORKER_PROGRAM",
];

/// Golden-relative name → normalised bytes, for one command family.
type Outputs = BTreeMap<String, Vec<u8>>;

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/golden")
}

/// The binary under test, or, when regenerating, the one the goldens are written from.
fn binary() -> (PathBuf, bool) {
    match std::env::var_os("MASP_GOLDEN_WRITE_WITH") {
        // Canonical: tests run in the crate's directory and masp in a scratch directory.
        Some(path) => (
            std::fs::canonicalize(&path)
                .unwrap_or_else(|e| panic!("MASP_GOLDEN_WRITE_WITH={}: {e}", path.display())),
            true,
        ),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_masp")), false),
    }
}

/// A working directory with the samples at `samples/<name>`.
struct Scratch {
    dir: tempfile::TempDir,
    outputs: Outputs,
}

impl Scratch {
    fn new() -> Self {
        require_setup();
        let dir = tempfile::tempdir().unwrap();
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples");
        std::fs::create_dir(dir.path().join("samples")).unwrap();
        for name in SAMPLES {
            std::fs::copy(samples.join(name), dir.path().join("samples").join(name))
                .unwrap_or_else(|e| panic!("copying sample {name}: {e}"));
        }
        Self {
            dir,
            outputs: Outputs::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs masp here; it must exit 0.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(binary().0);
        cmd.current_dir(self.path()).args(args);
        for var in SETTINGS_ENV {
            cmd.env_remove(var);
        }
        let out = cmd.output().expect("masp runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "masp {}: failed (if a model or ONNX Runtime is missing: run `cargo xtask setup`)\n\
             stdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs masp and records its stdout as `name.stdout` and, when not empty, its normalised
    /// stderr as `name.stderr`.
    fn record(&mut self, name: &str, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        let stderr = normalise_stats(&String::from_utf8_lossy(&out.stderr));
        if !stderr.is_empty() {
            self.outputs
                .insert(format!("{name}.stderr"), stderr.into_bytes());
        }
        self.outputs
            .insert(format!("{name}.stdout"), out.stdout.clone());
        out.stdout
    }

    /// Records every file under `dir` (relative to here) as `as_name/<relative path>`, names
    /// and contents through `normalise`; `journal.jsonl` is left out.
    fn record_dir(&mut self, dir: &str, as_name: &str, normalise: &dyn Fn(&str) -> String) {
        for (relative, bytes) in files_under(&self.path().join(dir)) {
            if relative == "journal.jsonl" {
                continue;
            }
            let name = format!("{as_name}/{}", normalise(&relative));
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => normalise(&text).into_bytes(),
                Err(binary) => binary.into_bytes(),
            };
            let previous = self.outputs.insert(name.clone(), bytes);
            assert!(previous.is_none(), "two outputs normalise to {name}");
        }
    }

    /// Compares (or, when regenerating, writes) this family's goldens.
    fn check(self, family: &str) {
        let dir = golden_root().join(family);
        if binary().1 {
            write_goldens(&dir, &self.outputs);
        } else {
            compare(family, &dir, &self.outputs);
        }
    }
}

/// The samples as masp is given them: relative to the scratch directory.
fn samples() -> Vec<String> {
    SAMPLES.iter().map(|s| format!("samples/{s}")).collect()
}

fn with<'a>(args: &[&'a str], files: &'a [String]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .chain(files.iter().map(String::as_str))
        .collect()
}

/// Models and runtime present, or a failure that says how to get them (never a skip).
fn require_setup() {
    let out = Command::new(binary().0)
        .args(["models", "verify"])
        .output()
        .expect("masp runs");
    assert!(
        out.status.success(),
        "the models or ONNX Runtime are missing or damaged: run `cargo xtask setup`\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- normalisation ------------------------------------------------------------------------

/// Replaces, in `--stats` lines, the wall time, speed and peak RSS (see the file's docs).
fn normalise_stats(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.starts_with("masp ") {
            out.push_str(line);
            continue;
        }
        let line = mask_number(line, " in ", " s", "<WALL>");
        let line = mask_number(&line, " (", "× real time)", "<SPEED>");
        out.push_str(&mask_bytes(&line, "peak RSS "));
    }
    out
}

/// Replaces each number (digits and dots) between `before` and `after` with `placeholder`.
fn mask_number(line: &str, before: &str, after: &str, placeholder: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(before) {
        let start = i + before.len();
        let n = rest[start..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len() - start);
        out.push_str(&rest[..start]);
        if n > 0 && rest[start + n..].starts_with(after) {
            out.push_str(placeholder);
        } else {
            out.push_str(&rest[start..start + n]);
        }
        rest = &rest[start + n..];
    }
    out.push_str(rest);
    out
}

/// Replaces each size (`50.6 MiB`, `812 B`) after `before` with `<BYTES>`.
fn mask_bytes(line: &str, before: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(before) {
        let start = i + before.len();
        let tail = &rest[start..];
        let number = tail
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(tail.len());
        let unit = tail[number..]
            .strip_prefix(' ')
            .map(|u| {
                u.find(|c: char| !c.is_ascii_alphabetic())
                    .unwrap_or(u.len())
            })
            .unwrap_or(0);
        out.push_str(&rest[..start]);
        if number > 0 && unit > 0 {
            out.push_str("<BYTES>");
            rest = &tail[number + 1 + unit..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Drops `-<n_hex lowercase hex digits>` wherever it follows one of the samples' stems and is
/// followed by `.` (a file name's extensions).
fn strip_stem_hash(text: &str, n_hex: usize) -> String {
    let mut out = text.to_string();
    for stem in STEMS {
        let needle = format!("{stem}-");
        let mut from = 0;
        while let Some(i) = out[from..].find(&needle) {
            let start = from + i + needle.len();
            let hex = out.as_bytes()[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                .count();
            if hex == n_hex && out[start + n_hex..].starts_with('.') {
                out.replace_range(start - 1..start + n_hex, "");
            }
            from = start - 1;
        }
    }
    out
}

// ---- goldens ------------------------------------------------------------------------------

/// Every file under `root`, by `/`-separated relative path.
fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, into);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                into.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    if root.is_dir() {
        walk(root, root, &mut files);
    }
    files
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Whether output `name` is kept as its sha256 rather than its text.
fn as_hash(name: &str, bytes: &[u8]) -> bool {
    name.ends_with(".npy")
        || bytes.len() > MAX_TEXT_GOLDEN_BYTES
        || std::str::from_utf8(bytes).is_err()
}

fn write_goldens(dir: &Path, outputs: &Outputs) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    for (name, bytes) in outputs {
        let (path, content) = if as_hash(name, bytes) {
            (
                dir.join(format!("{name}.sha256")),
                format!("{}\n", sha256_hex(bytes)).into_bytes(),
            )
        } else {
            (dir.join(name), bytes.clone())
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    eprintln!(
        "wrote {} golden file(s) into {}",
        outputs.len(),
        dir.display()
    );
}

fn compare(family: &str, dir: &Path, outputs: &Outputs) {
    assert!(
        dir.is_dir(),
        "no goldens in {} (generate them with MASP_GOLDEN_WRITE_WITH)",
        dir.display()
    );
    let goldens = files_under(dir);
    let mut problems = Vec::new();
    for (golden_name, golden) in &goldens {
        let (name, hashed) = match golden_name.strip_suffix(".sha256") {
            Some(name) => (name, true),
            None => (golden_name.as_str(), false),
        };
        let Some(actual) = outputs.get(name) else {
            problems.push(format!("{family}/{name}: no longer produced"));
            continue;
        };
        if hashed {
            let expected = String::from_utf8_lossy(golden).trim().to_string();
            let got = sha256_hex(actual);
            if got != expected {
                problems.push(format!(
                    "{family}/{name}: sha256 {got}, golden {expected} ({} bytes; starts {:?})",
                    actual.len(),
                    String::from_utf8_lossy(&actual[..actual.len().min(200)])
                ));
            }
        } else if actual != golden {
            problems.push(format!(
                "{family}/{name} differs:\n{}",
                unified_diff(&format!("golden/{family}/{name}"), golden, actual)
            ));
        }
    }
    for name in outputs.keys() {
        if !goldens.contains_key(name) && !goldens.contains_key(&format!("{name}.sha256")) {
            problems.push(format!(
                "{family}/{name}: new output, not in the goldens:\n{}",
                String::from_utf8_lossy(&outputs[name][..outputs[name].len().min(2000)])
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden mismatch(es) in {family}:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// The first differing lines of `expected` and `actual` as one unified-diff hunk (3 lines of
/// context, at most 20 lines each side).
fn unified_diff(name: &str, expected: &[u8], actual: &[u8]) -> String {
    const CONTEXT: usize = 3;
    const MAX_LINES: usize = 20;
    let e_text = String::from_utf8_lossy(expected);
    let a_text = String::from_utf8_lossy(actual);
    let e: Vec<&str> = e_text.split_inclusive('\n').collect();
    let a: Vec<&str> = a_text.split_inclusive('\n').collect();
    let prefix = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let suffix = e[prefix..]
        .iter()
        .rev()
        .zip(a[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let start = prefix.saturating_sub(CONTEXT);
    let (e_end, a_end) = (e.len() - suffix, a.len() - suffix);
    let after = suffix.min(CONTEXT);
    let mut out = format!(
        "--- {name}\n+++ actual\n@@ -{},{} +{},{} @@\n",
        start + 1,
        e_end + after - start,
        start + 1,
        a_end + after - start
    );
    let show = |out: &mut String, mark: char, line: &str| {
        out.push(mark);
        out.push_str(line.strip_suffix('\n').unwrap_or(line));
        if !line.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file");
        }
        out.push('\n');
    };
    for line in &e[start..prefix] {
        show(&mut out, ' ', line);
    }
    for (mark, lines) in [('-', &e[prefix..e_end]), ('+', &a[prefix..a_end])] {
        for line in lines.iter().take(MAX_LINES) {
            show(&mut out, mark, line);
        }
        if lines.len() > MAX_LINES {
            out.push_str(&format!(
                "{mark}… {} more line(s)\n",
                lines.len() - MAX_LINES
            ));
        }
    }
    for line in &e[e_end..e_end + after] {
        show(&mut out, ' ', line);
    }
    out
}

// ---- the command families -----------------------------------------------------------------

#[test]
fn vad_outputs_match_the_goldens() {
    let mut s = Scratch::new();
    let files = samples();
    let json = s.record("format-json", &with(&["vad", "--format", "json"], &files));
    for format in ["rttm", "csv", "text"] {
        s.record(
            &format!("format-{format}"),
            &with(&["vad", "--format", format], &files),
        );
    }
    // One label track per run: one input each.
    for (stem, file) in STEMS.iter().zip(&files) {
        s.record(
            &format!("format-audacity-{stem}"),
            &["vad", "--format", "audacity", file],
        );
    }
    let stats = s.record("stats", &with(&["vad", "--stats"], &files));
    assert_eq!(stats, json, "--stats changes stdout");
    // Fresh, then resumed from the run directory: both print what a plain run prints.
    let fresh = s.record("run-dir-fresh", &with(&["vad", "--run-dir", "vrd"], &files));
    let resumed = s.record(
        "run-dir-resumed",
        &with(&["vad", "--run-dir", "vrd"], &files),
    );
    assert_eq!(fresh, json, "--run-dir changes stdout");
    assert_eq!(resumed, json, "a resumed --run-dir changes stdout");
    s.record_dir("vrd", "run-dir", &|text| strip_stem_hash(text, 16));
    s.check("vad");
}

#[test]
fn diarize_outputs_match_the_goldens() {
    let mut s = Scratch::new();
    let files = samples();
    for format in ["rttm", "json"] {
        for (suffix, speakers) in [("", &[][..]), ("-speakers2", &["--speakers", "2"][..])] {
            let name = format!("format-{format}{suffix}");
            let run_dir = format!("rd-{name}");
            let mut args = vec!["diarize", "--format", format, "--run-dir", &run_dir];
            args.extend_from_slice(speakers);
            if format == "rttm" && speakers.is_empty() {
                args.push("--stats");
            }
            s.record(&name, &with(&args, &files));
        }
    }
    // One label track per run; the second run per file resumes the first's run directory.
    for (stem, file) in STEMS.iter().zip(&files) {
        let run_dir = format!("rd-audacity-{stem}");
        for (suffix, speakers) in [("", &[][..]), ("-speakers2", &["--speakers", "2"][..])] {
            let mut args = vec!["diarize", "--format", "audacity", "--run-dir", &run_dir];
            args.extend_from_slice(speakers);
            args.push(file);
            s.record(&format!("format-audacity-{stem}{suffix}"), &args);
        }
    }
    s.check("diarize");
}

#[test]
fn embed_outputs_match_the_goldens() {
    let mut s = Scratch::new();
    let files = samples();
    s.record(
        "format-json",
        &with(&["embed", "--stats", "--run-dir", "rd-json"], &files),
    );
    s.record(
        "per-window-json",
        &with(&["embed", "--per-window", "--run-dir", "rd-pw"], &files),
    );
    s.record(
        "out-json",
        &with(
            &["embed", "--run-dir", "rd-oj", "--out", "out-json"],
            &files,
        ),
    );
    s.record(
        "out-npy",
        &with(
            &[
                "embed",
                "--format",
                "npy",
                "--run-dir",
                "rd-on",
                "--out",
                "out-npy",
            ],
            &files,
        ),
    );
    s.record(
        "per-window-out-npy",
        &with(
            &[
                "embed",
                "--per-window",
                "--format",
                "npy",
                "--run-dir",
                "rd-pwn",
                "--out",
                "out-npy-pw",
            ],
            &files,
        ),
    );
    for dir in ["out-json", "out-npy", "out-npy-pw"] {
        s.record_dir(dir, dir, &|text| strip_stem_hash(text, 16));
    }
    s.check("embed");
}

#[test]
fn run_outputs_match_the_goldens_by_stage_and_stem() {
    let mut s = Scratch::new();
    let files = samples();
    // README.md's pipeline.
    std::fs::write(
        s.path().join("p.toml"),
        "[[stage]]\nmodel = \"silero-vad\"\n\n[[stage]]\nname = \"embed\"\nmodel = \"speaker-embedder\"\n",
    )
    .unwrap();
    s.record(
        "run",
        &with(
            &["run", "--stats", "--pipeline", "p.toml", "--out", "OUT"],
            &files,
        ),
    );
    s.record_dir("OUT", "OUT", &|text| strip_stem_hash(text, 16));
    s.check("run");
}
