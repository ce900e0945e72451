//! Process isolation with real ONNX Runtime and real `masp worker` processes: the cap, `kill -9`,
//! hangs, garbage, crash retries, 200 load/unload cycles, and identical outputs in both modes;
//! and hostile "workers" (issue #20, class 5): huge and lying frames, endless stderr, progress
//! that does not advance, paths outside the run directory, and workers outliving their
//! orchestrator.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use masp_audio::AudioInfo;
use masp_budget::{Budget, BudgetConfig, Bytes, probe};
use masp_model_registry::manifest::{Isolation, Registry};
use masp_models::vad::VadParams;
use masp_orchestrator::task::{
    EMBEDDING_DIM, ResultFiles, TaskOutput, TaskParams, VadOutcome, WrittenTensor,
};
use masp_orchestrator::worker::protocol::{
    FailureClass, FromWorker, LoadReport, MAX_FRAME, PROTOCOL_VERSION,
};
use masp_orchestrator::worker::{WorkerConfig, WorkerFailure};
use masp_orchestrator::{AudioTask, Error, OrchestratorConfig, RunEvent, SequentialOrchestrator};
use masp_testkit::fixtures::{self, AudioSpec};
use masp_testkit::synthetic::{self, Layout, WeightsModel};

/// Tests here measure RSS and count processes: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker_config() -> WorkerConfig {
    WorkerConfig::new(env!("CARGO_BIN_EXE_masp"))
}

fn isolated(worker: WorkerConfig) -> OrchestratorConfig {
    OrchestratorConfig {
        isolation: Isolation::Process,
        worker,
        record_events: true,
        ..OrchestratorConfig::default()
    }
}

fn orchestrator(registry: Registry, config: OrchestratorConfig) -> SequentialOrchestrator {
    SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(8))),
        registry,
        masp_models::registry(),
    )
    .with_config(config)
    .build()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn vad_task(model: &str, input: &Path) -> AudioTask {
    AudioTask {
        label: format!("vad {}", input.display()),
        model: model.into(),
        input: input.to_path_buf(),
        params: TaskParams::Vad(VadParams::default()),
    }
}

fn speech() -> PathBuf {
    fixtures::speech_sample().unwrap()
}

/// Audio long enough that a task is still running when the test interferes with it.
fn long_audio(dir: &Path) -> PathBuf {
    fixtures::write_audio(dir, "long.wav", &AudioSpec::noise(1800.0, 7)).unwrap()
}

/// A process that is gone (reaped), not merely dying.
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Worker pids, from the orchestrator's `Loaded` events as they happen.
fn pid_sink(orch: SequentialOrchestrator) -> (SequentialOrchestrator, Arc<Mutex<Vec<u32>>>) {
    let pids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&pids);
    let orch = orch.with_event_sink(Box::new(move |e| {
        if let RunEvent::Loaded {
            worker_pid: Some(pid),
            ..
        } = e
        {
            seen.lock().unwrap().push(*pid);
        }
    }));
    (orch, pids)
}

/// Whether process `pid` has `file` open (a worker opens its input only to run a task).
fn has_open(pid: u32, file: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == file))
    })
}

/// Signal the `n`th worker once it is running a task on `input`: no guess at how long
/// anything takes, whatever the machine's speed.
fn signal_nth_worker(
    pids: &Arc<Mutex<Vec<u32>>>,
    n: usize,
    signal: i32,
    input: &Path,
) -> std::thread::JoinHandle<u32> {
    let pids = Arc::clone(pids);
    let input = std::fs::canonicalize(input).unwrap();
    std::thread::spawn(move || {
        let pid = loop {
            if let Some(&pid) = pids.lock().unwrap().get(n) {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // Until the task reads its input (or the worker is gone, which the test reports).
        while !has_open(pid, &input) && !gone(pid) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: kill(2) on a pid this test's orchestrator started and has not reaped yet.
        unsafe { libc::kill(pid as i32, signal) };
        pid
    })
}

#[test]
fn the_same_tasks_give_identical_outputs_in_both_modes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        speech(),
        fixtures::samples_dir()
            .unwrap()
            .join("noisy_mix_44k_stereo.flac"),
    ];
    let mut results = Vec::new();
    for isolation in [Isolation::InProcess, Isolation::Process] {
        let mut orch = orchestrator(
            Registry::builtin(),
            OrchestratorConfig {
                isolation,
                worker: worker_config(),
                ..OrchestratorConfig::default()
            },
        );
        let mut outputs = Vec::new();
        for input in &inputs {
            let vad = orch
                .process_task(&vad_task("silero-vad-sequence", input))
                .unwrap();
            let TaskOutput::Segments(vad) = vad else {
                panic!("not segments")
            };
            let ranges: Vec<(f64, f64)> = vad
                .segments
                .iter()
                .map(|s| (s.start_s(), s.end_s()))
                .collect();
            let embed = orch
                .process_task(&AudioTask {
                    label: "embed".into(),
                    model: "speaker-embedder".into(),
                    input: input.clone(),
                    params: TaskParams::Embed {
                        output: Some(
                            ResultFiles::new(dir.path().join(isolation.as_str()), "input").unwrap(),
                        ),
                        windows: Some(ranges.clone()),
                    },
                })
                .unwrap();
            let TaskOutput::RangeEmbeddings {
                embeddings,
                written,
            } = embed
            else {
                panic!("not range embeddings")
            };
            let bits: Vec<Vec<u32>> = embeddings
                .iter()
                .map(|e| e.embedding.iter().map(|x| x.to_bits()).collect())
                .collect();
            let npy = std::fs::read(written.unwrap().path).unwrap();
            outputs.push((vad.n_samples, ranges, bits, npy));
        }
        orch.unload_all();
        assert_eq!(orch.budget().reserved(), Bytes::ZERO);
        results.push(outputs);
    }
    assert!(!results[0][0].1.is_empty(), "the sample has speech");
    assert_eq!(
        results[0], results[1],
        "isolated outputs differ from in-process ones"
    );
}

