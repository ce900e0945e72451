//! One model call: with the task's run options when the caller watches its calls, so the
//! orchestrator's watchdog can stop it between graph nodes.

use std::sync::Arc;

use ort::session::{RunOptions, Session, SessionInputs, SessionOutputs};

/// The run options a model passes to each of its calls: the running task's
/// ([`TaskContext::run_options`](masp_orchestrator::adapter::TaskContext::run_options)), or
/// none.
#[derive(Default, Clone)]
pub(crate) struct CallOptions(Option<Arc<RunOptions>>);

impl CallOptions {
    pub(crate) fn new(options: Option<Arc<RunOptions>>) -> Self {
        Self(options)
    }
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "CallOptions(watched)"
        } else {
            "CallOptions(none)"
        })
    }
}

/// Run `session` on `inputs`, passing `options` to ONNX Runtime when there are any.
pub(crate) fn run<'s, 'i, 'v: 'i, const N: usize>(
    session: &'s mut Session,
    inputs: impl Into<SessionInputs<'i, 'v, N>>,
    options: &'s CallOptions,
) -> ort::Result<SessionOutputs<'s>> {
    match &options.0 {
        Some(options) => session.run_with_options(inputs, options),
        None => session.run(inputs),
    }
}
