//! Silero VAD as an adapter: speech segments from a file.

use std::path::Path;

use masp_model_registry::manifest::ModelSpec;
use masp_orchestrator::adapter::{ModelAdapter, TaskContext};
use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::task::{TaskOutput, TaskParams};
use masp_orchestrator::{Error, Result};

use crate::silero::SileroVad;
use crate::vad::detect_speech_with;

/// Silero VAD as an adapter.
#[derive(Debug)]
pub struct VadAdapter {
    vad: SileroVad,
}

impl VadAdapter {
    /// Load the model with `options` and wrap it in this adapter (an [`masp_orchestrator::adapter::AdapterConstructor`]).
    ///
    /// # Errors
    /// The session's load errors; [`Error::ModelInterface`] when the model does not fit.
    pub fn load(
        admitted: &Admitted<'_>,
        spec: &ModelSpec,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Box<dyn ModelAdapter>> {
        Ok(Box::new(Self {
            vad: SileroVad::load(admitted, &spec.name, path, options)?,
        }))
    }
}

impl ModelAdapter for VadAdapter {
    fn reset(&mut self) {
        self.vad.reset();
    }

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let TaskParams::Vad(params) = params else {
            return Err(Error::InvalidParameter {
                name: "stage",
                reason: "a vad model needs vad parameters".into(),
            });
        };
        self.vad.set_run_options(ctx.run_options().cloned());
        // 2 s chunks: measured on an hour of speech, 16 s blocks ran ~15% slower and took
        // 16 MiB more (the runtime's arena grows with the block).
        let chunk = ctx.chunk_samples();
        let outcome = detect_speech_with(&mut self.vad, input, params, chunk, &mut |done| {
            ctx.check(done)
        })?;
        Ok(TaskOutput::Segments(outcome))
    }
}
