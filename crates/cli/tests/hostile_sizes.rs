//! Hostile sizes and parameters (issue #20, classes 4 and 8), as a user meets them: every case
//! runs the `masp` binary under `--budget 256MiB` while an observer outside it samples its
//! resident memory, and must end — refused or finished — within [`DEADLINE`] without
//! exceeding the budget, aborting or panicking, with one clear line and the right exit code.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use masp_testkit::hostile::len_field;

/// Each case must end within this (killed and failed otherwise). Generous for a debug build on
/// a loaded two-core machine: the refusals take milliseconds, the longest case that runs
/// (diarize at the smallest hop) about 25 s.
const DEADLINE: Duration = Duration::from_secs(120);

/// The budget every case runs under, and the most resident memory any may reach.
const BUDGET: &str = "256MiB";
const BUDGET_BYTES: u64 = 256 << 20;

/// How often the observer samples the child's VmRSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);

/// What one observed run did.
struct Observed {
    code: Option<i32>,
    /// Killed by a signal (an abort is SIGABRT).
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// The child's own peak: the highest VmHWM (peak resident set since its exec) sampled.
    peak_rss_bytes: u64,
    /// The kernel's ru_maxrss of the child: an upper bound that also catches a spike between
    /// samples, but starts from the test process's size at fork (Linux keeps it across exec).
    max_rss_bound_bytes: u64,
    elapsed: Duration,
}

impl Observed {
    fn describe(&self) -> String {
        format!(
            "exit {:?} signal {:?} after {:.2?}, peak RSS {:.1} MiB (ru_maxrss bound {:.1} MiB)\n\
             stdout: {}\nstderr: {}",
            self.code,
            self.signal,
            self.elapsed,
            self.peak_rss_bytes as f64 / f64::from(1 << 20),
            self.max_rss_bound_bytes as f64 / f64::from(1 << 20),
            self.stdout,
            self.stderr
        )
    }
}

/// The larger of VmRSS and VmHWM of `pid`, once it runs masp (before its exec, the fields are
/// the test process's).
fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    if exe.file_name()? != "masp" {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(field("VmRSS:")?.max(field("VmHWM:").unwrap_or(0)))
}

/// Run `masp args…` in `dir` with `envs`, observed from outside until it exits or
/// [`DEADLINE`] passes (then it is killed and the test fails).
// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn observe(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Observed {
    let mut command = Command::new(env!("CARGO_BIN_EXE_masp"));
    command
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("masp starts");
    let pid = child.id();
    // Drained on threads so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = r.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut peak = 0u64;
    let (status, max_rss_kib) = loop {
        if let Some(rss) = peak_rss_bytes(pid) {
            peak = peak.max(rss);
        }
        let mut status = 0i32;
        // SAFETY: rusage is plain data the kernel fills; pid is our own unreaped child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe {
            libc::wait4(
                pid as libc::pid_t,
                &raw mut status,
                libc::WNOHANG,
                &raw mut usage,
            )
        };
        if reaped == pid as libc::pid_t {
            break (status, usage.ru_maxrss as u64);
        }
        assert!(
            reaped == 0,
            "wait4 failed: {}",
            std::io::Error::last_os_error()
        );
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "masp {args:?} did not finish within {DEADLINE:?} (peak RSS {:.1} MiB): killed",
                peak as f64 / f64::from(1 << 20)
            );
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let elapsed = started.elapsed();
    Observed {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        peak_rss_bytes: peak,
        max_rss_bound_bytes: max_rss_kib * 1024,
        elapsed,
    }
}

