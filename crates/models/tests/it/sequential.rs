//! Loading, unloading, cleanup and task processing with the real silero VAD.

use masp_budget::{Bytes, probe};
use masp_model_registry::manifest::Registry;
use masp_models::vad::VadParams;
use masp_orchestrator::task::{TaskOutput, TaskParams};
use masp_orchestrator::{AudioTask, Error};

use crate::common::{in_fresh_process, orchestrator, registry_with_silero_copy, sample, serial};

fn vad_task(file: &str) -> AudioTask {
    AudioTask {
        label: format!("vad {file}"),
        model: "silero-vad".into(),
        input: sample(file),
        params: TaskParams::Vad(VadParams::default()),
    }
}

#[test]
fn a_task_runs_and_its_model_stays_resident_until_switched() {
    let _serial = serial();
    let mut orch = orchestrator(Registry::builtin(), Bytes::from_gib(4));
    let out = orch.process_task(&vad_task("two_voices.wav")).unwrap();
    let TaskOutput::Segments(outcome) = out else {
        panic!("segments expected")
    };
    assert_eq!(outcome.segments.len(), 6);
    assert_eq!(orch.resident_models(), vec!["silero-vad"]);
    // The second task reuses the loaded model: one load in total.
    orch.process_task(&vad_task("noisy_mix_44k_stereo.flac"))
        .unwrap();
    assert_eq!(orch.stats()["silero-vad"].loads, 1);
    assert_eq!(orch.stats()["silero-vad"].tasks_done, 2);
    orch.unload_all();
    assert!(orch.resident_models().is_empty());
    assert_eq!(orch.budget().reserved(), Bytes::new(0));
}

#[test]
fn a_bad_file_fails_its_task_and_the_next_task_runs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"not audio at all").unwrap();
    let mut orch = orchestrator(Registry::builtin(), Bytes::from_gib(4));
    let mut task = vad_task("two_voices.wav");
    task.input = bad.clone();
    let err = orch.process_task(&task).unwrap_err();
    assert!(matches!(err, Error::Audio(_)), "{err}");
    assert!(orch.process_task(&vad_task("two_voices.wav")).is_ok());
    assert_eq!(orch.failures().len(), 1);
    assert!(
        orch.failures()[0]
            .reason
            .contains("not a recognised audio format"),
        "{:?}",
        orch.failures()
    );
}

#[test]
fn an_oversized_model_is_refused_before_loading_and_rss_does_not_move() {
    let _serial = serial();
    let (_dir, registry) = registry_with_silero_copy(
        "big.onnx",
        "[[model]]\nname = \"big\"\nkind = \"vad\"\npath = \"big.onnx\"\nmemory = \"3GiB\"\n",
    );
    let mut orch = orchestrator(registry, Bytes::from_gib(2));
    let before = probe::process_rss().unwrap();
    let err = orch.load_model("big").unwrap_err();
    let after = probe::process_rss().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::ModelTooLarge { .. }), "{text}");
    assert!(text.contains("3 GiB") && text.contains("2 GiB"), "{text}");
    assert!(orch.resident_models().is_empty());
    // Nothing was loaded: RSS moved by far less than any session would take.
    assert!(
        after.get().abs_diff(before.get()) < 4 << 20,
        "{before} → {after}"
    );
}

#[test]
fn memory_returns_to_baseline_over_100_load_unload_cycles() {
    let _serial = serial();
    if !in_fresh_process("sequential::memory_returns_to_baseline_over_100_load_unload_cycles") {
        return;
    }
    let mut orch = orchestrator(Registry::builtin(), Bytes::from_gib(4));
    // The first cycle pays one-time costs (runtime globals, thread pools): measure from after it.
    orch.load_model("silero-vad").unwrap();
    orch.unload_model("silero-vad");
    let first = probe::process_rss().unwrap();
    let cycles = |orch: &mut masp_orchestrator::SequentialOrchestrator, n: usize| {
        for _ in 0..n {
            orch.load_model("silero-vad").unwrap();
            assert!(orch.unload_model("silero-vad"));
        }
        probe::process_rss().unwrap()
    };
    let after_100 = cycles(&mut orch, 100);
    let after_200 = cycles(&mut orch, 100);
    let drift = |a: Bytes, b: Bytes| b.get() as i64 - a.get() as i64;
    eprintln!(
        "RSS after the first cleanup {first}, after 100 more cycles {after_100} ({:+} B), after \
         200 {after_200} ({:+} B over the second 100)",
        drift(first, after_100),
        drift(after_100, after_200)
    );
    // ONNX Runtime and the allocator warm up once somewhere in the first ~200 sessions (bare
    // create/drop cycles show the same ~1.2 MiB step, then stay flat through 1000 cycles). A
    // leaked session costs MiBs per cycle; 4 MiB over 200 cycles catches anything from
    // ~20 KiB per cycle up.
    let total = drift(first, after_200);
    assert!(total < 4 << 20, "RSS drifted {total} B over 200 cycles");
    let stats = &orch.stats()["silero-vad"];
    assert_eq!((stats.loads, stats.unloads), (201, 201));
    assert_eq!(stats.leaks_suspected, 0, "{stats:?}");
}

#[test]
fn unknown_models_name_the_known_ones() {
    let _serial = serial();
    let mut orch = orchestrator(Registry::builtin(), Bytes::from_gib(4));
    let err = orch.load_model("whisper-xxl").unwrap_err().to_string();
    assert!(
        err.contains("whisper-xxl") && err.contains("silero-vad"),
        "{err}"
    );
}

