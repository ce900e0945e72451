//! The test suites, the demo, and `cargo xtask test` (what CI runs).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup;

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn ensure_setup() -> Result<()> {
    if !setup::looks_complete() {
        println!("assets missing: running setup first");
        setup::run(false)?;
    }
    Ok(())
}

/// One step of a suite: a named command whose exit status is the verdict.
struct Step {
    name: &'static str,
    command: Command,
    /// A build directory only this step uses, removed after it when disk is short (see
    /// [`FREE_DISK_VAR`]).
    scratch: Option<PathBuf>,
}

fn step(name: &'static str, args: &[&str]) -> Step {
    let mut command = cargo();
    command.args(args).current_dir(workspace_root());
    Step {
        name,
        command,
        scratch: None,
    }
}

/// Set to `1` (CI does) to remove each step's private build directory once the step is over:
/// package verification and the downstream projects each build our crates and their
/// dependencies again, beside the workspace's debug and release builds. A developer's machine
/// keeps them, so a rerun is incremental.
const FREE_DISK_VAR: &str = "MASP_TEST_FREE_DISK";

/// The workspace's target directory (`CARGO_TARGET_DIR`, else `target/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Free space on the file system holding `dir` (or its nearest existing ancestor), in bytes.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = dir.ancestors().find(|d| d.exists())?;
    let path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// One line for the log: what is free where the build writes, so that a step failing with
/// "No space left on device" shows how close the previous ones came.
fn disk_line() -> String {
    let target = target_dir();
    match free_bytes(&target) {
        Some(b) => format!(
            "disk: {:.1} GiB free under {}",
            b as f64 / f64::from(1u32 << 30),
            target.display()
        ),
        None => format!("disk: free space under {} unknown", target.display()),
    }
}

/// Tests counted from the `test result: ok. N passed; M failed; K ignored; …` lines a step's
/// test binaries print (each binary and the doc tests print one).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestCounts {
    /// Adds the counts of `line` if it is a libtest summary line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        let count = |what: &str| {
            rest.split(';')
                .find_map(|part| {
                    part.trim()
                        .strip_suffix(what)?
                        .trim()
                        .rsplit(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        self.passed += count("passed");
        self.failed += count("failed");
        self.ignored += count("ignored");
    }

    fn is_empty(self) -> bool {
        self == Self::default()
    }
}

/// Runs `command` with its stdout passed through line by line (stderr untouched), counting
/// the tests it reports. Returns whether it succeeded.
fn run_counting(command: &mut Command, counts: &mut TestCounts) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut child) = command.stdout(std::process::Stdio::piped()).spawn() else {
        return false;
    };
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            counts.add_line(&line);
            let _ = writeln!(out, "{line}");
        }
    }
    child.wait().map(|st| st.success()).unwrap_or(false)
}

/// Run steps in order (all of them, even after a failure, so one run shows every problem) and
/// end with the `N passed, N failed` line and each step's test counts.
fn run_steps(suite: &str, steps: Vec<Step>) -> Result<()> {
    let mut failed = Vec::new();
    let total = steps.len();
    let free_disk = std::env::var(FREE_DISK_VAR).is_ok_and(|v| v == "1");
    println!("{}", disk_line());
    let started = std::time::Instant::now();
    let mut tested: Vec<(&str, TestCounts)> = Vec::new();
    for mut s in steps {
        println!("\n==> {suite}: {}", s.name);
        let step_started = std::time::Instant::now();
        let mut counts = TestCounts::default();
        let ok = run_counting(&mut s.command, &mut counts);
        // CI has a time limit: each step's share shows where the time goes.
        println!(
            "{suite}: {} {} in {:.0} s",
            s.name,
            if ok { "passed" } else { "FAILED" },
            step_started.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(s.name);
        }
        if !counts.is_empty() {
            tested.push((s.name, counts));
        }
        if let Some(scratch) = s.scratch.as_ref().filter(|_| free_disk) {
            // A failure to remove it only costs disk, which the next line reports.
            let _ = std::fs::remove_dir_all(scratch);
        }
        println!("{}", disk_line());
    }
    if !tested.is_empty() {
        println!("\n{suite}: tests per step (each test runs in one step only)");
        let mut sum = TestCounts::default();
        for (name, c) in &tested {
            println!(
                "  {:>5} passed {:>3} failed {:>3} ignored  {name}",
                c.passed, c.failed, c.ignored
            );
            sum.passed += c.passed;
            sum.failed += c.failed;
            sum.ignored += c.ignored;
        }
        println!(
            "  {:>5} passed {:>3} failed {:>3} ignored  in all",
            sum.passed, sum.failed, sum.ignored
        );
    }
    println!(
        "\n{suite}: {} passed, {} failed, {:.1} min",
        total - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{suite}: failed steps: {}", failed.join(", "))
    }
}

