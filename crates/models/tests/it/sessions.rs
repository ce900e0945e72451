//! Helpers: the runtime, sessions, and running a model on one float input.

use std::path::Path;

use masp_orchestrator::runtime::{Admitted, SessionOptions};
use ort::session::Session;
use ort::value::TensorRef;

/// The admission of the sessions these tests create.
pub fn admitted() -> Admitted<'static> {
    masp_testkit::memory::admitted()
}

/// A session for the model at `path`, with masp's default options.
pub fn session(path: &Path) -> Session {
    admitted()
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
