//! Process isolation with real ONNX Runtime and real `masp worker` processes: the cap, `kill -9`,
//! hangs, garbage, crash retries, 200 load/unload cycles, and identical outputs in both modes.
// A test fails by panicking; helpers here unwrap what a correct setup guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use masp_budget::{Budget, BudgetConfig, Bytes, probe};
use masp_model_registry::manifest::{Isolation, Registry};
use masp_models::vad::VadParams;
use masp_orchestrator::task::{ResultFiles, TaskOutput, TaskParams};
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