pub fn demo() -> Result<()> {
    ensure_setup()?;
    let sample = workspace_root().join("assets/samples/two_voices.wav");
    println!("masp vad {}", sample.display());
    let status = cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "masp-cli",
            "--",
            "vad",
            "--format",
        ])
        .args(["text", "--stats"])
        .arg(&sample)
        .current_dir(workspace_root())
        .status()
        .context("running masp")?;
    if !status.success() {
        bail!("masp vad failed");
    }
    Ok(())
}

pub fn test_all() -> Result<()> {
    ensure_setup()?;
    let mut check_layers = Command::new(std::env::current_exe()?);
    check_layers
        .arg("check-layers")
        .current_dir(workspace_root());
    let mut steps = vec![
        step("format", &["fmt", "--all", "--check"]),
        Step {
            name: "layers",
            command: check_layers,
            scratch: None,
        },
        step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // `--all-targets` leaves out test targets marked `test = false`: the suites'.
        step(
            "clippy (suite test targets)",
            &[
                "clippy",
                "--quiet",
                "-p",
                "masp-tests",
                "--test",
                "memory",
                "--test",
                "suites",
                "--test",
                "scenarios",
                "--test",
                "profile",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step(
            "clippy (masp-models' integration tests)",
            &[
                "clippy",
                "--quiet",
                "-p",
                "masp-models",
                "--test",
                "it",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step(
            "unit, integration and doc tests",
            &["test", "--workspace", "--quiet"],
        ),
    ];
    let mut docs = cargo();
    docs.args(["doc", "--workspace", "--no-deps", "--quiet"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(workspace_root());
    steps.push(Step {
        name: "API docs (cargo doc, warnings denied)",
        command: docs,
        scratch: None,
    });
    let mut browser = Command::new(std::env::current_exe()?);
    browser.arg("test-report").current_dir(workspace_root());
    steps.push(Step {
        name: "HTML report in headless Chromium",
        command: browser,
        scratch: None,
    });
    steps.push(package_step());
    steps.push(downstream_step());
    steps.push(fuzz_check_step());
    steps.extend(sequential_steps());
    steps.extend(profile_steps());
    steps.extend(memory_steps());
    run_steps("test", steps)
}

/// `cargo package` of every crate we would publish, each verified by building it from its
/// packaged sources alone: no file outside its directory, every path dependency versioned.
///
/// CI runs on a clean clone, where cargo's own "uncommitted changes" check stays on. A
/// developer's dirty tree is packaged as it is (`--allow-dirty`), and the step says so.
fn package_step() -> Step {
    let mut s = step(
        "package every publishable crate (cargo package, verified)",
        &[
            "package",
            "--workspace",
            "--exclude",
            "xtask",
            "--exclude",
            "masp-tests",
            "--quiet",
        ],
    );
    forget_unpacked_packages();
    s.scratch = Some(forget_verified_builds(&mut s.command));
    if let Some(changes) = uncommitted_changes() {
        println!(
            "package: the work tree has uncommitted changes ({changes} paths in `git status \
             --porcelain`), so they are packaged with --allow-dirty"
        );
        s.command.arg("--allow-dirty");
    }
    s
}

/// The crates `cargo package --workspace` packages (verification builds each against the
/// others' packages): every crate of the layer table, the one list of our crates.
fn packaged() -> impl Iterator<Item = &'static str> {
    crate::layers::LAYERS.iter().map(|(name, _)| *name)
}

/// Verification builds in a target directory of its own (`<target>/package-verify`), from which
/// our crates' artifacts are removed first: cargo takes a registry crate of an unchanged version
/// as unchanged, so it would link the packages being verified against the previous run's
/// builds of their dependencies. Third-party dependencies stay built.
fn forget_verified_builds(package: &mut Command) -> PathBuf {
    let target = target_dir().join("package-verify");
    let mut clean = cargo();
    clean
        .args(["clean", "--quiet", "--target-dir"])
        .arg(&target)
        .current_dir(workspace_root());
    for name in packaged() {
        clean.args(["-p", name]);
    }
    // A failed clean leaves stale builds, which the verification then reports as it finds them.
    let _ = clean.status();
    package.env("CARGO_TARGET_DIR", &target);
    target
}

/// Removes cargo's unpacked copies of our packages from earlier `cargo package` runs.
///
/// Verification unpacks each dependency from the temporary local registry into
/// `$CARGO_HOME/registry/src/-<hash>/<name>-<version>` and reuses that directory on the next run
/// when the version is unchanged, so a crate would be verified against its dependencies' old
/// sources (a clean CI machine never has them). Only local registries' directories start with
/// `-`, and only ours hold `masp-*`; cargo unpacks them again from the fresh packages.
fn forget_unpacked_packages() {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = cargo_home.map(|h| h.join("registry/src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for unpacked in std::fs::read_dir(registry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if unpacked.file_name().to_string_lossy().starts_with("masp-") {
                let _ = std::fs::remove_dir_all(unpacked.path());
            }
        }
    }
}

/// How many paths `git status --porcelain` lists, when it lists any. `None` for a clean tree,
/// and when git cannot tell (no git, not a checkout): then cargo does not check either.
fn uncommitted_changes() -> Option<usize> {
    let out = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    (n > 0).then_some(n)
}

/// The projects under `downstream/`, outside the workspace: each built, tested and run against
/// our crates as a user's project would be (`downstream/check.sh`; one shared target dir).
fn downstream_step() -> Step {
    let mut command = Command::new("bash");
    command
        .arg(workspace_root().join("downstream/check.sh"))
        .current_dir(workspace_root());
    Step {
        name: "downstream projects (downstream/check.sh)",
        command,
        // check.sh's shared directory; vad-embed builds in the workspace's own.
        scratch: Some(
            std::env::var_os("DOWNSTREAM_TARGET_DIR")
                .filter(|d| !d.is_empty())
                .map_or_else(|| target_dir().join("downstream"), PathBuf::from),
        ),
    }
}

/// The fuzz targets (`fuzz/`, a workspace of its own that only `cargo fuzz` builds) type-check
/// against today's crates: a target that stopped compiling would otherwise be found only at the
/// next fuzzing campaign.
fn fuzz_check_step() -> Step {
    let scratch = target_dir().join("fuzz-check");
    let mut s = step(
        "fuzz targets compile (cargo check, fuzz/)",
        &[
            "check",
            "--quiet",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--bins",
        ],
    );
    s.command.env("CARGO_TARGET_DIR", &scratch);
    s.scratch = Some(scratch);
    s
}

/// The first of these browsers on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Installs Debian's Chromium when this process may (root, with apt-get), as `cargo xtask
/// setup` fetches the models: the README's `cargo xtask test` must pass on a fresh machine
/// without an unstated step. Elsewhere it fails with the exact command to run.
fn install_chromium() -> Result<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let apt = std::path::Path::new("/usr/bin/apt-get").is_file();
    if !(root && apt) {
        bail!(
            "no Chromium on PATH, needed to check the HTML report in a browser: install it \
             (Debian: `sudo apt-get install chromium`) and rerun"
        );
    }
    println!("report: no Chromium on PATH; installing Debian's chromium with apt-get");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "chromium"],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("`apt-get {}` failed ({status})", args.join(" "));
        }
    }
    chromium().context("apt-get installed chromium, but no Chromium is on PATH")
}

