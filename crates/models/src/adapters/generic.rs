//! The generic adapter: any ONNX audio model, waveform windows in, `.npy` files out.

use std::path::Path;

use masp_audio::{ChunkStream, StreamOptions};
use masp_model_registry::manifest::{GenericSpec, ModelSpec};
use masp_orchestrator::adapter::{ModelAdapter, TaskContext};
use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::task::{ResultFiles, TaskOutput, TaskParams, WrittenTensor};
use masp_orchestrator::{Error, Result};
use ort::session::Session;
use ort::value::TensorRef;

use crate::npy::NpyWriter;

/// Any ONNX audio model: waveform windows `[1, window]` in, every (or the chosen) float output
/// written as one `.npy` per output, rows = windows.
#[derive(Debug)]
pub struct GenericAdapter {
    name: String,
    session: Session,
    /// The running task's ([`TaskContext::run_options`]), passed to every call.
    run_options: crate::call::CallOptions,
    spec: GenericSpec,
    sample_rate_hz: u32,
}

impl GenericAdapter {
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
        let generic = spec.generic.clone().ok_or_else(|| Error::ModelInterface {
            model: spec.name.clone(),
            reason: "a generic model needs a [model.generic] table".into(),
        })?;
        let session = admitted.session(&spec.name, path, options)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if !inputs.contains(&generic.input.as_str()) {
            return Err(Error::ModelInterface {
                model: spec.name.clone(),
                reason: format!(
                    "no input named {:?}; the model's inputs are {inputs:?}",
                    generic.input
                ),
            });
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if let Some(missing) = generic
            .outputs
            .iter()
            .find(|o| !outputs.contains(&o.as_str()))
        {
            return Err(Error::ModelInterface {
                model: spec.name.clone(),
                reason: format!("no output named {missing:?}; the model's outputs are {outputs:?}"),
            });
        }
        Ok(Box::new(Self {
            name: spec.name.clone(),
            session,
            run_options: crate::call::CallOptions::default(),
            spec: generic,
            sample_rate_hz: spec.sample_rate_hz,
        }))
    }

    fn window_and_hop(&self, chunk_samples: usize) -> (usize, usize) {
        self.spec
            .window_and_hop(self.sample_rate_hz)
            .unwrap_or((chunk_samples, chunk_samples))
    }

    /// One window through the model; outputs appended to `writers` (created on first use).
    fn run_window(
        &mut self,
        window: &[f32],
        files: &ResultFiles,
        writers: &mut Vec<(String, NpyWriter)>,
    ) -> Result<()> {
        let infer = |e: ort::Error| Error::Inference {
            model: self.name.clone(),
            reason: e.to_string(),
        };
        let input = TensorRef::from_array_view(([1usize, window.len()], window)).map_err(infer)?;
        let outputs = crate::call::run(
            &mut self.session,
            ort::inputs![self.spec.input.as_str() => input],
            &self.run_options,
        )
        .map_err(|e| Error::Inference {
            model: self.name.clone(),
            reason: e.to_string(),
        })?;
        for (name, value) in outputs.iter() {
            if !self.spec.outputs.is_empty() && !self.spec.outputs.iter().any(|o| o == name) {
                continue;
            }
            let (shape, data) =
                value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| Error::ModelInterface {
                        model: self.name.clone(),
                        reason: format!("output {name:?} is not a float32 tensor: {e}"),
                    })?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            // A leading batch dimension of 1 is dropped: rows are windows.
            let row_shape: Vec<usize> = if dims.first() == Some(&1) {
                dims[1..].to_vec()
            } else {
                dims
            };
            let io = |e: std::io::Error, path: &Path| Error::Output {
                path: path.to_path_buf(),
                reason: e.to_string(),
            };
            let writer = match writers.iter_mut().position(|(n, _)| n == name) {
                Some(i) => &mut writers[i].1,
                None => {
                    let file = files.file(&format!("{}.npy", sanitize(name)));
                    let w = NpyWriter::create(&file, &row_shape).map_err(|e| io(e, &file))?;
                    writers.push((name.to_string(), w));
                    let last = writers.len() - 1;
                    &mut writers[last].1
                }
            };
            if writer.row_shape() != row_shape.as_slice() {
                return Err(Error::ModelInterface {
                    model: self.name.clone(),
                    reason: format!(
                        "output {name:?} changed shape between windows ({:?} then {row_shape:?})",
                        writer.row_shape()
                    ),
                });
            }
            writer.push_row(data).map_err(|e| Error::Output {
                path: files.dir().to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// An output name of the model made safe for a file name (letters, digits, `-`, `_`;
/// anything else becomes `_`): the model file is input like any other.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ModelAdapter for GenericAdapter {
    fn reset(&mut self) {}

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let TaskParams::Generic { output } = params else {
            return Err(Error::InvalidParameter {
                name: "stage",
                reason: "a generic model needs an output directory".into(),
            });
        };
        let output_dir = output.dir();
        std::fs::create_dir_all(output_dir).map_err(|e| Error::Output {
            path: output_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.run_options = crate::call::CallOptions::new(ctx.run_options().cloned());
        let (window, hop) = self.window_and_hop(ctx.chunk_samples());
        let mut stream =
            ChunkStream::open(input, StreamOptions::new(self.sample_rate_hz, hop.max(1)))?;
        let mut buffer: Vec<f32> = Vec::with_capacity(window + hop);
        let mut writers = Vec::new();
        let mut n_windows = 0u64;
        let mut covered = 0usize; // samples of `buffer` already inside some window
        while let Some(chunk) = stream.next_chunk()? {
            buffer.extend_from_slice(chunk);
            while buffer.len() >= window {
                self.run_window(&buffer[..window], output, &mut writers)?;
                n_windows += 1;
                // hop ≤ window ≤ buffer.len() (the manifest forbids hop > window).
                buffer.drain(..hop);
                covered = window - hop;
            }
            ctx.check(stream.n_samples_emitted())?;
        }
        // Samples no window has seen yet: one last zero-padded window.
        if buffer.len() > covered || n_windows == 0 {
            buffer.resize(window, 0.0);
            self.run_window(&buffer, output, &mut writers)?;
        }
        let mut written = Vec::new();
        for (output, writer) in writers {
            let (path, shape) = writer.finish().map_err(|e| Error::Output {
                path: output_dir.to_path_buf(),
                reason: e.to_string(),
            })?;
            written.push(WrittenTensor {
                output,
                path,
                shape,
            });
        }
        Ok(TaskOutput::Tensors(written))
    }
}