/// Observe `args` (with `--budget 256MiB` added) and check what every case must hold: no
/// signal, no panic, under the budget, the `expected` exit code, and for a failure a stderr
/// line containing every one of `reasons`. Prints the figures for docs/BAD_INPUTS.md.
fn check(
    dir: &Path,
    case: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    expected: i32,
    reasons: &[&str],
) {
    let mut full: Vec<&str> = args.to_vec();
    // `masp merge` runs no model and has no budget flag; its memory is still observed.
    if args.first() != Some(&"merge") {
        full.extend(["--budget", BUDGET]);
    }
    let seen = observe(dir, &full, envs);
    let text = seen.describe();
    assert_eq!(seen.signal, None, "{case}: killed by a signal\n{text}");
    assert!(
        !seen.stderr.contains("panicked"),
        "{case}: panicked\n{text}"
    );
    assert!(
        !seen.stderr.contains("memory allocation of"),
        "{case}: an allocation failed\n{text}"
    );
    assert!(
        seen.peak_rss_bytes <= BUDGET_BYTES && seen.max_rss_bound_bytes <= BUDGET_BYTES,
        "{case}: over the {BUDGET} budget\n{text}"
    );
    assert_eq!(seen.code, Some(expected), "{case}\n{text}");
    if !reasons.is_empty() {
        // stderr, or stdout for `masp plan`, whose report is its output.
        assert!(
            seen.stderr
                .lines()
                .chain(seen.stdout.lines())
                .any(|l| reasons.iter().all(|r| l.contains(r))),
            "{case}: no line says {reasons:?}\n{text}"
        );
    }
    println!(
        "{case}: exit {expected}, {:.2?}, peak RSS sampled {:.1} MiB, ru_maxrss bound {:.1} MiB",
        seen.elapsed,
        seen.peak_rss_bytes as f64 / f64::from(1 << 20),
        seen.max_rss_bound_bytes as f64 / f64::from(1 << 20)
    );
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples/two_voices.wav")
}

/// A directory holding `a.wav` (speech).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(sample(), dir.path().join("a.wav")).unwrap();
    dir
}

/// An ONNX file of about 2 MB: one node of a million empty attributes (two bytes each), which
/// decodes into gigabytes of structs.
fn empty_attributes_model() -> Vec<u8> {
    let mut node = Vec::with_capacity(2_000_000);
    for _ in 0..1_000_000 {
        len_field(&mut node, 5, &[]);
    }
    let mut graph = Vec::new();
    len_field(&mut graph, 1, &node);
    let mut model = vec![0x08, 0x08];
    len_field(&mut model, 7, &graph);
    len_field(&mut model, 8, &[0x10, 0x11]);
    model
}

#[test]
fn class_4_sizes_from_flags_are_bounded_where_they_are_parsed() {
    let dir = workdir();
    let d = dir.path();
    for (case, args, reasons) in [
        (
            "--hop-s 0.001",
            vec!["--hop-s", "0.001"],
            vec!["hop_s", "at least 0.05"],
        ),
        (
            "--hop-s 1e-9",
            vec!["--hop-s", "1e-9"],
            vec!["hop_s", "at least 0.05"],
        ),
        ("--hop-s 0", vec!["--hop-s", "0"], vec!["hop_s"]),
        ("--hop-s -1", vec!["--hop-s=-1"], vec!["hop_s"]),
        ("--hop-s inf", vec!["--hop-s", "inf"], vec!["hop_s"]),
        (
            "--window-s 1e9",
            vec!["--window-s", "1e9"],
            vec!["window_s", "at most 60"],
        ),
        (
            "--window-s nan",
            vec!["--window-s", "NaN"],
            vec!["window_s"],
        ),
        (
            "--window-s 2 --hop-s 3",
            vec!["--window-s", "2", "--hop-s", "3"],
            vec!["hop_s", "at most the window"],
        ),
        (
            "--threads 20000",
            vec!["--threads", "20000"],
            vec!["--threads 20000", "limit of 64"],
        ),
        (
            "--threads 0",
            vec!["--threads", "0"],
            vec!["--threads", "at least 1"],
        ),
    ] {
        let mut full = vec!["diarize", "--run-dir", "run"];
        full.extend(args);
        full.push("a.wav");
        check(d, case, &full, &[], 1, &reasons);
        assert!(
            !d.join("run").exists(),
            "{case}: work was done before refusing"
        );
    }
    check(
        d,
        "MASP_THREADS=100000",
        &["vad", "a.wav"],
        &[("MASP_THREADS", "100000")],
        1,
        &["MASP_THREADS", "limit of 64"],
    );
    std::fs::write(d.join("masp.toml"), "[defaults]\nthreads = 65\n").unwrap();
    check(
        d,
        "masp.toml threads = 65",
        &["vad", "a.wav"],
        &[],
        1,
        &["defaults.threads", "limit of 64"],
    );
    std::fs::remove_file(d.join("masp.toml")).unwrap();
    // At the limits, it runs: 64 threads, and the smallest hop (hundreds of windows, their
    // clustering reserved against the budget), stay inside the budget and finish.
    check(
        d,
        "--threads 64",
        &["vad", "--threads", "64", "a.wav"],
        &[],
        0,
        &[],
    );
    check(
        d,
        "--hop-s 0.05 (the minimum)",
        &["diarize", "--run-dir", "run", "--hop-s", "0.05", "a.wav"],
        &[],
        0,
        &[],
    );
}