/// `cargo xtask test-report`: a real run's report, rendered by `masp report`, opened in
/// headless Chromium. The page must load without errors and hold the timeline and the model
/// table; a screenshot goes to `target/masp-reports/report.png` (the one in docs/ came from
/// here).
pub fn test_report() -> Result<()> {
    ensure_setup()?;
    let browser = match chromium() {
        Some(browser) => browser,
        None => install_chromium()?,
    };
    let root = workspace_root();
    let out = root.join("target/masp-reports/html");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let status = cargo()
        .args(["build", "--quiet", "-p", "masp-cli"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building masp failed");
    }
    let masp = root.join("target/debug/masp");
    let report = out.join("report");
    let run = Command::new(&masp)
        .arg("diarize")
        .arg("--report")
        .arg(&report)
        .arg("--run-dir")
        .arg(out.join("run"))
        .arg(root.join("assets/samples/two_voices.wav"))
        .output()?;
    if !run.status.success() {
        bail!(
            "masp diarize failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let status = Command::new(&masp).arg("report").arg(&report).status()?;
    if !status.success() {
        bail!("masp report failed");
    }
    let page = report.join("report.html");
    let url = format!("file://{}", page.display());
    let headless = |extra: &[&str]| {
        let mut c = Command::new(&browser);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args(extra)
        .arg(&url);
        c
    };
    let dom = headless(&["--dump-dom"]).output()?;
    let html = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    if !dom.status.success() {
        bail!("Chromium could not load {url}: {log}");
    }
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("net::ERR"))
        .collect();
    if !console_errors.is_empty() {
        bail!("the page logged errors:\n{}", console_errors.join("\n"));
    }
    for needle in [
        "<svg",
        "id=\"timeline\"",
        "id=\"models\"",
        "silero-vad",
        "speaker-embedder",
        "leak verdict",
    ] {
        if !html.contains(needle) {
            bail!("the page Chromium rendered has no {needle:?}");
        }
    }
    let shot = root.join("target/masp-reports/report.png");
    let _ = std::fs::remove_file(&shot);
    let status = headless(&[
        "--window-size=1200,1400",
        &format!("--screenshot={}", shot.display()),
    ])
    .stderr(std::process::Stdio::null())
    .status()?;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    if !status.success() || size < 10_000 {
        bail!(
            "no screenshot from Chromium ({size} bytes at {})",
            shot.display()
        );
    }
    println!(
        "report: {} loads in Chromium without errors; screenshot {} ({} KiB)",
        page.display(),
        shot.display(),
        size / 1024
    );
    Ok(())
}

/// One of `masp-tests`' suite targets, optimised, one test at a time: memory figures must not
/// mix. With `nocapture`, each test's own table is printed.
fn release_suite(name: &'static str, target: &str, nocapture: bool) -> Step {
    let mut args = vec![
        "test",
        "--release",
        "--quiet",
        "-p",
        "masp-tests",
        "--test",
        target,
        "--",
        "--test-threads=1",
    ];
    if nocapture {
        args.push("--nocapture");
    }
    step(name, &args)
}

/// The model and orchestration suites, one test at a time: memory figures must not mix.
fn sequential_steps() -> Vec<Step> {
    vec![
        // Each suite prints its table, ending with `N passed, N failed`.
        release_suite(
            "model and orchestration suites (MinimalTestFramework, sequential)",
            "suites",
            true,
        ),
        step(
            "orchestration suite with masp's models (sequential)",
            &[
                "test",
                "--quiet",
                "-p",
                "masp-models",
                "--test",
                "it",
                "--",
                "--test-threads=1",
            ],
        ),
        step(
            "model scenarios (sequential)",
            &[
                "test",
                "--quiet",
                "-p",
                "masp-tests",
                "--test",
                "scenarios",
                "--",
                "--test-threads=1",
            ],
        ),
    ]
}

/// The profiler's verdicts on real runs (`tests/profile`), each test in a fresh process.
fn profile_steps() -> Vec<Step> {
    vec![release_suite(
        "profiler verdicts on real runs (release, one at a time)",
        "profile",
        true,
    )]
}

/// GiB-sized models under tight budgets, optimised build, one test at a time; and the `masp`
/// binary's watchdog against a model call past its budget, observed from outside (the debug
/// build the unit tests made: the memory is ONNX Runtime's).
fn memory_steps() -> Vec<Step> {
    vec![
        release_suite("memory suite (release, one at a time)", "memory", false),
        step(
            "the hard limit in the masp binary: watchdog and loads (one at a time)",
            &[
                "test",
                "--quiet",
                "-p",
                "masp-cli",
                "--test",
                "hard_limit",
                "--",
                "--test-threads=1",
                "--nocapture",
            ],
        ),
    ]
}

pub fn test_sequential() -> Result<()> {
    ensure_setup()?;
    run_steps("test-sequential", sequential_steps())
}

pub fn test_profile() -> Result<()> {
    ensure_setup()?;
    let reports = workspace_root().join("target/masp-reports");
    std::fs::create_dir_all(&reports)?;
    let mut steps = profile_steps();
    for s in &mut steps {
        s.command.env("MASP_TEST_REPORTS", &reports);
    }
    let result = run_steps("test-profile", steps);
    println!("\nreports (report.txt, report.json, timeline.svg, suite.txt, suite.json):");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&reports)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        println!("  {}", dir.display());
    }
    result
}

