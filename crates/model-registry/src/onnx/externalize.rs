//! Moving a model's large initializers into an external data file that ONNX Runtime can
//! memory-map, by splicing the original file's bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes as ByteBuf;
use masp_budget::Bytes;
use prost::Message;

use super::metadata::{self, OnnxMetadata};
use super::proto::{DataLocation, StringStringEntryProto, TensorProto};
use super::wire::{self, WireType};
use super::write::write_atomically;
use crate::{Error, Result};

/// How [`externalize`] lays out the external data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalizeOptions {
    /// Initializers with at least this many bytes of data move to the data file; smaller ones
    /// stay in the model file. Default 1024 (as `onnx.save_model`'s `size_threshold`): small
    /// tensors cost a file read each and gain nothing from mapping.
    pub min_tensor_bytes: u64,
    /// Each tensor's offset in the data file is a multiple of this many bytes; must be a power
    /// of two. Default 4096, the page size, so a tensor can be memory-mapped where it lies;
    /// 65536 also suits Windows' allocation granularity, at the cost of more padding.
    pub alignment: u64,
}

impl Default for ExternalizeOptions {
    fn default() -> Self {
        Self {
            min_tensor_bytes: 1024,
            alignment: 4096,
        }
    }
}

/// What [`externalize`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalizeReport {
    /// The new model file.
    pub model_path: PathBuf,
    /// The external data file, `None` when no tensor was large enough to move.
    pub data_path: Option<PathBuf>,
    /// Size of the source model file.
    pub source_file_bytes: Bytes,
    /// Size of the new model file.
    pub model_file_bytes: Bytes,
    /// Size of the data file, padding included.
    pub data_file_bytes: Bytes,
    /// Number of initializers whose data moved to the data file.
    pub tensors_moved: usize,
    /// Bytes of tensor data moved, padding excluded.
    pub bytes_moved: Bytes,
}

