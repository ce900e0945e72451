//! Issue #20 classes 3 and 6 as a user meets them: special files given as inputs, pipeline,
//! config or journal fail at once with one line naming the file (the batch goes on); links in a
//! run directory never send the cleanup outside it; two masp on one `--out` do not interleave.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use masp_testkit::hostile::mkfifo;

/// Longest a masp command here may take before the test calls it a hang and kills it: each
/// finishes in seconds when nothing blocks (a debug build, a few small files).
const HANG_S: u64 = 180;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/samples/two_voices.wav")
}

fn masp_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_masp"));
    cmd.current_dir(dir);
    cmd
}

/// Run `cmd` to its end, failing the test (and killing it) when it takes over [`HANG_S`].
fn run_or_hang(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_or_hang(child)
}

fn wait_or_hang(mut child: Child) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(HANG_S) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "masp hung for {HANG_S} s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory with a VAD-only pipeline and `n` copies of the sample.
fn workdir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "[[stage]]\nmodel = \"silero-vad\"\n",
    )
    .unwrap();
    for i in 0..n {
        std::fs::copy(sample(), dir.path().join(format!("f{i}.wav"))).unwrap();
    }
    dir
}

#[test]
fn special_input_files_fail_alone_at_once_and_the_batch_goes_on() {
    let dir = workdir(1);
    let p = dir.path();
    mkfifo(&p.join("pipe.wav"));
    std::os::unix::fs::symlink(p.join("pipe.wav"), p.join("link-to-pipe.wav")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(p.join("sock.wav")).unwrap();
    std::fs::create_dir(p.join("folder.wav")).unwrap();
    let special = [
        ("pipe.wav", "FIFO"),
        ("link-to-pipe.wav", "FIFO"),
        ("sock.wav", "socket"),
        ("/dev/zero", "character device"),
        ("folder.wav", "directory"),
    ];
    for command in [
        &["vad", "--format", "csv"][..],
        &["run", "--pipeline", "pipeline.toml", "--out", "out"],
    ] {
        let mut cmd = masp_in(p);
        cmd.args(command);
        cmd.args(special.iter().map(|(f, _)| f));
        cmd.arg("f0.wav");
        let out = run_or_hang(cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        for (file, kind) in special {
            // " pipe.wav:" is not inside " link-to-pipe.wav:".
            let named = format!(" {file}:");
            let lines: Vec<&str> = err.lines().filter(|l| l.contains(&named)).collect();
            assert_eq!(lines.len(), 1, "{command:?} {file}: {err}");
            assert!(
                lines[0].contains(&format!("not a regular file (a {kind})")),
                "{command:?} {file}: {}",
                lines[0]
            );
        }
    }
    // The good file was processed by both commands.
    let results = masp_testkit::results::results_of(&p.join("out/silero-vad"), "f0", "json");
    assert_eq!(results.len(), 1, "{results:?}");
}

#[test]
fn a_special_pipeline_config_or_journal_is_a_usage_error_not_a_hang() {
    let dir = workdir(1);
    let p = dir.path();
    mkfifo(&p.join("pipe.toml"));
    std::fs::create_dir(p.join("rep")).unwrap();
    mkfifo(&p.join("rep/report.json"));
    // A FIFO pipeline file, /dev/zero as one, a FIFO config file, a FIFO report.json.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "--pipeline", "pipe.toml", "--out", "o1", "f0.wav"],
            "pipe.toml",
        ),
        (
            vec!["run", "--pipeline", "/dev/zero", "--out", "o2", "f0.wav"],
            "/dev/zero",
        ),
        (vec!["vad", "--config", "pipe.toml", "f0.wav"], "pipe.toml"),
        (
            vec!["plan", "--pipeline", "pipe.toml", "f0.wav"],
            "pipe.toml",
        ),
        (vec!["report", "rep"], "rep/report.json"),
    ];
    for (args, named) in cases {
        let mut cmd = masp_in(p);
        cmd.args(&args);
        let out = run_or_hang(cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(named) && err.contains("not a regular file"),
            "{args:?}: {err}"
        );
    }
    // A run directory whose journal is a FIFO, or a link to a file outside.
    std::fs::create_dir(p.join("fifo-out")).unwrap();
    mkfifo(&p.join("fifo-out/journal.jsonl"));
    std::fs::create_dir(p.join("link-out")).unwrap();
    std::fs::write(p.join("precious.txt"), b"keep me\n").unwrap();
    std::os::unix::fs::symlink(p.join("precious.txt"), p.join("link-out/journal.jsonl")).unwrap();
    for (out_dir, kind) in [("fifo-out", "FIFO"), ("link-out", "symlink")] {
        let mut cmd = masp_in(p);
        cmd.args([
            "run",
            "--pipeline",
            "pipeline.toml",
            "--out",
            out_dir,
            "f0.wav",
        ]);
        let out = run_or_hang(cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{out_dir}: {err}");
        assert!(
            err.contains("journal.jsonl")
                && err.contains(&format!("not a regular file (a {kind})")),
            "{out_dir}: {err}"
        );
    }
    assert_eq!(std::fs::read(p.join("precious.txt")).unwrap(), b"keep me\n");
}

#[test]
fn links_in_a_run_directory_neither_loop_nor_delete_outside_it() {
    let dir = workdir(2);
    let p = dir.path();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("x.masp-tmp");
    std::fs::write(&victim, b"someone else's\n").unwrap();
    let out_dir = p.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::symlink(".", out_dir.join("a")).unwrap();
    std::os::unix::fs::symlink(".", out_dir.join("b")).unwrap();
    std::os::unix::fs::symlink(outside.path(), out_dir.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join("y.masp-tmp")).unwrap();
    let mut cmd = masp_in(p);
    cmd.args([
        "run",
        "--pipeline",
        "pipeline.toml",
        "--out",
        "out",
        "f0.wav",
        "f1.wav",
    ]);
    let out = run_or_hang(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"someone else's\n");
    assert!(out_dir.join("y.masp-tmp").symlink_metadata().is_ok());
}

/// The pid in `out`'s lock file once a masp holds it.
fn wait_for_holder(out_dir: &Path, child: &mut Child) -> u32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(out_dir.join(masp_run::lock::LOCK_FILE))
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first masp ended before locking"
        );
        assert!(
            started.elapsed() < Duration::from_secs(HANG_S),
            "no lock taken"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: sending a signal to our own child process, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn two_masp_on_one_out_the_second_fails_fast_naming_the_first() {
    let dir = workdir(12);
    let p = dir.path();
    let files: Vec<String> = (0..12).map(|i| format!("f{i}.wav")).collect();
    let run = |out: &str| {
        let mut cmd = masp_in(p);
        cmd.args(["run", "--pipeline", "pipeline.toml", "--out", out])
            .args(&files);
        cmd
    };
    let mut first = run("out")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let holder = wait_for_holder(&p.join("out"), &mut first);
    assert_eq!(holder, first.id());
    // Stopped while holding the lock, so the second surely meets it.
    signal(&first, libc::SIGSTOP);
    let started = Instant::now();
    let second = run_or_hang(run("out"));
    let waited = started.elapsed();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    let expected = format!(
        "run directory out is in use by another masp (pid {holder}); wait for it to finish or \
         use another --out"
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Another --out is not blocked meanwhile.
    let other = run_or_hang(run("out2"));
    assert_eq!(other.status.code(), Some(0), "{}", stderr(&other));
    signal(&first, libc::SIGCONT);
    let first = wait_or_hang(first);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // The first finished every file; now the second runs and resumes all of them.
    assert!(!p.join("out").join(masp_run::lock::LOCK_FILE).exists());
    let again = run_or_hang(run("out"));
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(err.contains("12 task(s) already done"), "{err}");
    eprintln!("the refused run took {:.0} ms", waited.as_secs_f64() * 1e3);
}