pub fn test_package() -> Result<()> {
    run_steps("test-package", vec![package_step()])
}

pub fn test_downstream() -> Result<()> {
    ensure_setup()?;
    run_steps("test-downstream", vec![downstream_step()])
}

pub fn test_memory() -> Result<()> {
    ensure_setup()?;
    run_steps("test-memory", memory_steps())
}

/// The kill-and-resume harness at full length: 20 SIGKILLs at random points of a batch, each
/// followed by a resume, ending byte-identical to a clean run. (`cargo test` runs 5.)
pub fn test_faults() -> Result<()> {
    ensure_setup()?;
    let mut s = step(
        "kill-and-resume, 20 kills",
        &[
            "test",
            "--quiet",
            "-p",
            "masp-cli",
            "--test",
            "resume",
            "--",
            "--nocapture",
        ],
    );
    s.command.env("MASP_KILLS", "20");
    run_steps("test-faults", vec![s])
}

#[cfg(test)]
mod tests {
    use super::TestCounts;

    #[test]
    fn test_counts_are_read_from_libtest_summary_lines() {
        let mut c = TestCounts::default();
        c.add_line(
            "test result: ok. 27 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; \
             finished in 20.15s",
        );
        c.add_line(
            "test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_line("  child | test result: ok. 1 passed; 0 failed; 0 ignored");
        c.add_line("running 6 tests");
        assert_eq!(
            c,
            TestCounts {
                passed: 32,
                failed: 1,
                ignored: 2
            }
        );
    }
}