/// Writes a copy of the model `src` to `dst` whose main-graph initializers of at least
/// [`ExternalizeOptions::min_tensor_bytes`] live in one external data file beside it,
/// `<dst file name>.data`, each at an offset aligned to [`ExternalizeOptions::alignment`].
///
/// Everything else in the file is copied byte for byte, including fields masp does not know.
/// Tensors that `src` already keeps in external files move to the new data file too (whatever
/// their size), so `dst` does not depend on `src`'s files. Tensors stored in typed fields
/// (`float_data`, …) instead of `raw_data`, and tensors of subgraphs or attributes, stay in
/// the model file.
///
/// Data is streamed from file to file: memory use does not grow with the model. Both files are
/// written under temporary names and renamed when complete (data file first), so `dst` may
/// even be `src`.
///
/// # Errors
/// Those of [`OnnxMetadata::read`] for `src`; [`Error::InvalidAlignment`];
/// [`Error::Write`] when `dst` has no file name or a file cannot be written.
///
/// # Examples
///
/// ```
/// use masp_model_registry::onnx::{
///     ExternalizeOptions, GraphProto, ModelProto, OnnxMetadata, OperatorSetIdProto, TensorProto,
///     externalize, write_model,
/// };
///
/// let weights = TensorProto {
///     name: "w".into(),
///     dims: vec![1024],
///     data_type: 1, // float
///     raw_data: vec![0u8; 4096].into(),
///     ..Default::default()
/// };
/// let model = ModelProto {
///     ir_version: 8,
///     opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
///     graph: Some(GraphProto { initializer: vec![weights], ..Default::default() }),
///     ..Default::default()
/// };
/// let dir = tempfile::tempdir()?;
/// let src = dir.path().join("model.onnx");
/// write_model(&src, &model)?;
///
/// let dst = dir.path().join("model.external.onnx");
/// let report = externalize(&src, &dst, ExternalizeOptions::default())?;
/// assert_eq!((report.tensors_moved, report.bytes_moved.get()), (1, 4096));
/// assert_eq!(report.data_path, Some(dir.path().join("model.external.onnx.data")));
/// assert_eq!(OnnxMetadata::read(&dst)?.external_weight_bytes.get(), 4096);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn externalize(
    src: &Path,
    dst: &Path,
    options: ExternalizeOptions,
) -> Result<ExternalizeReport> {
    if !options.alignment.is_power_of_two() {
        return Err(Error::InvalidAlignment {
            alignment: options.alignment,
        });
    }
    let data_name = match dst.file_name() {
        Some(name) => format!("{}.data", name.to_string_lossy()),
        None => {
            return Err(Error::Write {
                path: dst.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
            });
        }
    };
    let data_path = dst.with_file_name(&data_name);

    let bytes = metadata::map_file(src)?;
    let model = metadata::decode_checked(src, bytes.clone())?;
    // Validates every external reference of the source (location, presence, length).
    OnnxMetadata::from_model(src, bytes.len() as u64, &model)?;
    drop(model);

    let mut plan = Plan {
        src,
        file: &bytes,
        data_name: &data_name,
        options,
        moves: Vec::new(),
        data_len: 0,
    };
    let mut segments = Vec::new();
    for field in wire::fields(&bytes) {
        let field = field.map_err(|e| corrupt(src, &format!("{e:?}")))?;
        if field.number == 7 && field.wire_type == WireType::Len {
            let graph = plan.rewrite_graph(field.value.clone())?;
            let mut header = Vec::new();
            wire::put_len_header(&mut header, 7, segments_len(&graph));
            segments.push(Segment::Owned(header));
            segments.extend(graph);
        } else {
            segments.push(Segment::Source(field.span));
        }
    }
    let Plan {
        moves, data_len, ..
    } = plan;

    let source_file =
        crate::file::open_regular(src, crate::file::Links::Follow).map_err(|source| Error::Io {
            path: src.to_path_buf(),
            source,
        })?;
    let data_file_bytes = if moves.is_empty() {
        0
    } else {
        write_atomically(&data_path, |out| write_data(out, &source_file, &moves))?
    };
    let model_file_bytes = write_atomically(dst, |out| {
        let mut written = 0u64;
        for segment in &segments {
            let part = match segment {
                Segment::Source(range) => &bytes[range.clone()],
                Segment::Owned(owned) => owned.as_slice(),
            };
            out.write_all(part)?;
            written += part.len() as u64;
        }
        Ok(written)
    })?;
    debug_assert!(data_file_bytes == data_len);
    Ok(ExternalizeReport {
        model_path: dst.to_path_buf(),
        data_path: (!moves.is_empty()).then_some(data_path),
        source_file_bytes: Bytes::new(bytes.len() as u64),
        model_file_bytes: Bytes::new(model_file_bytes),
        data_file_bytes: Bytes::new(data_file_bytes),
        tensors_moved: moves.len(),
        bytes_moved: Bytes::new(moves.iter().map(|m| m.length).sum()),
    })
}

/// A piece of the output model: bytes of the source file, or newly encoded bytes.
#[derive(Debug)]
enum Segment {
    Source(Range<usize>),
    Owned(Vec<u8>),
}

fn segments_len(segments: &[Segment]) -> u64 {
    segments
        .iter()
        .map(|s| match s {
            Segment::Source(range) => range.len() as u64,
            Segment::Owned(owned) => owned.len() as u64,
        })
        .sum()
}

/// Where a moved tensor's data comes from.
#[derive(Debug)]
enum DataSource {
    /// A byte range of the source model file (`raw_data`).
    Model(Range<usize>),
    /// A range of one of the source's external data files.
    External { path: PathBuf, offset: u64 },
}

/// One tensor's data to copy into the data file at `offset`.
#[derive(Debug)]
struct Move {
    source: DataSource,
    offset: u64,
    length: u64,
}

struct Plan<'a> {
    src: &'a Path,
    /// The source file's mapping; tensors are decoded from slices of it, which share it.
    file: &'a ByteBuf,
    data_name: &'a str,
    options: ExternalizeOptions,
    moves: Vec<Move>,
    data_len: u64,
}