#[test]
fn class_4_sizes_from_manifests_and_models_are_bounded_before_allocating() {
    let dir = workdir();
    let d = dir.path();
    std::fs::write(d.join("pipeline.toml"), "[[stage]]\nmodel = \"g\"\n").unwrap();
    std::fs::write(d.join("g.onnx"), empty_attributes_model()).unwrap();
    let generic = |extra: &str| {
        std::fs::write(
            d.join("masp.toml"),
            format!(
                "[[model]]\nname = \"g\"\nkind = \"generic\"\npath = \"g.onnx\"\n{extra}\
                 [model.generic]\ninput = \"x\"\n"
            ),
        )
        .unwrap();
    };
    let windowed = |window: &str| {
        std::fs::write(
            d.join("masp.toml"),
            format!(
                "[[model]]\nname = \"g\"\nkind = \"generic\"\npath = \"g.onnx\"\n\
                 [model.generic]\ninput = \"x\"\n{window}"
            ),
        )
        .unwrap();
    };
    let plan = ["plan", "--pipeline", "pipeline.toml", "a.wav"];
    for (case, window, reasons) in [
        (
            "window_ms = 4294967295",
            "window_ms = 4294967295\n",
            vec!["window_ms", "over the limit"],
        ),
        (
            "window_ms = 300000",
            "window_ms = 300000\n",
            vec!["window_ms", "over the limit"],
        ),
        (
            "hop_ms = 4294967295",
            "window_ms = 100\nhop_ms = 4294967295\n",
            vec!["hop_ms", "over the limit"],
        ),
        ("window_ms = 0", "window_ms = 0\n", vec!["must be positive"]),
        ("window_ms = -1", "window_ms = -1\n", vec!["masp.toml"]),
    ] {
        windowed(window);
        check(d, case, &plan, &[], 1, &reasons);
    }
    for (case, extra, reasons) in [
        (
            "sample_rate_hz = 4294967295",
            "sample_rate_hz = 4294967295\n",
            vec!["sample_rate_hz"],
        ),
        (
            "sample_rate_hz = 0",
            "sample_rate_hz = 0\n",
            vec!["sample_rate_hz"],
        ),
        (
            "memory = 99999999999999999999GiB",
            "memory = \"99999999999999999999GiB\"\n",
            vec!["memory", "too large"],
        ),
        ("memory = -1GiB", "memory = \"-1GiB\"\n", vec!["memory"]),
    ] {
        generic(extra);
        check(d, case, &plan, &[], 1, &reasons);
    }
    // The model itself: 2 MB of empty attributes is refused before it is decoded, by every
    // command that reads it.
    windowed("window_ms = 100\n");
    let refused = ["g.onnx", "decoding its graph structure", "over the limit"];
    // `plan` reports a task it cannot plan as a failed input (exit 2), as it does any model
    // that cannot be read.
    check(d, "2 MB of empty attributes: plan", &plan, &[], 2, &refused);
    check(
        d,
        "2 MB of empty attributes: run",
        &[
            "run",
            "--pipeline",
            "pipeline.toml",
            "--out",
            "out",
            "a.wav",
        ],
        &[],
        2,
        &refused,
    );
    let verify = observe(d, &["models", "verify", "--budget", BUDGET], &[]);
    assert!(
        verify.peak_rss_bytes <= BUDGET_BYTES && verify.max_rss_bound_bytes <= BUDGET_BYTES,
        "{}",
        verify.describe()
    );
    assert_eq!(verify.code, Some(2), "{}", verify.describe());
    assert!(
        verify
            .stdout
            .lines()
            .any(|l| l.starts_with("FAILED") && l.contains("decoding its graph structure")),
        "{}",
        verify.describe()
    );
}

/// A shard run directory holding `shard.json` with `manifest` as its content.
fn shard_dir(root: &Path, name: &str, manifest: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("shard.json"), manifest).unwrap();
    dir
}

fn shard_manifest(config: &str, inputs_sha: &str, index: u64, count: u64, total: u64) -> String {
    format!(
        "{{\"command\":\"vad\",\"config_sha256\":{config:?},\"shard\":{{\"index\":{index},\
         \"count\":{count}}},\"inputs_sha256\":{inputs_sha:?},\"n_inputs_total\":{total},\
         \"inputs\":[{{\"path\":\"a.wav\",\"status\":\"done\"}}]}}"
    )
}