#[test]
fn a_model_over_its_cap_is_killed_by_the_cap_and_the_batch_goes_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 512 MiB of weights, declared as needing 16 MiB: the worker's cap follows the declaration.
    let generated = synthetic::weights_model(
        &synthetic::cache_dir(),
        WeightsModel {
            weight_bytes: 512 << 20,
            layout: Layout::Embedded,
            name: "liar-512m".into(),
        },
    )
    .unwrap();
    let file = dir.path().join("liar.onnx");
    if std::fs::hard_link(&generated, &file).is_err() {
        std::fs::copy(&generated, &file).unwrap();
    }
    let manifest = dir.path().join("masp.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nname = \"liar\"\nkind = \"generic\"\npath = \"liar.onnx\"\n\
         memory = \"16MiB\"\n[model.generic]\ninput = \"x\"\nwindow_ms = 64\n",
    )
    .unwrap();
    let mut registry = Registry::builtin();
    registry.add_manifest(&manifest).unwrap();
    let mut orch = orchestrator(registry, isolated(worker_config()));
    let input = speech();

    let err = orch
        .process_task(&AudioTask {
            label: "liar".into(),
            model: "liar".into(),
            input: input.clone(),
            params: TaskParams::Generic {
                output: ResultFiles::new(dir.path().join("out"), "input").unwrap(),
            },
        })
        .unwrap_err();
    let message = err.to_string();
    let Error::Worker { model, failure } = &err else {
        panic!("not a worker failure: {message}");
    };
    assert_eq!(model, "liar");
    let WorkerFailure::CapExceeded { cap, .. } = failure else {
        panic!("not the cap: {message}");
    };
    assert!(*cap < Bytes::from_mib(512), "{message}");
    assert!(message.contains("memory cap"), "{message}");
    // No retry after a cap kill by default, the ledger is restored, nothing is resident.
    let stats = orch.stats().get("liar").cloned().unwrap_or_default();
    assert_eq!(stats.degradations, 0, "{message}");
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
    assert!(orch.resident_models().is_empty());

    // The next task runs.
    let out = orch.process_task(&vad_task("silero-vad", &input)).unwrap();
    assert!(matches!(out, TaskOutput::Segments(_)));
    orch.unload_all();
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
    println!("{message}");
}

#[test]
fn kill_9_of_a_worker_mid_task_is_survived_and_reported() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let long = long_audio(dir.path());
    let mut config = worker_config();
    config.retries_after_crash = 0;
    let (mut orch, pids) = pid_sink(orchestrator(Registry::builtin(), isolated(config)));
    let killer = signal_nth_worker(&pids, 0, libc::SIGKILL, &long);
    let err = orch
        .process_task(&vad_task("silero-vad", &long))
        .unwrap_err();
    let killed = killer.join().unwrap();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Worker {
                failure: WorkerFailure::Crashed { .. },
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("SIGKILL") && message.contains("silero-vad"),
        "{message}"
    );
    assert!(gone(killed), "the killed worker was reaped");
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
    assert!(orch.resident_models().is_empty());
    // The orchestrator is up: the next task runs in a new worker.
    orch.process_task(&vad_task("silero-vad", &speech()))
        .unwrap();
    assert_eq!(pids.lock().unwrap().len(), 2);
    assert_eq!(orch.failures().len(), 1);
    println!("{message}");
}