impl Plan<'_> {
    /// The graph message at `range` of the source, with its large initializers moved out.
    fn rewrite_graph(&mut self, range: Range<usize>) -> Result<Vec<Segment>> {
        let base = range.start;
        let mut segments = Vec::new();
        for field in wire::fields(&self.file[range]) {
            let field = field.map_err(|e| corrupt(self.src, &format!("graph: {e:?}")))?;
            let span = base + field.span.start..base + field.span.end;
            let value = base + field.value.start..base + field.value.end;
            let rewritten = if field.number == 5 && field.wire_type == WireType::Len {
                self.rewrite_initializer(value)?
            } else {
                None
            };
            segments.push(match rewritten {
                Some(tensor) => {
                    let mut out = Vec::with_capacity(tensor.len() + 10);
                    wire::put_len_header(&mut out, 5, tensor.len() as u64);
                    out.extend_from_slice(&tensor);
                    Segment::Owned(out)
                }
                None => Segment::Source(span),
            });
        }
        Ok(segments)
    }

    /// The re-encoded initializer at `range` if its data moves, `None` if it stays.
    fn rewrite_initializer(&mut self, range: Range<usize>) -> Result<Option<Vec<u8>>> {
        let base = range.start;
        // Decoding from a `Bytes` slice keeps `raw_data` a view of the mapping, not a copy.
        let body = self.file.slice(range);
        let tensor = TensorProto::decode(body.clone())
            .map_err(|e| corrupt(self.src, &format!("initializer: {e}")))?;
        let (source, length) = if let Some(external) = metadata::external_ref(self.src, &tensor)? {
            let source = DataSource::External {
                path: external.path,
                offset: external.offset,
            };
            (source, external.length)
        } else {
            // The last raw_data field wins, as in any protobuf parser.
            let raw = wire::fields(&body)
                .filter_map(std::result::Result::ok)
                .filter(|f| f.number == 9 && f.wire_type == WireType::Len)
                .last();
            match raw {
                Some(raw) if raw.value.len() as u64 >= self.options.min_tensor_bytes.max(1) => {
                    let length = raw.value.len() as u64;
                    let range = base + raw.value.start..base + raw.value.end;
                    (DataSource::Model(range), length)
                }
                _ => return Ok(None),
            }
        };
        let offset = self.data_len.next_multiple_of(self.options.alignment);
        self.data_len = offset + length;
        self.moves.push(Move {
            source,
            offset,
            length,
        });

        // Keep every field but the data and its location, then describe the new location.
        let mut out = Vec::new();
        for field in wire::fields(&body).filter_map(std::result::Result::ok) {
            if !matches!(field.number, 9 | 13 | 14) {
                out.extend_from_slice(&body[field.span]);
            }
        }
        for (key, value) in [
            ("location", self.data_name.to_string()),
            ("offset", offset.to_string()),
            ("length", length.to_string()),
        ] {
            let entry = StringStringEntryProto {
                key: key.to_string(),
                value,
            };
            prost::encoding::message::encode(13, &entry, &mut out);
        }
        prost::encoding::int32::encode(14, &(DataLocation::External as i32), &mut out);
        Ok(Some(out))
    }
}

/// Copies every moved tensor into the data file, zero-padding up to each offset.
fn write_data(out: &mut impl Write, model_file: &File, moves: &[Move]) -> io::Result<u64> {
    let zeros = [0u8; 4096];
    let mut position = 0u64;
    for each in moves {
        while position < each.offset {
            let n = (each.offset - position).min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..n])?;
            position += n as u64;
        }
        let copied = match &each.source {
            DataSource::Model(range) => {
                copy_range(model_file, range.start as u64, each.length, out)?
            }
            DataSource::External { path, offset } => copy_range(
                &crate::file::open_regular(path, crate::file::Links::Follow)?,
                *offset,
                each.length,
                out,
            )?,
        };
        if copied != each.length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source file shrank while being copied",
            ));
        }
        position += copied;
    }
    Ok(position)
}

/// Streams `length` bytes at `offset` of `file` into `out` (read, not mapped: the source's
/// pages are not added to this process's resident memory).
fn copy_range(mut file: &File, offset: u64, length: u64, out: &mut impl Write) -> io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    io::copy(&mut file.take(length), out)
}

fn corrupt(path: &Path, reason: &str) -> Error {
    Error::NotOnnx {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}