#[test]
fn class_4_shard_manifests_are_checked_where_they_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hex = "ab".repeat(32);
    let multibyte = "é".repeat(32); // 64 bytes, but not 64 hex digits
    for (case, manifest, reasons) in [
        (
            "a shard count of 2^40",
            shard_manifest(&hex, &hex, 0, 1 << 40, 1),
            vec!["over the limit"],
        ),
        (
            "a shard count of 2^64-1",
            shard_manifest(&hex, &hex, 0, u64::MAX, 1),
            vec!["over the limit"],
        ),
        (
            "a shard count of 0",
            shard_manifest(&hex, &hex, 0, 0, 1),
            vec!["at least 1"],
        ),
        (
            "index past the count",
            shard_manifest(&hex, &hex, 5, 2, 1),
            vec!["does not exist"],
        ),
        (
            "a multibyte config_sha256",
            shard_manifest(&multibyte, &hex, 0, 1, 1),
            vec!["config_sha256", "not a sha256"],
        ),
        (
            "an uppercase config_sha256",
            shard_manifest(&hex.to_uppercase(), &hex, 0, 1, 1),
            vec!["config_sha256"],
        ),
        (
            "a short inputs_sha256",
            shard_manifest(&hex, "abc", 0, 1, 1),
            vec!["inputs_sha256"],
        ),
        (
            "more inputs than the job",
            shard_manifest(&hex, &hex, 0, 1, 0),
            vec!["n_inputs_total"],
        ),
        (
            "a count past u64",
            shard_manifest(&hex, &hex, 0, 1, 1).replace("\"count\":1", "\"count\":1e400"),
            vec!["shard.json"],
        ),
    ] {
        let a = shard_dir(d, "a", &manifest);
        let b = shard_dir(d, "b", &manifest.replace("\"index\":0", "\"index\":1"));
        check(
            d,
            case,
            &[
                "merge",
                "--out",
                "merged",
                a.to_str().unwrap(),
                b.to_str().unwrap(),
            ],
            &[],
            1,
            &reasons,
        );
    }
    // Two shards of different configurations whose hashes are well formed: named, not sliced.
    let a = shard_dir(d, "a", &shard_manifest(&hex, &hex, 0, 2, 2));
    let b = shard_dir(d, "b", &shard_manifest(&"cd".repeat(32), &hex, 1, 2, 2));
    check(
        d,
        "shards of two configurations",
        &[
            "merge",
            "--out",
            "merged",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        &[],
        1,
        &["differ in configuration", "abababababab", "cdcdcdcdcdcd"],
    );
}