#[test]
fn a_crashed_task_is_retried_once_in_a_new_worker_by_default() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let long = long_audio(dir.path());
    let (mut orch, pids) = pid_sink(orchestrator(Registry::builtin(), isolated(worker_config())));
    let killer = signal_nth_worker(&pids, 0, libc::SIGKILL, &long);
    let out = orch.process_task(&vad_task("silero-vad", &long)).unwrap();
    killer.join().unwrap();
    let TaskOutput::Segments(outcome) = out else {
        panic!("not segments")
    };
    assert_eq!(outcome.n_samples, 1800 * 16_000);
    assert_eq!(
        pids.lock().unwrap().len(),
        2,
        "a second worker ran the retry"
    );
    let retried = orch.events().iter().any(
        |e| matches!(e, RunEvent::Degraded { step, .. } if step == "retry after worker crash"),
    );
    assert!(retried);
    assert!(orch.failures().is_empty());
}

#[test]
fn a_hung_worker_is_killed_at_the_deadline() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let long = long_audio(dir.path());
    let mut config = worker_config();
    // Hundreds of times what a chunk takes; a stopped worker never answers however long.
    config.idle_timeout = Duration::from_secs(5);
    config.retries_after_crash = 0;
    let (mut orch, pids) = pid_sink(orchestrator(Registry::builtin(), isolated(config)));
    // SIGSTOP: the worker stays alive and silent, the way a deadlocked one would.
    let stopper = signal_nth_worker(&pids, 0, libc::SIGSTOP, &long);
    let err = orch
        .process_task(&vad_task("silero-vad", &long))
        .unwrap_err();
    let stopped = stopper.join().unwrap();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Worker {
                failure: WorkerFailure::Hung { .. },
                ..
            }
        ),
        "{message}"
    );
    assert!(gone(stopped), "the hung worker was killed and reaped");
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
    orch.process_task(&vad_task("silero-vad", &speech()))
        .unwrap();
    println!("{message}");
}

/// A "worker" that is a shell script: garbage on stdout, or an early exit.
fn fake_worker(dir: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn garbage_exits_and_missing_programs_are_typed_failures() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            // Says its pid, writes garbage, then would sit for a long time if it were let.
            fake_worker(
                dir.path(),
                "garbage",
                "echo $$ > \"$0.pid\"; printf 'HTTP/1.1 200 OK\\r\\n\\r\\n'; exec sleep 3600",
            ),
            "broke the protocol",
        ),
        (
            fake_worker(dir.path(), "exits", "echo 'cannot go on' >&2; exit 3"),
            "exited with code 3",
        ),
        (dir.path().join("no-such-program"), "could not be started"),
    ];
    for (program, expected) in cases {
        let mut config = WorkerConfig::new(&program);
        config.retries_after_crash = 0;
        let mut orch = orchestrator(Registry::builtin(), isolated(config));
        let err = orch
            .process_task(&vad_task("silero-vad", &speech()))
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Worker { .. }), "{message}");
        assert!(
            message.contains(expected),
            "{}: {message}",
            program.display()
        );
        // The worker was ended, not waited for: its process is gone.
        let pid_file = PathBuf::from(format!("{}.pid", program.display()));
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            assert!(gone(pid.trim().parse().unwrap()), "{message}");
        }
        assert_eq!(orch.budget().reserved(), Bytes::ZERO);
        assert!(orch.resident_models().is_empty());
    }
}

#[test]
fn bad_input_in_a_worker_fails_that_file_only() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not_audio.wav");
    std::fs::write(&bad, b"this is not audio at all").unwrap();
    let in_process = orchestrator(Registry::builtin(), OrchestratorConfig::default())
        .process_task(&vad_task("silero-vad", &bad))
        .unwrap_err()
        .to_string();
    let (mut orch, pids) = pid_sink(orchestrator(Registry::builtin(), isolated(worker_config())));
    let err = orch
        .process_task(&vad_task("silero-vad", &bad))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Remote { .. }), "{message}");
    assert_eq!(message, in_process, "the same message as in-process");
    // Same worker, next file.
    orch.process_task(&vad_task("silero-vad", &speech()))
        .unwrap();
    assert_eq!(
        pids.lock().unwrap().len(),
        1,
        "the worker survived a bad file"
    );
}