#[test]
fn a_checksum_mismatch_is_refused_naming_both_hashes() {
    let _serial = serial();
    let wrong = "0".repeat(64);
    let (_dir, registry) = registry_with_silero_copy(
        "m.onnx",
        &format!(
            "[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"m.onnx\"\nsha256 = \"{wrong}\"\n"
        ),
    );
    let mut orch = orchestrator(registry, Bytes::from_gib(4));
    let err = orch.load_model("m").unwrap_err().to_string();
    assert!(
        err.contains(&wrong) && err.contains(masp_model_registry::assets::SILERO_VAD.sha256),
        "{err}"
    );
}

#[test]
fn a_machine_short_of_memory_makes_the_load_wait_then_fail_and_then_recover() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use masp_budget::{Budget, BudgetConfig, SystemMemory};

    use masp_orchestrator::{OrchestratorConfig, SequentialOrchestrator};

    let _serial = serial();
    // Another process "holds" all but 10 MiB: the ledger has room, the machine does not.
    let available = Arc::new(AtomicU64::new(10 << 20));
    let source = {
        let available = Arc::clone(&available);
        move || SystemMemory {
            total: Bytes::from_gib(24),
            available: Bytes::new(available.load(Ordering::Relaxed)),
        }
    };
    let budget = Budget::new(
        BudgetConfig::default()
            .with_limit(Bytes::from_gib(4))
            .with_safety_margin(Bytes::from_mib(64))
            .with_memory_source(source),
    );
    let config = OrchestratorConfig {
        system_wait: std::time::Duration::from_millis(300),
        ..OrchestratorConfig::default()
    };
    let mut orch =
        SequentialOrchestrator::builder(budget, Registry::builtin(), masp_models::registry())
            .with_config(config)
            .build()
            .unwrap();
    let err = orch.load_model("silero-vad").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::SystemMemoryLow { .. }), "{text}");
    assert!(text.contains("10 MiB") && text.contains("64 MiB"), "{text}");
    assert!(orch.resident_models().is_empty());
    assert_eq!(orch.budget().reserved(), Bytes::new(0));
    // The other process is gone: the next task runs normally.
    available.store(8 << 30, Ordering::Relaxed);
    assert!(orch.process_task(&vad_task("two_voices.wav")).is_ok());
}

#[test]
fn a_model_without_the_declared_input_is_refused_naming_both() {
    let _serial = serial();
    let (_dir, registry) = registry_with_silero_copy(
        "m.onnx",
        "[[model]]\nname = \"m\"\nkind = \"generic\"\npath = \"m.onnx\"\n[model.generic]\ninput = \"audio\"\n",
    );
    let mut orch = orchestrator(registry, Bytes::from_gib(4));
    let err = orch.load_model("m").unwrap_err().to_string();
    assert!(err.contains("\"audio\"") && err.contains("input"), "{err}");
    assert!(orch.resident_models().is_empty());
    assert_eq!(orch.budget().reserved(), Bytes::new(0));
}

#[test]
fn initialising_the_runtime_pins_the_mmap_threshold() {
    use masp_budget::trim::{self, MmapThreshold};
    let runtime = masp_orchestrator::runtime::Runtime::get().unwrap_or_else(|e| panic!("{e}"));
    let expected = match std::env::var(trim::MMAP_THRESHOLD_ENV) {
        Ok(value) => MmapThreshold::FromEnvironment(value),
        Err(_) if cfg!(all(target_os = "linux", target_env = "gnu")) => {
            MmapThreshold::Pinned(trim::PINNED_MMAP_THRESHOLD)
        }
        Err(_) => MmapThreshold::Unsupported,
    };
    assert_eq!(runtime.mmap_threshold(), &expected);
}

#[test]
fn without_a_plan_several_resident_models_are_evicted_least_recently_used_first() {
    let _serial = serial();
    let entry = |name: &str| {
        format!("[[model]]\nname = \"{name}\"\nkind = \"vad\"\npath = \"vad.onnx\"\n\n")
    };
    let manifest: String = ["a", "b", "c"].iter().map(|n| entry(n)).collect();
    let (_dir, registry) = registry_with_silero_copy("vad.onnx", &manifest);
    let mut orch = masp_orchestrator::SequentialOrchestrator::builder(
        crate::common::budget(Bytes::from_gib(4)),
        registry,
        masp_models::registry(),
    )
    .with_config(masp_orchestrator::OrchestratorConfig {
        max_resident: 2,
        ..Default::default()
    })
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    orch.load_model("a").unwrap();
    orch.load_model("b").unwrap();
    // Using `a` again makes `b` the least recently used.
    orch.load_model("a").unwrap();
    orch.load_model("c").unwrap();
    let mut resident = orch.resident_models();
    resident.sort();
    assert_eq!(resident, vec!["a", "c"]);
    assert_eq!(orch.stats()["b"].unloads, 1);
    assert_eq!(orch.stats()["a"].loads, 1);
    // Now `c` was used after `a`: loading `b` evicts `a`.
    orch.load_model("b").unwrap();
    let mut resident = orch.resident_models();
    resident.sort();
    assert_eq!(resident, vec!["b", "c"]);
    assert_eq!(orch.stats()["a"].unloads, 1);
}
