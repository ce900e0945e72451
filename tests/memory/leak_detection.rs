//! Breaking cleanup on purpose: an adapter that leaks its ONNX Runtime session on every load must
//! make the model suite fail, with a message that names the model and the leak per cycle.

use std::path::Path;

use masp_budget::Bytes;
use masp_model_registry::manifest::{ModelKind, ModelSpec};
use masp_orchestrator::adapter::{ModelAdapter, TaskContext};
use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::task::{TaskOutput, TaskParams};
use masp_orchestrator::{Error, Result};
use masp_testkit::MinimalTestFramework;

use crate::fresh::in_fresh_process;

/// Holds nothing: the session it loaded was leaked, so unloading frees nothing.
#[derive(Debug)]
struct LeakingVad;

/// Ballast leaked with each session, touched so it is resident: the silero session alone is
/// a few MiB, and this makes the leak unmistakable whatever ONNX Runtime shares between sessions.
const BALLAST_BYTES: usize = 4 << 20;

fn leaking_vad(
    admitted: &Admitted<'_>,
    spec: &ModelSpec,
    path: &Path,
    options: SessionOptions,
) -> Result<Box<dyn ModelAdapter>> {
    let session = admitted.session(&spec.name, path, options)?;
    Box::leak(Box::new(session));
    Box::leak(vec![1u8; BALLAST_BYTES].into_boxed_slice());
    Ok(Box::new(LeakingVad))
}

impl ModelAdapter for LeakingVad {
    fn reset(&mut self) {}

    fn run(
        &mut self,
        _input: &Path,
        _params: &TaskParams,
        _ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        Err(Error::InvalidParameter {
            name: "input",
            reason: "the leaking adapter only loads".into(),
        })
    }
}

#[test]
fn memory_a_leaking_adapter_makes_the_model_suite_fail_naming_the_leak() {
    // In a process of its own: what it leaks must not distort the other tests' baselines.
    if !in_fresh_process(
        "leak_detection::memory_a_leaking_adapter_makes_the_model_suite_fail_naming_the_leak",
    ) {
        return;
    }
    let mut adapters = masp_models::registry();
    adapters.register(ModelKind::Vad, leaking_vad);
    let result = MinimalTestFramework::builtin(Bytes::from_gib(2))
        .with_adapters(adapters)
        .model_tests("silero-vad");
    println!("{result}");
    assert!(!result.is_success(), "the suite must fail:\n{result}");
    let leak = result.check("no leak").unwrap();
    assert!(!leak.passed, "{result}");
    let message = leak.failure.as_deref().unwrap();
    assert!(
        message.contains("silero-vad leaks") && message.contains("per cycle over 20"),
        "{message}"
    );
    // The figure names at least the ballast leaked per cycle.
    let baseline = result.check("returns to baseline").unwrap();
    assert!(!baseline.passed, "{result}");
    assert!(result.to_string().ends_with(&format!(
        "{} passed, {} failed\n",
        result.passed(),
        result.failed()
    )));
}