#[test]
fn two_hundred_isolated_load_unload_cycles_keep_the_orchestrator_within_1_mib() {
    let _serial = serial();
    let (mut orch, pids_sink) =
        pid_sink(orchestrator(Registry::builtin(), isolated(worker_config())));
    // The first cycle creates what lives for the whole run (the calibration entry, the stats
    // map, thread-local buffers); RSS is measured from after it.
    orch.load_model("silero-vad").unwrap();
    orch.unload_model("silero-vad");
    let before_first = probe::process_rss().unwrap();
    for _ in 0..200 {
        orch.load_model("silero-vad").unwrap();
        orch.unload_model("silero-vad");
    }
    let after = probe::process_rss().unwrap();
    let pids: Vec<u32> = pids_sink.lock().unwrap().clone();
    assert_eq!(pids.len(), 201);
    assert!(pids.iter().all(|&p| gone(p)), "every worker was reaped");
    let returned: Vec<Bytes> = orch
        .stats()
        .get("silero-vad")
        .map(|s| vec![s.freed_total, s.worker_returned_total])
        .unwrap_or_default();
    let drift = after.get().abs_diff(before_first.get());
    println!(
        "orchestrator RSS {before_first} → {after} over 200 isolated cycles (|Δ| {}), freed in-process / returned by workers {:?}",
        Bytes::new(drift),
        returned
    );
    assert!(
        drift <= 1 << 20,
        "orchestrator RSS moved {} over 200 cycles ({before_first} → {after})",
        Bytes::new(drift)
    );
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
}

