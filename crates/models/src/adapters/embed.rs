//! The speaker embedder as an adapter: per-window, per-file and per-range embeddings.

use std::path::{Path, PathBuf};

use masp_audio::{ChunkStream, StreamOptions};
use masp_model_registry::manifest::ModelSpec;
use masp_orchestrator::adapter::{ModelAdapter, TaskContext};
use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::task::{
    EMBEDDING_DIM, Embedding, RangeEmbedding, TaskOutput, TaskParams, WrittenTensor,
};
use masp_orchestrator::{Error, Result};

use crate::embedder::SpeakerEmbedder;
use crate::npy::NpyWriter;

/// The speaker embedder as an adapter: streams the file through log-mel features and 80-frame
/// windows, embeds them in batches, and keeps a running mean for the file's embedding.
#[derive(Debug)]
pub struct EmbedAdapter {
    embedder: SpeakerEmbedder,
}

impl EmbedAdapter {
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
            embedder: SpeakerEmbedder::load(admitted, &spec.name, path, options)?,
        }))
    }

    /// One embedding per range: the file is streamed once; samples are kept from the earliest
    /// range not yet embedded, and each range is embedded as soon as its end has been read.
    fn run_ranges(
        &mut self,
        input: &Path,
        ranges: &[(f64, f64)],
        mut writer: Option<NpyWriter>,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let rate = f64::from(crate::embedder::SAMPLE_RATE_HZ);
        let mut bounds = Vec::with_capacity(ranges.len());
        for &(start_s, end_s) in ranges {
            if !(start_s.is_finite() && end_s.is_finite() && start_s >= 0.0 && end_s > start_s) {
                return Err(Error::InvalidParameter {
                    name: "windows",
                    reason: format!(
                        "range ({start_s}, {end_s}) s is not 0 <= start < end, both finite"
                    ),
                });
            }
            bounds.push((
                (start_s * rate).round() as u64,
                (end_s * rate).round() as u64,
            ));
        }
        // Indices of ranges not yet embedded, by start.
        let mut pending: Vec<usize> = (0..bounds.len()).collect();
        pending.sort_by_key(|&i| bounds[i]);
        let mut results: Vec<Option<RangeEmbedding>> = vec![None; bounds.len()];
        let mut stream = ChunkStream::open(
            input,
            StreamOptions::new(16_000, ctx.chunk_samples().max(512)),
        )?;
        let mut buffer: Vec<f32> = Vec::new();
        let mut buffer_start = 0u64; // sample index of buffer[0]
        let mut finished = false;
        loop {
            match stream.next_chunk()? {
                Some(chunk) => buffer.extend_from_slice(chunk),
                None => finished = true,
            }
            let read = buffer_start + buffer.len() as u64;
            let mut still = Vec::with_capacity(pending.len());
            for &i in &pending {
                let (start, end) = bounds[i];
                if end > read && !finished {
                    still.push(i);
                    continue;
                }
                if start >= read {
                    return Err(Error::InvalidParameter {
                        name: "windows",
                        reason: format!(
                            "range ({:.3}, {:.3}) s starts after the end of the audio ({:.3} s)",
                            ranges[i].0,
                            ranges[i].1,
                            read as f64 / rate
                        ),
                    });
                }
                let end = end.min(read);
                let from = (start - buffer_start) as usize;
                let to = (end - buffer_start) as usize;
                let mut samples = buffer[from..to].to_vec();
                if samples.len() < crate::embedder::MIN_SAMPLES {
                    samples.resize(crate::embedder::MIN_SAMPLES, 0.0);
                }
                let embedding = self.embedder.embed_utterance(&samples)?;
                results[i] = Some(RangeEmbedding {
                    start_s: ranges[i].0,
                    end_s: end as f64 / rate,
                    embedding,
                });
            }
            pending = still;
            // Keep only what a pending range still needs.
            let keep_from = pending
                .iter()
                .map(|&i| bounds[i].0)
                .min()
                .unwrap_or(read)
                .max(buffer_start);
            buffer.drain(..((keep_from - buffer_start) as usize).min(buffer.len()));
            buffer_start = keep_from.min(read);
            if finished {
                break;
            }
            ctx.check(stream.n_samples_emitted())?;
        }
        let embeddings: Vec<RangeEmbedding> = results.into_iter().flatten().collect();
        if let Some(w) = writer.as_mut() {
            for e in &embeddings {
                w.push_row(&e.embedding).map_err(|err| Error::Output {
                    path: PathBuf::from("embeddings.npy"),
                    reason: err.to_string(),
                })?;
            }
        }
        let written = finish_embeddings(writer, input)?;
        Ok(TaskOutput::RangeEmbeddings {
            embeddings,
            written,
        })
    }
}