#[test]
fn class_8_bad_parameters_are_usage_errors_before_any_work() {
    let dir = workdir();
    let d = dir.path();
    for (case, args, reasons) in [
        (
            "--smoothing-s nan",
            vec!["--smoothing-s", "nan"],
            vec!["smoothing_s", "NaN"],
        ),
        (
            "--smoothing-s -1",
            vec!["--smoothing-s=-1"],
            vec!["smoothing_s"],
        ),
        (
            "--smoothing-s inf",
            vec!["--smoothing-s", "inf"],
            vec!["smoothing_s"],
        ),
        (
            "--smoothing-s 1e9",
            vec!["--smoothing-s", "1e9"],
            vec!["smoothing_s", "3600"],
        ),
        (
            "--threshold nan",
            vec!["--threshold", "nan"],
            vec!["threshold"],
        ),
        ("--threshold 3", vec!["--threshold", "3"], vec!["threshold"]),
        ("--speakers 0", vec!["--speakers", "0"], vec!["speakers"]),
    ] {
        let mut full = vec!["diarize", "--run-dir", "run"];
        full.extend(args);
        full.push("a.wav");
        check(d, case, &full, &[], 1, &reasons);
        assert!(
            !d.join("run").exists(),
            "{case}: work was done before refusing"
        );
    }
    for (case, args, reasons) in [
        (
            "--budget 99999999999999999999GiB",
            vec!["--budget", "99999999999999999999GiB"],
            vec!["too large"],
        ),
        (
            "--budget 99999999999999999999",
            vec!["--budget", "99999999999999999999"],
            vec!["too large"],
        ),
        (
            "--budget 1.5",
            vec!["--budget", "1.5"],
            vec!["whole number"],
        ),
        ("--budget lots", vec!["--budget", "lots"], vec!["--budget"]),
    ] {
        // `check` appends a valid budget, and clap keeps the last; these go alone.
        let mut full = vec!["vad"];
        full.extend(args);
        full.push("a.wav");
        let seen = observe(d, &full, &[]);
        assert_eq!(seen.code, Some(1), "{case}\n{}", seen.describe());
        assert!(
            reasons.iter().all(|r| seen.stderr.contains(r)),
            "{case}: {reasons:?}\n{}",
            seen.describe()
        );
        assert!(
            !seen.stderr.contains("whole number") || case.contains("1.5"),
            "{case}"
        );
    }
    // The baseline the refusals compare with: the same command on good input.
    check(
        d,
        "vad on 25 s of speech (baseline)",
        &["vad", "a.wav"],
        &[],
        0,
        &[],
    );
    let seen = observe(
        d,
        &["vad", "a.wav"],
        &[("MASP_BUDGET", "99999999999999999999")],
    );
    assert_eq!(seen.code, Some(1), "{}", seen.describe());
    assert!(
        seen.stderr.contains("MASP_BUDGET") && seen.stderr.contains("too large"),
        "{}",
        seen.describe()
    );
    // `masp models` numbers: refused before a model is read or loaded.
    for (case, args, reasons) in [
        (
            "quantize --percentile nan",
            vec![
                "models",
                "quantize",
                "silero-vad-sequence",
                "--calibrate",
                "a.wav",
                "--percentile",
                "nan",
                "--out",
                "q.onnx",
            ],
            vec!["percentile", "NaN"],
        ),
        (
            "quantize --percentile 0",
            vec![
                "models",
                "quantize",
                "silero-vad-sequence",
                "--calibrate",
                "a.wav",
                "--percentile",
                "0",
                "--out",
                "q.onnx",
            ],
            vec!["percentile", "above 0"],
        ),
        (
            "quantize --percentile 101",
            vec![
                "models",
                "quantize",
                "silero-vad-sequence",
                "--calibrate",
                "a.wav",
                "--percentile",
                "101",
                "--out",
                "q.onnx",
            ],
            vec!["percentile", "at most 100"],
        ),
        (
            "calibrate --cycles 0",
            vec!["models", "calibrate", "--cycles", "0"],
            vec!["--cycles 0", "1 to 100"],
        ),
        (
            "calibrate --cycles 10^18",
            vec!["models", "calibrate", "--cycles", "1000000000000000000"],
            vec!["--cycles", "1 to 100"],
        ),
    ] {
        check(d, case, &args, &[], 1, &reasons);
        assert!(!d.join("q.onnx").exists(), "{case}");
    }
    // Pipeline stage parameters: refused with the file, before any work.
    for (case, stage, reasons) in [
        (
            "stage threshold = nan",
            "model = \"silero-vad\"\nthreshold = nan\n",
            vec!["pipeline.toml", "threshold"],
        ),
        (
            "stage threshold = 2",
            "model = \"silero-vad\"\nthreshold = 2.0\n",
            vec!["pipeline.toml", "threshold"],
        ),
        (
            "stage min_speech_ms = -1",
            "model = \"silero-vad\"\nmin_speech_ms = -1\n",
            vec!["pipeline.toml"],
        ),
        (
            "stage min_speech_ms = 2^32",
            "model = \"silero-vad\"\nmin_speech_ms = 4294967296\n",
            vec!["pipeline.toml"],
        ),
        (
            "a VAD threshold on an embedder",
            "model = \"speaker-embedder\"\nthreshold = 0.5\n",
            vec!["apply to VAD models"],
        ),
    ] {
        std::fs::write(d.join("pipeline.toml"), format!("[[stage]]\n{stage}")).unwrap();
        check(
            d,
            case,
            &[
                "run",
                "--pipeline",
                "pipeline.toml",
                "--out",
                "out",
                "a.wav",
            ],
            &[],
            1,
            &reasons,
        );
        assert!(
            !d.join("out").exists(),
            "{case}: work was done before refusing"
        );
    }
}

#[test]
fn class_8_a_missing_model_names_the_command_that_exists() {
    let dir = workdir();
    let home = tempfile::tempdir().unwrap();
    // The runtime from the real cache, the models from an empty one.
    let ort = masp_model_registry::assets::ONNXRUNTIME
        .locate()
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask setup`)"));
    let seen = observe(
        dir.path(),
        &["vad", "a.wav"],
        &[
            ("MASP_HOME", home.path().to_str().unwrap()),
            ("ORT_DYLIB_PATH", ort.to_str().unwrap()),
        ],
    );
    assert_eq!(seen.code, Some(1), "{}", seen.describe());
    assert!(
        seen.stderr.contains("not found at") && seen.stderr.contains("cargo xtask setup"),
        "{}",
        seen.describe()
    );
    assert!(!seen.stderr.contains("masp setup"), "{}", seen.describe());
}