#[test]
fn masp_run_with_isolation_process_reports_the_workers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "isolation = \"process\"\n[[stage]]\nmodel = \"silero-vad\"\n\
         [[stage]]\nmodel = \"speaker-embedder\"\n",
    )
    .unwrap();
    let run = |extra: &[&str], out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_masp"))
            .arg("run")
            .arg("--pipeline")
            .arg(&pipeline)
            .arg("--out")
            .arg(out)
            .args(extra)
            .arg(speech())
            .output()
            .unwrap()
    };
    let report = dir.path().join("report");
    let isolated_out = dir.path().join("isolated");
    let o = run(&["--report", report.to_str().unwrap()], &isolated_out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    let workers = json["peak"]["workers"].as_u64().unwrap_or(0);
    assert!(workers > 10 << 20, "report: workers peak {workers}");
    let text = std::fs::read_to_string(report.join("report.txt")).unwrap();
    assert!(text.contains("worker processes peak"), "{text}");

    // The flag overrides the file: in-process gives the same files.
    let in_process_out = dir.path().join("in-process");
    let o = run(&["--isolation", "in-process"], &in_process_out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for stage in ["silero-vad", "speaker-embedder"] {
        let mut names: Vec<_> = std::fs::read_dir(isolated_out.join(stage))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(!names.is_empty());
        for name in names {
            // Results name their own files: the run directories differ, nothing else may.
            let read = |out: &Path| {
                let bytes = std::fs::read(out.join(stage).join(&name)).unwrap();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                text.replace(out.to_str().unwrap(), "OUT").into_bytes()
            };
            assert!(
                read(&isolated_out) == read(&in_process_out),
                "{stage}/{name:?} differs between modes"
            );
        }
    }

    // A bad pipeline setting is a one-line usage error.
    std::fs::write(
        &pipeline,
        "isolation = \"vm\"\n[[stage]]\nmodel = \"silero-vad\"\n",
    )
    .unwrap();
    let o = run(&[], &dir.path().join("bad"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown isolation"));
}

// ---------------------------------------------------------------------------------------------
// Class 5 of issue #20: a worker is not trusted. The fakes below are shell scripts that speak
// just enough of the protocol (a greeting with their pid, a load report) and then misbehave;
// the frames they send are encoded by the protocol's own writer.

/// Generous deadline for anything that must end: only to detect a hang, never a speed test.
const HANG_DEADLINE: Duration = Duration::from_secs(60);

/// Bound on the orchestrator's peak RSS (VmHWM, measured from outside) while a worker attacks
/// it: 256 MiB, the smallest budget masp is tested with. The attacks below would each take it
/// past 512 MiB unbounded; a frame costs at most 2 × 64 MiB (`MAX_FRAME`) in flight.
const ORCHESTRATOR_RSS_BOUND: Bytes = Bytes::from_mib(256);

/// A shell function `hello` writing the greeting frame with the shell's own pid (as `$$` is
/// the worker's pid, the orchestrator's check holds).
fn hello_function() -> String {
    let mut frame = Vec::new();
    FromWorker::Hello { pid: 0 }.write(&mut frame).unwrap();
    let head: String = frame[..6].iter().map(|b| format!("\\{b:03o}")).collect();
    format!(
        "hello() {{ p=$$; printf '{head}'; printf \"$(printf '\\\\%03o\\\\%03o\\\\%03o\\\\%03o' \
         $((p & 255)) $((p >> 8 & 255)) $((p >> 16 & 255)) $((p >> 24 & 255)))\"; }}"
    )
}

/// Frames written by the protocol's encoder into `dir/name`, for a fake to `cat`.
fn frames(dir: &Path, name: &str, messages: &[FromWorker]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    for m in messages {
        m.write(&mut bytes).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

fn loaded() -> FromWorker {
    FromWorker::Loaded(LoadReport {
        load_ms: 1.0,
        rss_before: Bytes::from_mib(10),
        peak: Bytes::from_mib(20),
        rss_after: Bytes::from_mib(20),
    })
}

/// A fake worker that greets, reports a load, then runs `then`; its pid goes to `<path>.pid`.
fn hostile_worker(dir: &Path, name: &str, then: &str) -> PathBuf {
    let loaded = frames(dir, &format!("{name}.loaded"), &[loaded()]);
    fake_worker(
        dir,
        name,
        &format!(
            "{}\necho $$ > \"$0.pid\"\nhello\ncat '{}'\n{then}",
            hello_function(),
            loaded.display()
        ),
    )
}

/// Whether `pid` has ended: gone, or a zombie nobody has reaped yet (an orphan's reaper may be
/// slow or absent in a container).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Wait (up to [`HANG_DEADLINE`]) for `pid` to end.
fn ends_within_deadline(pid: u32) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < HANG_DEADLINE {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The pid a fake wrote to `<program>.<suffix>`, once it has.
fn pid_written(program: &Path, suffix: &str) -> u32 {
    let file = PathBuf::from(format!("{}.{suffix}", program.display()));
    let started = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            started.elapsed() < HANG_DEADLINE,
            "{} never appeared",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One isolated task against a fake worker: its error, after checking the worker was ended
/// and the ledger restored.
fn fail_against(program: &Path, config: impl FnOnce(&mut WorkerConfig), task: &AudioTask) -> Error {
    let mut worker = WorkerConfig::new(program);
    worker.retries_after_crash = 0;
    config(&mut worker);
    let mut orch = orchestrator(Registry::builtin(), isolated(worker));
    // A watchdog: if the orchestrator never gives up on the worker (the bug these tests look
    // for), kill the worker after the deadline so the test fails instead of hanging.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watched = program.to_path_buf();
    let watchdog = std::thread::spawn(move || {
        let fired = finished.recv_timeout(HANG_DEADLINE).is_err();
        if fired {
            let pid = pid_written(&watched, "pid");
            // SAFETY: kill(2) on the fake worker's group, which this test started.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        fired
    });
    let err = orch.process_task(task).unwrap_err();
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "the orchestrator hung on its worker: {err}"
    );
    let pid = pid_written(program, "pid");
    assert!(
        ends_within_deadline(pid),
        "worker {pid} outlived its failure: {err}"
    );
    assert_eq!(orch.budget().reserved(), Bytes::ZERO);
    assert!(orch.resident_models().is_empty());
    err
}

fn protocol_reason(err: &Error) -> String {
    match err {
        Error::Worker {
            failure: WorkerFailure::Protocol { reason },
            ..
        } => reason.clone(),
        other => panic!("not a protocol error: {other}"),
    }
}

#[test]
fn huge_and_lying_frames_are_protocol_errors_without_allocation() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let header = |len: u32, tag: u8| {
        let mut f = len.to_le_bytes().to_vec();
        f.extend_from_slice(&[PROTOCOL_VERSION, tag]);
        f
    };
    const TAG_DONE: u8 = 67;
    // A `Done` of tensors whose count is `count` followed by `entries` of the smallest form.
    let tensors = |count: u32, entries: u32| {
        let mut body = vec![1u8];
        body.extend_from_slice(&count.to_le_bytes());
        for _ in 0..entries {
            body.extend_from_slice(&0u32.to_le_bytes()); // output name ""
            body.extend_from_slice(&1u32.to_le_bytes()); // path "x"
            body.push(b'x');
            body.extend_from_slice(&0u32.to_le_bytes()); // no dimensions
        }
        body.extend_from_slice(&0u64.to_le_bytes()); // working peak
        let mut f = header(body.len() as u32 + 2, TAG_DONE);
        f.extend_from_slice(&body);
        f
    };
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        // A 4 GiB frame announced, nothing sent: refused on the length alone.
        (
            "four-gib",
            header(u32::MAX, TAG_DONE),
            "frame length 4294967295".into(),
        ),
        (
            "over-the-limit",
            header(MAX_FRAME as u32 + 1, TAG_DONE),
            format!("frame length {}", MAX_FRAME + 1),
        ),
        // Counts that claim more than the frame holds.
        (
            "lying-count",
            tensors(u32::MAX, 1),
            "items cannot fit".into(),
        ),
        // Many tiny entries that would decode to 8x the frame.
        (
            "amplifying",
            tensors(100_000, 100_000),
            "at most 1024 allowed".into(),
        ),
        // Trailing bytes after a message.
        (
            "trailing",
            {
                let mut f = tensors(0, 0);
                f[0] += 1;
                f.push(0);
                f
            },
            "1 bytes left over".into(),
        ),
    ];
    for (name, frame, expected) in cases {
        let bin = dir.path().join(format!("{name}.bin"));
        std::fs::write(&bin, frame).unwrap();
        // Stays alive after the frame: the orchestrator must end it.
        let program = hostile_worker(
            dir.path(),
            name,
            &format!("cat '{}'; exec sleep 3600", bin.display()),
        );
        let err = fail_against(&program, |_| {}, &vad_task("silero-vad", &speech()));
        let reason = protocol_reason(&err);
        assert!(reason.contains(&expected), "{name}: {err}");
        assert!(err.to_string().contains("silero-vad"), "{name}: {err}");
    }
    // 60 MiB announced, 10 bytes sent, then silence: the orchestrator waits only the idle
    // deadline for the rest, holding the bytes that came (not 60 MiB).
    let bin = dir.path().join("lying-length.bin");
    let mut frame = header(60 << 20, TAG_DONE);
    frame.extend_from_slice(&[0; 10]);
    std::fs::write(&bin, frame).unwrap();
    let program = hostile_worker(
        dir.path(),
        "lying-length",
        &format!("cat '{}'; exec sleep 3600", bin.display()),
    );
    let err = fail_against(
        &program,
        |c| c.idle_timeout = Duration::from_secs(2),
        &vad_task("silero-vad", &speech()),
    );
    assert!(
        matches!(
            &err,
            Error::Worker {
                failure: WorkerFailure::Hung { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn progress_that_does_not_advance_is_killed_at_the_idle_deadline() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let progress = |samples_done: u64| FromWorker::Progress {
        samples_done,
        rss: Bytes::from_mib(20),
    };
    let cases = [
        // The same position over and over.
        ("repeats", vec![progress(16_000)]),
        // Back and forth, never past its best.
        (
            "backwards",
            vec![progress(32_000), progress(0), progress(16_000)],
        ),
        // Zero forever.
        ("zero", vec![progress(0)]),
    ];
    for (name, messages) in cases {
        let bin = frames(dir.path(), &format!("{name}.progress"), &messages);
        let program = hostile_worker(
            dir.path(),
            name,
            &format!("while :; do cat '{}'; sleep 0.05; done", bin.display()),
        );
        let err = fail_against(
            &program,
            |c| c.idle_timeout = Duration::from_secs(2),
            &vad_task("silero-vad", &speech()),
        );
        let message = err.to_string();
        let Error::Worker {
            failure: WorkerFailure::Stalled { samples_done, .. },
            ..
        } = &err
        else {
            panic!("{name}: not a stall: {message}");
        };
        let best = messages
            .iter()
            .map(|m| match m {
                FromWorker::Progress { samples_done, .. } => *samples_done,
                _ => 0,
            })
            .max()
            .unwrap();
        assert_eq!(*samples_done, best, "{name}: {message}");
        assert!(
            message.contains("silero-vad: worker made no progress for 2.0 s"),
            "{name}: {message}"
        );
    }
}

#[test]
fn paths_a_worker_reports_outside_its_result_files_are_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let files = ResultFiles::new(&out, "input-1a2b").unwrap();
    let embed_task = AudioTask {
        label: "embed".into(),
        model: "speaker-embedder".into(),
        input: speech(),
        params: TaskParams::Embed {
            output: Some(files.clone()),
            windows: None,
        },
    };
    let embeddings = |path: PathBuf| FromWorker::Done {
        output: TaskOutput::Embeddings {
            utterance: Box::new([0.0; EMBEDDING_DIM]),
            n_windows: 1,
            windows: Some(WrittenTensor {
                output: "embedding".into(),
                path,
                shape: vec![1, EMBEDDING_DIM],
            }),
        },
        working_peak: Bytes::ZERO,
    };
    let outside = dir.path().join("elsewhere.npy");
    let cases: Vec<(&str, PathBuf)> = vec![
        ("absolute", PathBuf::from("/etc/passwd")),
        ("outside", outside),
        ("dotdot", out.join("..").join("input-1a2b.embeddings.npy")),
        ("subdir", out.join("sub").join("input-1a2b.embeddings.npy")),
        ("relative", PathBuf::from("input-1a2b.embeddings.npy")),
        ("another-name", out.join("other-1a2b.embeddings.npy")),
        ("hidden-suffix", out.join("input-1a2b..npy")),
    ];
    for (name, path) in cases {
        let bin = frames(
            dir.path(),
            &format!("{name}.done"),
            &[embeddings(path.clone())],
        );
        let program = hostile_worker(
            dir.path(),
            name,
            &format!("cat '{}'; exec sleep 3600", bin.display()),
        );
        let err = fail_against(&program, |_| {}, &embed_task);
        let reason = protocol_reason(&err);
        assert!(
            reason.contains(&path.display().to_string()) && reason.contains("not one of"),
            "{name}: {err}"
        );
        assert!(
            err.to_string().contains("speaker-embedder"),
            "{name}: {err}"
        );
    }
    // The task's own file is accepted from the same kind of worker: the check is not a refusal
    // of everything.
    let bin = frames(
        dir.path(),
        "own.done",
        &[embeddings(files.file("embeddings.npy"))],
    );
    let program = hostile_worker(
        dir.path(),
        "own",
        &format!("cat '{}'; exec sleep 3600", bin.display()),
    );
    let mut worker = WorkerConfig::new(&program);
    worker.exit_timeout = Duration::from_millis(100);
    let mut orch = orchestrator(Registry::builtin(), isolated(worker));
    let output = orch.process_task(&embed_task).unwrap();
    assert!(matches!(output, TaskOutput::Embeddings { .. }));
    orch.unload_all();
    assert!(ends_within_deadline(pid_written(&program, "pid")));

    // A VAD result for another input than the one given.
    let mut other = speech();
    other.set_file_name("someone-else.wav");
    let bin = frames(
        dir.path(),
        "segments.done",
        &[FromWorker::Done {
            output: TaskOutput::Segments(VadOutcome {
                info: AudioInfo {
                    path: other.clone(),
                    codec: "pcm_s16le".into(),
                    source_sample_rate_hz: 16_000,
                    n_channels: 1,
                    n_source_frames: None,
                },
                n_samples: 0,
                segments: Vec::new(),
            }),
            working_peak: Bytes::ZERO,
        }],
    );
    let program = hostile_worker(
        dir.path(),
        "segments",
        &format!("cat '{}'; exec sleep 3600", bin.display()),
    );
    let err = fail_against(&program, |_| {}, &vad_task("silero-vad", &speech()));
    assert!(
        protocol_reason(&err).contains(&other.display().to_string()),
        "{err}"
    );
}

/// `masp run --isolation process` over `inputs` with `program` as the worker; returns its exit
/// status, stderr and its peak RSS (VmHWM) read from outside while it runs.
fn masp_run_measured(
    dir: &Path,
    program: &Path,
    inputs: &[PathBuf],
) -> (Option<i32>, String, Bytes) {
    let pipeline = dir.join("vad.toml");
    std::fs::write(&pipeline, "[[stage]]\nmodel = \"silero-vad\"\n").unwrap();
    let stderr_file = dir.join("masp.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_masp"))
        .args(["run", "--isolation", "process", "--pipeline"])
        .arg(&pipeline)
        .arg("--out")
        .arg(dir.join("out"))
        .args(inputs)
        .env("MASP_WORKER_PROGRAM", program)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .unwrap();
    let mut peak = Bytes::ZERO;
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        {
            peak = peak.max(Bytes::from_kib(hwm));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_DEADLINE * 4 {
            let _ = child.kill();
            panic!("masp run did not end");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status.code(),
        std::fs::read_to_string(&stderr_file).unwrap(),
        peak,
    )
}

#[test]
fn a_worker_flooding_its_pipe_or_stderr_leaves_the_orchestrator_bounded() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Four inputs, each a bad-input failure the worker survives: the orchestrator reads one
    // 60 MiB failure frame per task; the worker writes twelve as fast as it can.
    let inputs: Vec<PathBuf> = (0..4)
        .map(|i| {
            let p = dir.path().join(format!("in{i}.wav"));
            std::fs::copy(speech(), &p).unwrap();
            p
        })
        .collect();
    let big = frames(
        dir.path(),
        "big.failed",
        &[FromWorker::Failed {
            class: FailureClass::Input,
            message: "x".repeat(60 << 20),
        }],
    );
    let flood = hostile_worker(
        dir.path(),
        "flood",
        &format!(
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do cat '{}' || exit 0; done; exec sleep 3600",
            big.display()
        ),
    );
    let (code, stderr, peak) = masp_run_measured(dir.path(), &flood, &inputs);
    println!("frame flood: orchestrator peak RSS {peak}");
    assert_eq!(code, Some(2), "{}", &stderr[..stderr.len().min(2000)]);
    assert!(
        peak < ORCHESTRATOR_RSS_BOUND,
        "orchestrator peak {peak} under a frame flood"
    );
    // Each failure is reported, cut to a line a person can read.
    assert!(
        stderr.lines().all(|l| l.len() < 8 << 10),
        "a huge line on stderr"
    );
    assert!(
        stderr.contains("xxxx […]"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );

    // A 512 MiB stderr line without a newline, then an exit (and the same in the retry).
    let chatty = hostile_worker(
        dir.path(),
        "chatty",
        "head -c 536870912 /dev/zero | tr '\\000' y >&2; exit 1",
    );
    let (code, stderr, peak) = masp_run_measured(dir.path(), &chatty, &inputs[..1]);
    println!("endless stderr line: orchestrator peak RSS {peak}");
    assert_eq!(code, Some(2), "{}", &stderr[..stderr.len().min(2000)]);
    assert!(
        peak < ORCHESTRATOR_RSS_BOUND,
        "orchestrator peak {peak} under a 512 MiB line"
    );
    assert!(
        stderr.contains("exited with code 1") && stderr.contains("it said: yyyy"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.lines().all(|l| l.len() < 8 << 10),
        "a huge line on stderr"
    );
}

/// `masp run` against a worker that greets, loads and then sits in its task; with
/// `with_child`, the worker has started a child of its own. Returns the masp process, the
/// worker's pid and its child's.
fn masp_with_sitting_worker(
    dir: &Path,
    with_child: bool,
) -> (std::process::Child, u32, Option<u32>) {
    let name = if with_child { "parent" } else { "sitter" };
    let then = if with_child {
        "sleep 3600 & echo $! > \"$0.child\"\nexec sleep 3600"
    } else {
        "exec sleep 3600"
    };
    let program = hostile_worker(dir, name, then);
    let pipeline = dir.join(format!("{name}.toml"));
    std::fs::write(&pipeline, "[[stage]]\nmodel = \"silero-vad\"\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_masp"))
        .args(["run", "--isolation", "process", "--pipeline"])
        .arg(&pipeline)
        .arg("--out")
        .arg(dir.join(format!("{name}-out")))
        .arg(speech())
        .env("MASP_WORKER_PROGRAM", &program)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let worker = pid_written(&program, "pid");
    let grandchild = with_child.then(|| pid_written(&program, "child"));
    (child, worker, grandchild)
}

fn wait_with_deadline(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > HANG_DEADLINE {
            let _ = child.kill();
            panic!("masp did not end after a signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigint_and_sigterm_of_the_orchestrator_kill_its_workers_and_what_they_started() {
    let _serial = serial();
    for (signal, code, said) in [
        (libc::SIGINT, 130, "interrupted (SIGINT)"),
        (libc::SIGTERM, 143, "terminated (SIGTERM)"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut masp, worker, grandchild) = masp_with_sitting_worker(dir.path(), true);
        // SAFETY: kill(2) on the masp process this test started and has not reaped.
        unsafe { libc::kill(masp.id() as i32, signal) };
        let status = wait_with_deadline(&mut masp);
        let mut stderr = String::new();
        std::io::Read::read_to_string(masp.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        let grandchild = grandchild.unwrap();
        let worker_ended = ends_within_deadline(worker);
        let grandchild_ended = ends_within_deadline(grandchild);
        for (pid, ended) in [(worker, worker_ended), (grandchild, grandchild_ended)] {
            if !ended {
                // SAFETY: our fake's own process, left behind by the failure reported below.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        assert!(
            worker_ended,
            "worker {worker} outlived its orchestrator's {said}"
        );
        assert!(
            grandchild_ended,
            "the worker's child {grandchild} outlived {said}"
        );
    }
}

#[test]
fn sigkill_of_the_orchestrator_ends_its_worker_by_the_parent_death_signal() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut masp, worker, _) = masp_with_sitting_worker(dir.path(), false);
    masp.kill().unwrap();
    wait_with_deadline(&mut masp);
    let ended = ends_within_deadline(worker);
    if !ended {
        // SAFETY: the fake worker this test started, left behind by the failure reported below.
        unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    }
    assert!(ended, "worker {worker} outlived a SIGKILLed orchestrator");
}

#[test]
fn a_worker_whose_parent_is_not_its_orchestrator_exits_at_once() {
    for (parent, expected) in [
        // Process 1 is never the test's own process.
        ("1", "is gone"),
        ("not-a-pid", "is not a process id"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_masp"))
            .arg("worker")
            .env("MASP_WORKER_PARENT_PID", parent)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(o.stdout.is_empty(), "a worker for no one greeted");
    }
    // The right parent: it greets and then ends cleanly when its stdin closes.
    let o = Command::new(env!("CARGO_BIN_EXE_masp"))
        .arg("worker")
        .env("MASP_WORKER_PARENT_PID", std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.stdout.is_empty(), "no greeting");
}
