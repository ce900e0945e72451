//! Helpers: the runtime, sessions, and running a model on one float input.

use std::path::Path;

use masp_orchestrator::runtime::{Runtime, SessionOptions};
use ort::session::Session;
use ort::value::TensorRef;

/// The process-wide ONNX Runtime; panics with the fix when it is missing.
pub fn runtime() -> &'static Runtime {
    Runtime::get().unwrap_or_else(|e| panic!("{e}"))
}

/// A session for the model at `path`, with masp's default options.
pub fn session(path: &Path) -> Session {
    runtime()
        .session("synthetic", path, SessionOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `session` on the float input `x` of shape `shape`; the float output `y`.
pub fn run_x(session: &mut Session, shape: [usize; 2], x: &[f32]) -> (Vec<i64>, Vec<f32>) {
    let input = TensorRef::from_array_view((shape, x)).unwrap();
    let outputs = session.run(ort::inputs!["x" => input]).unwrap();
    let (shape, y) = outputs["y"].try_extract_tensor::<f32>().unwrap();
    (shape.to_vec(), y.to_vec())
}
