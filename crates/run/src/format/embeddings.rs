//! Range embeddings as JSON documents and float32 `.npy` files.
//!
//! - `<name>.embeddings.json`: `{"path", "ranges": [{"start_s", "end_s", "embedding"}]}`, the
//!   document `masp embed` prints (an array of them) or writes;
//! - `<name>.embeddings.npy` (float32 `[n_ranges, 256]`) with `<name>.ranges.json`
//!   (`{"path", "npy", "ranges": [[start_s, end_s]]}`), for numpy users.
//!
//! `<name>` is the input's result name ([`crate::name::result_name`]); every file is written
//! under a temporary name and renamed when complete.

use std::path::{Path, PathBuf};

use masp_models::npy::NpyWriter;
use masp_orchestrator::task::{EMBEDDING_DIM, RangeEmbedding};

use crate::name::result_name;
use crate::{Error, Result};

/// Formats of `masp embed --out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EmbeddingFormat {
    /// JSON: per file its path and `ranges` (`start_s`, `end_s`, 256-value `embedding`); to
    /// stdout as one array, or `<out>/<name>.embeddings.json` with `--out`.
    Json,
    /// `<out>/<name>.embeddings.npy` (float32, `[n_ranges, 256]`) and `<out>/<name>.ranges.json`
    /// (the rows' `[start_s, end_s]`). Needs `--out`.
    Npy,
}

/// The JSON document of one input's range embeddings.
pub fn ranges_json(input: &Path, embeddings: &[RangeEmbedding]) -> serde_json::Value {
    serde_json::json!({ "path": input, "ranges": embeddings })
}

/// Writes `input`'s embeddings into `dir` in `format`; returns the files written.
///
/// With [`EmbeddingFormat::Npy`] and no ranges (no speech) no `.npy` is written, and the
/// ranges file says so with `"npy": null`.
///
/// # Errors
/// [`Error::Output`] naming the file.
pub fn write(
    dir: &Path,
    input: &Path,
    embeddings: &[RangeEmbedding],
    format: EmbeddingFormat,
) -> Result<Vec<PathBuf>> {
    let name = result_name(input);
    let json = |e: serde_json::Error, path: &Path| Error::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    match format {
        EmbeddingFormat::Json => {
            let path = dir.join(format!("{name}.embeddings.json"));
            let bytes = serde_json::to_vec_pretty(&ranges_json(input, embeddings))
                .map_err(|e| json(e, &path))?;
            crate::write_file(&path, &bytes)?;
            Ok(vec![path])
        }
        EmbeddingFormat::Npy => {
            let mut written = Vec::new();
            let npy = if embeddings.is_empty() {
                None
            } else {
                let path = dir.join(format!("{name}.embeddings.npy"));
                write_npy(&path, embeddings)?;
                written.push(path.clone());
                Some(path)
            };
            let ranges_path = dir.join(format!("{name}.ranges.json"));
            let ranges: Vec<(f64, f64)> = embeddings.iter().map(|e| (e.start_s, e.end_s)).collect();
            let doc = serde_json::json!({"path": input, "npy": npy, "ranges": ranges});
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| json(e, &ranges_path))?;
            crate::write_file(&ranges_path, &bytes)?;
            written.push(ranges_path);
            Ok(written)
        }
    }
}

/// `path`: float32 `[n_ranges, 256]`, written under a temporary name and renamed when complete.
fn write_npy(path: &Path, embeddings: &[RangeEmbedding]) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, &e);
    let mut writer = NpyWriter::create(path, &[EMBEDDING_DIM]).map_err(io)?;
    for e in embeddings {
        writer.push_row(&e.embedding).map_err(io)?;
    }
    writer.finish().map_err(io)?;
    Ok(())
}