impl ModelAdapter for EmbedAdapter {
    fn reset(&mut self) {
        self.embedder.begin();
    }

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let TaskParams::Embed {
            output,
            windows: ranges,
        } = params
        else {
            return Err(Error::InvalidParameter {
                name: "stage",
                reason: "a speaker-embedding model needs embedding parameters".into(),
            });
        };
        let mut writer = match output {
            Some(files) => {
                std::fs::create_dir_all(files.dir()).map_err(|e| Error::Output {
                    path: files.dir().to_path_buf(),
                    reason: e.to_string(),
                })?;
                let file = files.file("embeddings.npy");
                Some(
                    NpyWriter::create(&file, &[EMBEDDING_DIM]).map_err(|e| Error::Output {
                        path: file.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        self.embedder.set_run_options(ctx.run_options().cloned());
        if let Some(ranges) = ranges {
            return self.run_ranges(input, ranges, writer, ctx);
        }
        let mut stream = ChunkStream::open(
            input,
            StreamOptions::new(16_000, ctx.chunk_samples().max(512)),
        )?;
        self.embedder.begin();
        let mut sum = [0.0f64; EMBEDDING_DIM];
        let mut n_windows = 0usize;
        let mut batch: Vec<Embedding> = Vec::new();
        let mut fold = |batch: &mut Vec<Embedding>, writer: &mut Option<NpyWriter>| -> Result<()> {
            for e in batch.drain(..) {
                for (acc, v) in sum.iter_mut().zip(e.iter()) {
                    *acc += f64::from(*v);
                }
                n_windows += 1;
                if let Some(w) = writer.as_mut() {
                    w.push_row(&e).map_err(|err| Error::Output {
                        path: PathBuf::from("embeddings.npy"),
                        reason: err.to_string(),
                    })?;
                }
            }
            Ok(())
        };
        let mut n_samples = 0usize;
        while let Some(chunk) = stream.next_chunk()? {
            n_samples += chunk.len();
            self.embedder.push(chunk, &mut batch)?;
            fold(&mut batch, &mut writer)?;
            ctx.check(stream.n_samples_emitted())?;
        }
        if n_samples < crate::embedder::MIN_SAMPLES {
            return Err(Error::InvalidParameter {
                name: "input",
                reason: format!("{n_samples} samples at 16 kHz is too short to embed"),
            });
        }
        self.embedder.finish(&mut batch)?;
        fold(&mut batch, &mut writer)?;
        // The package's aggregation: the mean of the normalised windows, normalised.
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt() / n_windows.max(1) as f64;
        let mut utterance = [0.0f32; EMBEDDING_DIM];
        for (u, s) in utterance.iter_mut().zip(sum.iter()) {
            *u = (s / n_windows.max(1) as f64 / (norm + 1e-12)) as f32;
        }
        let windows = finish_embeddings(writer, input)?;
        Ok(TaskOutput::Embeddings {
            utterance: Box::new(utterance),
            n_windows,
            windows,
        })
    }
}

/// Close an embeddings `.npy` writer, if there is one, into its [`WrittenTensor`].
fn finish_embeddings(writer: Option<NpyWriter>, input: &Path) -> Result<Option<WrittenTensor>> {
    let Some(w) = writer else { return Ok(None) };
    let (path, shape) = w.finish().map_err(|e| Error::Output {
        path: input.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Some(WrittenTensor {
        output: "embedding".into(),
        path,
        shape,
    }))
}
